//! The proofs of the handshake: fresh nonces and HMAC-SHA256 over them, keyed by the cluster
//! secret. Pure apart from the random nonces.
//!
//! Each side proves it knows the secret by MACing both nonces, its own last; the labels differ so
//! that a proof made by one side can never be replayed as the other's (a reflection attack), and
//! each proof covers a nonce the verifier chose just now, so a recorded proof is worthless on a
//! later connection. The secret itself never leaves the node.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::envelope::{MAC_LEN, NONCE_LEN};

type HmacSha256 = Hmac<Sha256>;

const CLIENT_LABEL: &[u8] = b"tandem-client";
const SERVER_LABEL: &[u8] = b"tandem-server";

/// A fresh nonce from the thread-local CSPRNG.
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

fn mac(secret: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed): this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac
}

/// The client's proof: HMAC(secret, "tandem-client" || server_nonce || client_nonce).
pub(crate) fn client_proof(
    secret: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
) -> [u8; MAC_LEN] {
    mac(secret, CLIENT_LABEL, server_nonce, client_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a client's proof, in constant time.
pub(crate) fn verify_client_proof(
    secret: &[u8],
    server_nonce: &[u8; NONCE_LEN],
    client_nonce: &[u8; NONCE_LEN],
    proof: &[u8; MAC_LEN],
) -> bool {
    mac(secret, CLIENT_LABEL, server_nonce, client_nonce)
        .verify_slice(proof)
        .is_ok()
}

/// The server's proof: HMAC(secret, "tandem-server" || client_nonce || server_nonce).
pub(crate) fn server_proof(
    secret: &[u8],
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
) -> [u8; MAC_LEN] {
    mac(secret, SERVER_LABEL, client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks the server's proof, in constant time.
pub(crate) fn verify_server_proof(
    secret: &[u8],
    client_nonce: &[u8; NONCE_LEN],
    server_nonce: &[u8; NONCE_LEN],
    proof: &[u8; MAC_LEN],
) -> bool {
    mac(secret, SERVER_LABEL, client_nonce, server_nonce)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let (s, c) = (nonce(), nonce());
        assert_ne!(s, c);
        let proof = client_proof(b"secret", &s, &c);
        assert!(verify_client_proof(b"secret", &s, &c, &proof));
        assert!(!verify_client_proof(b"secreT", &s, &c, &proof));
        assert!(!verify_client_proof(b"secret", &c, &s, &proof));
        assert!(!verify_client_proof(b"secret", &s, &nonce(), &proof));

        let proof = server_proof(b"secret", &c, &s);
        assert!(verify_server_proof(b"secret", &c, &s, &proof));
        assert!(!verify_server_proof(b"other", &c, &s, &proof));
    }

    #[test]
    fn a_proof_from_one_side_is_not_valid_for_the_other() {
        // A server that echoed the client's own nonces back must not be able to reuse a client
        // proof as its own (reflection).
        let (a, b) = (nonce(), nonce());
        let client = client_proof(b"secret", &a, &b);
        assert!(!verify_server_proof(b"secret", &a, &b, &client));
        let server = server_proof(b"secret", &a, &b);
        assert!(!verify_client_proof(b"secret", &a, &b, &server));
    }

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = mac(b"Jefe", b"what do ya want ", b"for nothing", b"?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
