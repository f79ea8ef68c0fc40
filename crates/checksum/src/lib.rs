//! Value checksums: one small type, [`Checksum`], over several digest algorithms.
//!
//! Every value Tandem stores carries a `Checksum` = (algorithm id, digest). It is computed once,
//! when the value enters the system, and travels unchanged through the log, replication and
//! snapshots; every read verifies it. Because each value keeps its own algorithm id, changing the
//! configured algorithm never invalidates data already stored.
//!
//! The algorithm ids are part of the on-disk and wire formats (`docs/format.md`): never renumber.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A digest algorithm. The discriminant is the id stored next to every value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Algorithm {
    Sha256 = 1,
    Md5 = 2,
    Sha1 = 3,
    Sha512 = 4,
    Blake3 = 5,
    Xxh3_64 = 6,
    Crc32c = 7,
}

/// Every algorithm, in id order.
pub const ALL: [Algorithm; 7] = [
    Algorithm::Sha256,
    Algorithm::Md5,
    Algorithm::Sha1,
    Algorithm::Sha512,
    Algorithm::Blake3,
    Algorithm::Xxh3_64,
    Algorithm::Crc32c,
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("unknown checksum algorithm '{0}' (expected one of: sha256, md5, sha1, sha512, blake3, xxh3-64, crc32c)")]
    UnknownName(String),
    #[error("unknown checksum algorithm id {0}")]
    UnknownId(u8),
    #[error("digest for {algorithm} must be {expected} bytes, got {actual}")]
    BadLength {
        algorithm: Algorithm,
        expected: usize,
        actual: usize,
    },
    #[error("digest is not valid hexadecimal")]
    BadHex,
}

impl Algorithm {
    pub const DEFAULT: Algorithm = Algorithm::Sha256;

    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn from_id(id: u8) -> Result<Self, ChecksumError> {
        ALL.iter()
            .copied()
            .find(|a| a.id() == id)
            .ok_or(ChecksumError::UnknownId(id))
    }

    /// The name used in flags, config files, INFO and the digest commands.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha512 => "sha512",
            Algorithm::Blake3 => "blake3",
            Algorithm::Xxh3_64 => "xxh3-64",
            Algorithm::Crc32c => "crc32c",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Md5 => 16,
            Algorithm::Sha1 => 20,
            Algorithm::Sha512 => 64,
            Algorithm::Blake3 => 32,
            Algorithm::Xxh3_64 => 8,
            Algorithm::Crc32c => 4,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = ChecksumError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let normalized = match lower.as_str() {
            "sha-256" => "sha256",
            "sha-1" => "sha1",
            "sha-512" => "sha512",
            "xxh3" | "xxh3_64" | "xxh364" => "xxh3-64",
            other => other,
        };
        ALL.iter()
            .copied()
            .find(|a| a.name() == normalized)
            .ok_or_else(|| ChecksumError::UnknownName(s.to_string()))
    }
}

/// Bytes of the largest digest (SHA-512).
const MAX_DIGEST: usize = 64;
/// Digests up to this size are stored inline; SHA-512 is boxed so the common case stays small.
const INLINE_DIGEST: usize = 32;

/// (algorithm, digest) of one value.
///
/// Kept compact because one exists per stored value (1M keys means 1M of these): digests up to 32
/// bytes are stored inline next to their algorithm; only SHA-512 is boxed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Checksum(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Inline(Algorithm, [u8; INLINE_DIGEST]),
    Sha512(Box<[u8; MAX_DIGEST]>),
}

impl Checksum {
    /// Computes the checksum of `data` with `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Checksum {
        let mut out = [0u8; MAX_DIGEST];
        digest_into(algorithm, data, &mut out);
        Self::from_buf(algorithm, &out)
    }

    /// Builds a checksum from a digest received from elsewhere (a client, a file, a peer).
    pub fn from_digest(algorithm: Algorithm, digest: &[u8]) -> Result<Checksum, ChecksumError> {
        let expected = algorithm.digest_len();
        if digest.len() != expected {
            return Err(ChecksumError::BadLength {
                algorithm,
                expected,
                actual: digest.len(),
            });
        }
        let mut out = [0u8; MAX_DIGEST];
        out[..expected].copy_from_slice(digest);
        Ok(Self::from_buf(algorithm, &out))
    }

    /// Parses a hex digest (either case).
    pub fn from_hex(algorithm: Algorithm, hex: &[u8]) -> Result<Checksum, ChecksumError> {
        if !hex.len().is_multiple_of(2) {
            return Err(ChecksumError::BadHex);
        }
        let mut raw = Vec::with_capacity(hex.len() / 2);
        for pair in hex.chunks(2) {
            let hi = hex_val(pair[0]).ok_or(ChecksumError::BadHex)?;
            let lo = hex_val(pair[1]).ok_or(ChecksumError::BadHex)?;
            raw.push(hi << 4 | lo);
        }
        Self::from_digest(algorithm, &raw)
    }

    fn from_buf(algorithm: Algorithm, buf: &[u8; MAX_DIGEST]) -> Checksum {
        if algorithm == Algorithm::Sha512 {
            Checksum(Repr::Sha512(Box::new(*buf)))
        } else {
            let mut inline = [0u8; INLINE_DIGEST];
            inline.copy_from_slice(&buf[..INLINE_DIGEST]);
            Checksum(Repr::Inline(algorithm, inline))
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match &self.0 {
            Repr::Inline(a, _) => *a,
            Repr::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn digest(&self) -> &[u8] {
        let len = self.algorithm().digest_len();
        match &self.0 {
            Repr::Inline(_, b) => &b[..len],
            Repr::Sha512(b) => &b[..len],
        }
    }

    /// Lower-case hex of the digest.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(self.digest().len() * 2);
        for b in self.digest() {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// True when `data` hashes to this digest under this checksum's own algorithm.
    pub fn verify(&self, data: &[u8]) -> bool {
        let algorithm = self.algorithm();
        let mut out = [0u8; MAX_DIGEST];
        digest_into(algorithm, data, &mut out);
        out[..algorithm.digest_len()] == *self.digest()
    }

    /// Flips one bit of the digest. Test and fault-injection use only.
    pub fn corrupt_for_test(&mut self) {
        match &mut self.0 {
            Repr::Inline(_, b) => b[0] ^= 1,
            Repr::Sha512(b) => b[0] ^= 1,
        }
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm(), self.to_hex())
    }
}

/// Wire and disk form: algorithm id, then the digest bytes (postcard encodes the slice with its
/// length). Deserialization validates both.
impl Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.algorithm().id(), self.digest()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (id, digest): (u8, Vec<u8>) = Deserialize::deserialize(d)?;
        let algorithm = Algorithm::from_id(id).map_err(serde::de::Error::custom)?;
        Checksum::from_digest(algorithm, &digest).map_err(serde::de::Error::custom)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn digest_into(algorithm: Algorithm, data: &[u8], out: &mut [u8; MAX_DIGEST]) {
    use sha2::Digest as _;
    match algorithm {
        Algorithm::Sha256 => out[..32].copy_from_slice(&sha2::Sha256::digest(data)),
        Algorithm::Md5 => out[..16].copy_from_slice(&md5::Md5::digest(data)),
        Algorithm::Sha1 => out[..20].copy_from_slice(&sha1::Sha1::digest(data)),
        Algorithm::Sha512 => out[..64].copy_from_slice(&sha2::Sha512::digest(data)),
        Algorithm::Blake3 => out[..32].copy_from_slice(blake3::hash(data).as_bytes()),
        Algorithm::Xxh3_64 => {
            out[..8].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(data).to_be_bytes())
        }
        Algorithm::Crc32c => out[..4].copy_from_slice(&crc32c::crc32c(data).to_be_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors for "abc" from each algorithm's specification.
    #[test]
    fn known_answers_for_abc() {
        let cases = [
            (Algorithm::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (Algorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (Algorithm::Blake3, "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"),
            (Algorithm::Xxh3_64, "78af5f94892f3950"),
            (Algorithm::Crc32c, "364b3fb7"),
        ];
        for (algorithm, hex) in cases {
            let c = Checksum::compute(algorithm, b"abc");
            assert_eq!(c.to_hex(), hex, "{algorithm}");
            assert!(c.verify(b"abc"));
            assert!(!c.verify(b"abd"), "{algorithm} must reject other bytes");
            assert_eq!(Checksum::from_hex(algorithm, hex.as_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn names_and_ids_round_trip() {
        for a in ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
            assert_eq!(Algorithm::from_id(a.id()).unwrap(), a);
        }
        assert_eq!("SHA-256".parse::<Algorithm>().unwrap(), Algorithm::Sha256);
        assert!(matches!(
            "sha3".parse::<Algorithm>(),
            Err(ChecksumError::UnknownName(_))
        ));
        assert_eq!(Algorithm::from_id(0), Err(ChecksumError::UnknownId(0)));
        assert_eq!(Algorithm::from_id(8), Err(ChecksumError::UnknownId(8)));
    }

    #[test]
    fn corrupted_digest_fails_verification() {
        for a in ALL {
            let mut c = Checksum::compute(a, b"hello");
            c.corrupt_for_test();
            assert!(!c.verify(b"hello"), "{a}");
        }
    }

    #[test]
    fn bad_external_digests_are_rejected() {
        assert!(matches!(
            Checksum::from_digest(Algorithm::Sha256, &[0; 31]),
            Err(ChecksumError::BadLength {
                expected: 32,
                actual: 31,
                ..
            })
        ));
        assert_eq!(
            Checksum::from_hex(Algorithm::Md5, b"zz"),
            Err(ChecksumError::BadHex)
        );
        assert_eq!(
            Checksum::from_hex(Algorithm::Md5, b"abc"),
            Err(ChecksumError::BadHex)
        );
    }

    #[test]
    fn serde_round_trip_and_validation() {
        for a in ALL {
            let c = Checksum::compute(a, b"payload");
            let bytes = postcard::to_stdvec(&c).unwrap();
            assert_eq!(postcard::from_bytes::<Checksum>(&bytes).unwrap(), c);
        }
        // An unknown id or a digest of the wrong length is refused, not accepted as a value.
        assert!(postcard::from_bytes::<Checksum>(&[9, 1, 0]).is_err());
        assert!(postcard::from_bytes::<Checksum>(&[1, 3, 1, 2, 3]).is_err());
    }

    #[test]
    fn checksum_stays_small() {
        assert!(
            std::mem::size_of::<Checksum>() <= 40,
            "{}",
            std::mem::size_of::<Checksum>()
        );
    }
}
