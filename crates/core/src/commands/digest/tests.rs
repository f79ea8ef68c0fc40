//! DIGEST.GET and DIGEST.SET.

use crate::testkit::*;
use crate::Frame;

const SHA256_OF_HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

#[test]
fn digest_get_returns_value_algorithm_and_hex() {
    let mut h = Harness::new();
    assert_eq!(h.run(&["DIGEST.GET", "k"]), Frame::NullArray);
    h.run(&["SET", "k", "hello"]);
    assert_eq!(
        h.run(&["digest.get", "k"]),
        array(vec![bulk("hello"), bulk("sha256"), bulk(SHA256_OF_HELLO)])
    );
    assert_eq!(
        h.run(&["DIGEST.GET"]),
        err("ERR wrong number of arguments for 'digest.get' command")
    );
}

#[test]
fn digest_get_hides_expired_and_refuses_corrupt() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "hello", "PX", "5"]);
    h.advance_ms(5);
    assert_eq!(h.run(&["DIGEST.GET", "k"]), Frame::NullArray);
    h.run(&["SET", "k", "hello"]);
    assert!(h.ks.debug_corrupt(b"k"));
    assert!(error_text(&h.run(&["DIGEST.GET", "k"])).starts_with("CORRUPT value of key 'k'"));
    assert_eq!(h.ks.integrity().corrupt_detected, 1);
}

#[test]
fn digest_set_stores_when_the_digest_matches() {
    let mut h = Harness::new();
    h.run(&["SET", "k", "old", "EX", "100"]);
    assert_eq!(
        h.run(&["DIGEST.SET", "k", "hello", "sha256", SHA256_OF_HELLO]),
        ok()
    );
    assert_eq!(h.run(&["TTL", "k"]), int(-1), "like SET, the deadline goes");
    // Upper-case hex and another algorithm, stored with that algorithm.
    assert_eq!(
        h.run(&[
            "DIGEST.SET",
            "m",
            "abc",
            "MD5",
            "900150983CD24FB0D6963F7D28E17F72"
        ]),
        ok()
    );
    assert_eq!(
        h.run(&["DIGEST.GET", "m"]),
        array(vec![
            bulk("abc"),
            bulk("md5"),
            bulk("900150983cd24fb0d6963f7d28e17f72")
        ])
    );
    assert_eq!(h.run(&["GET", "m"]), bulk("abc"));
}

#[test]
fn digest_set_refuses_a_mismatch_and_writes_nothing() {
    let mut h = Harness::new();
    let reply = h.run(&["DIGEST.SET", "k", "hellO", "sha256", SHA256_OF_HELLO]);
    let text = error_text(&reply);
    assert!(text.starts_with("DIGESTMISMATCH "), "{text}");
    assert!(text.contains(SHA256_OF_HELLO));
    assert_eq!(h.ks.len(), 0);
}

#[test]
fn digest_set_reports_bad_algorithms_and_digests_clearly() {
    let mut h = Harness::new();
    let bad_alg = h.run(&["DIGEST.SET", "k", "v", "sha3", "00"]);
    assert!(error_text(&bad_alg).starts_with("ERR unknown checksum algorithm 'sha3'"));
    let bad_hex = h.run(&["DIGEST.SET", "k", "v", "crc32c", "zzzzzzzz"]);
    assert_eq!(
        error_text(&bad_hex),
        "ERR invalid crc32c digest: digest is not valid hexadecimal"
    );
    let short = h.run(&["DIGEST.SET", "k", "v", "sha256", "abcd"]);
    assert_eq!(
        error_text(&short),
        "ERR invalid sha256 digest: digest for sha256 must be 32 bytes, got 2"
    );
    assert_eq!(h.ks.len(), 0);
}
