//! Damage, found and never served (DESIGN.md §2.5 and §2.7).
//!
//! - In memory: `DEBUG CORRUPT` flips a byte of a stored value; every read of the key must then
//!   fail with `-CORRUPT ...` naming it, the damaged bytes must never reach a client, and
//!   `INFO integrity` counts the detections. DEBUG is refused without `--enable-debug-commands`.
//! - Digests: `DIGEST.GET` returns a digest this test recomputes on its own (SHA-256 with the
//!   `sha2` crate, XXH3-64 with `xxhash-rust`); `DIGEST.SET` refuses a wrong digest and accepts
//!   a right one.
//! - On disk: `tandem check` passes on a stopped node and fails, naming file and offset, after a
//!   byte of a log record or of a snapshot is flipped; a node whose log is damaged before its
//!   tail refuses to start (and starts with `--force-truncate-log true`, keeping the entries
//!   before the damage); a torn final record is cut at start with every earlier write intact; a
//!   damaged newest snapshot falls back to the previous one.
//!
//! The on-disk layouts are parsed here from `docs/format.md` (sections Log and Snapshot), not
//! with Tandem's own code, so a bug there cannot hide itself.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    files_with_ext, flip_byte, phase, run_tandem, show_bytes, zero_bytes, Conn, Frame, Outcome,
    Tandem,
};

const DEBUG_FLAGS: &[&str] = &["--enable-debug-commands", "true"];

// ---------------------------------------------------------------------------------------------
// Helpers

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn xxh3_hex(data: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(data))
}

/// `corrupt_values_detected` from `INFO integrity`.
fn corrupt_count(conn: &mut Conn) -> u64 {
    let info = conn.cmd(&["INFO", "integrity"]);
    let text = String::from_utf8_lossy(
        info.as_bulk()
            .unwrap_or_else(|| panic!("INFO integrity replied {info}")),
    )
    .into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("corrupt_values_detected:"))
        .unwrap_or_else(|| panic!("INFO integrity has no corrupt_values_detected line:\n{text}"))
        .trim()
        .parse()
        .expect("corrupt_values_detected is a number")
}

/// True when `reply` holds a near-copy of `original` (same length, 1 or 2 bytes different): the
/// damaged value leaking out.
fn holds_damaged_copy(reply: &[u8], original: &[u8]) -> bool {
    reply.windows(original.len()).any(|w| {
        let diff = w.iter().zip(original).filter(|(a, b)| a != b).count();
        (1..=2).contains(&diff)
    })
}

fn start(dir: &Path, args: &[&str]) -> Tandem {
    Tandem::start(&dir.join("data"), args)
}

/// Writes `n` keys `key-00000`... one command at a time, so each is its own log entry.
fn write_keys(conn: &mut Conn, from: usize, to: usize) {
    for i in from..to {
        let (k, v) = (format!("key-{i:05}"), expected_value(i));
        conn.ok(&["SET", &k, &v]);
    }
}

fn expected_value(i: usize) -> String {
    format!("value-{i:05}-{}", "p".repeat(i % 40))
}

/// Keys in `range` that do not hold their value (missing or wrong).
fn missing_keys(conn: &mut Conn, range: std::ops::Range<usize>) -> Vec<String> {
    let mut bad = Vec::new();
    for i in range {
        let k = format!("key-{i:05}");
        let r = conn.cmd(&["GET", &k]);
        if r != Frame::bulk(expected_value(i)) {
            bad.push(format!("{k}={r}"));
        }
    }
    bad
}

// ---------------------------------------------------------------------------------------------
// The log format (docs/format.md, Log): a 24-byte segment header (magic "TNDMLOG\0", version,
// first index, CRC32C), then records: body_len u32 LE (0 ends the segment), crc u32 LE (CRC32C
// of the body), body = kind u8, index u64 LE, payload.

const SEGMENT_MAGIC: &[u8; 8] = b"TNDMLOG\0";
const SEGMENT_HEADER_LEN: usize = 24;
const KIND_ENTRY: u8 = 1;

#[derive(Clone, Debug)]
struct LogRecord {
    file: PathBuf,
    /// Where the record starts in its file.
    offset: u64,
    /// Bytes it occupies: 8 + body_len.
    len: u64,
    kind: u8,
    index: u64,
    payload: Vec<u8>,
}

/// Every valid record of every segment in `data/log`, in file order.
fn log_records(data: &Path) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let segs = files_with_ext(&data.join("log"), "seg");
    assert!(
        !segs.is_empty(),
        "no segment files in {}",
        data.join("log").display()
    );
    for seg in segs {
        let buf = std::fs::read(&seg).expect("read segment");
        assert_eq!(
            &buf[..8],
            SEGMENT_MAGIC,
            "{}: not a segment (format.md changed?)",
            seg.display()
        );
        let mut pos = SEGMENT_HEADER_LEN;
        while pos + 8 <= buf.len() {
            let body_len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if body_len == 0 {
                break;
            }
            let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
            let end = pos + 8 + body_len;
            assert!(
                end <= buf.len() && body_len >= 9,
                "{}: record at {pos} has impossible length {body_len}",
                seg.display()
            );
            let body = &buf[pos + 8..end];
            assert_eq!(
                crc32c::crc32c(body),
                crc,
                "{}: record at {pos} fails its CRC in a healthy log",
                seg.display()
            );
            out.push(LogRecord {
                file: seg.clone(),
                offset: pos as u64,
                len: (8 + body_len) as u64,
                kind: body[0],
                index: u64::from_le_bytes(body[1..9].try_into().unwrap()),
                payload: body[9..].to_vec(),
            });
            pos = end;
        }
    }
    out
}

/// The position (in `records`) of the entry record whose payload contains `key`.
fn record_holding(records: &[LogRecord], key: &str) -> Option<usize> {
    records.iter().rposition(|r| {
        r.kind == KIND_ENTRY && r.payload.windows(key.len()).any(|w| w == key.as_bytes())
    })
}

// The snapshot format (docs/format.md, Snapshot): header = magic "TNDMSNAP", version u32,
// meta_len u32, meta, crc u32; blocks = payload_len u32, crc u32, payload; 60-byte trailer.

/// (offset, length) of each block of a snapshot file.
fn snapshot_blocks(path: &Path) -> Vec<(u64, u64)> {
    let buf = std::fs::read(path).expect("read snapshot");
    assert_eq!(&buf[..8], b"TNDMSNAP", "{}: not a snapshot", path.display());
    let meta_len = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
    let mut pos = 20 + meta_len;
    let mut blocks = Vec::new();
    while buf.len() - pos > 60 && &buf[pos..pos + 4] != b"TNDM" {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        blocks.push((pos as u64, (8 + len) as u64));
        pos += 8 + len;
    }
    assert_eq!(
        buf.len() - pos,
        60,
        "{}: blocks do not end at the trailer",
        path.display()
    );
    blocks
}

/// True when `out` mentions `file` (by name) and one of `offsets` (decimal or hex).
fn names_file_and_offset(out: &str, file: &Path, offsets: &[u64]) -> bool {
    let name = file.file_name().unwrap().to_string_lossy();
    out.contains(name.as_ref())
        && offsets.iter().any(|o| {
            out.contains(&o.to_string())
                || out.contains(&format!("{o:#x}"))
                || out.contains(&format!("{o:#010x}"))
        })
}

fn check(data: &Path) -> (bool, String) {
    let (status, out) = run_tandem(&["check", data.to_str().unwrap()], Duration::from_secs(120));
    (status.success(), out)
}

// ---------------------------------------------------------------------------------------------
// In memory

#[test]
fn debug_corrupt_makes_every_read_fail_and_nothing_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), DEBUG_FLAGS);
    let mut c = server.conn();
    let original = b"victim-value-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOP".to_vec();
    c.ok(&[b"SET".as_slice(), b"victim", &original]);
    c.ok(&["SET", "num", "123456789012345"]);
    c.ok(&["SET", "bystander", "fine"]);
    let before = corrupt_count(&mut c);
    assert_eq!(before, 0, "a fresh node reports corrupt values");

    phase("DEBUG CORRUPT victim and num");
    for key in ["victim", "num"] {
        let r = c.cmd(&["DEBUG", "CORRUPT", key]);
        assert!(
            !r.is_error(),
            "DEBUG CORRUPT {key} with --enable-debug-commands true replied {r}"
        );
    }

    phase("every read of a damaged key fails with CORRUPT naming it");
    let reads: &[&[&str]] = &[
        &["GET", "victim"],
        &["MGET", "bystander", "victim"],
        &["GETRANGE", "victim", "0", "5"],
        &["SUBSTR", "victim", "0", "-1"],
        &["APPEND", "victim", "more"],
        &["DIGEST.GET", "victim"],
        &["GETEX", "victim", "EX", "100"],
        &["GETSET", "victim", "replacement"],
        &["SETRANGE", "victim", "0", "x"],
        &["STRLEN", "victim"],
        &["INCR", "num"],
        &["INCRBY", "num", "5"],
        &["DECR", "num"],
        &["INCRBYFLOAT", "num", "1.5"],
        &["GET", "num"],
        &["DIGEST.GET", "num"],
        &["GETDEL", "victim"],
    ];
    let mut failures = Vec::new();
    for args in reads {
        let key = if args.contains(&"num") {
            "num"
        } else {
            "victim"
        };
        let raw = c.cmd_raw(args);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if !(text.starts_with("-CORRUPT") && text.contains(key)) {
            failures.push(format!(
                "{}: expected -CORRUPT naming '{key}', got {}",
                args.join(" "),
                show_bytes(&raw)
            ));
        }
        if holds_damaged_copy(&raw, &original) || holds_damaged_copy(&raw, b"123456789012345") {
            failures.push(format!(
                "{}: the damaged bytes leaked: {}",
                args.join(" "),
                show_bytes(&raw)
            ));
        }
    }
    let after = corrupt_count(&mut c);
    phase(format!(
        "INFO integrity: corrupt_values_detected went from {before} to {after}"
    ));
    if after < 2 {
        failures.push(format!(
            "corrupt_values_detected is {after} after reads of 2 damaged values"
        ));
    }
    let r = c.cmd(&["GET", "bystander"]);
    if r != Frame::bulk("fine") {
        failures.push(format!("an undamaged key suffered: GET bystander = {r}"));
    }

    assert!(
        failures.is_empty(),
        "{} problems:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

/// A value damaged in memory must not poison the node's files: a snapshot taken after the
/// damage must not carry the bad bytes in a way that stops the node from starting, and after a
/// restart the key is either still refused (CORRUPT) or back to its original value.
#[test]
fn save_after_in_memory_damage_keeps_the_node_startable() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), DEBUG_FLAGS);
    let mut c = server.conn();
    let original = b"victim-value-0123456789-abcdefghijklmnopqrstuvwxyz".to_vec();
    c.ok(&[b"SET".as_slice(), b"victim", &original]);
    c.ok(&["SET", "bystander", "fine"]);
    let r = c.cmd(&["DEBUG", "CORRUPT", "victim"]);
    assert!(!r.is_error(), "DEBUG CORRUPT replied {r}");

    phase("SAVE with a damaged value in memory");
    let save = c.cmd(&["SAVE"]);
    eprintln!("SAVE replied {save}");
    drop(c);

    phase("restart: must start, and never serve the damaged bytes");
    match server.restart_outcome(Duration::from_secs(60)) {
        Outcome::Ready => {}
        Outcome::Exited(status, out) => panic!(
            "after DEBUG CORRUPT and SAVE (which replied {save}), tandem no longer starts ({status}):\n{out}"
        ),
    }
    let mut c = server.conn();
    let raw = c.cmd_raw(&["GET", "victim"]);
    assert!(
        (raw.starts_with(b"-CORRUPT") || raw == common::encode_bulk(&original))
            && !holds_damaged_copy(&raw, &original),
        "after SAVE and restart, GET victim = {} (expected -CORRUPT or the original value)",
        show_bytes(&raw)
    );
    assert_eq!(c.cmd(&["GET", "bystander"]), Frame::bulk("fine"));
}

#[test]
fn debug_is_refused_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let mut c = server.conn();
    c.ok(&["SET", "k", "value"]);
    let r = c.cmd(&["DEBUG", "CORRUPT", "k"]);
    assert!(
        r.is_error(),
        "DEBUG CORRUPT without --enable-debug-commands replied {r}"
    );
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Frame::bulk("value"),
        "the refused DEBUG changed the value"
    );
    assert_eq!(corrupt_count(&mut c), 0);
}

// ---------------------------------------------------------------------------------------------
// Digests

/// [value, algorithm, hex] from DIGEST.GET.
fn digest_get(c: &mut Conn, key: &str) -> (Vec<u8>, String, String) {
    let r = c.cmd(&["DIGEST.GET", key]);
    let items = r
        .as_array()
        .unwrap_or_else(|| panic!("DIGEST.GET {key} replied {r}"));
    assert_eq!(items.len(), 3, "DIGEST.GET {key} replied {r}");
    let text = |f: &Frame| match f {
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Simple(s) => s.clone(),
        other => panic!("DIGEST.GET {key}: unexpected element {other}"),
    };
    (
        items[0]
            .as_bulk()
            .unwrap_or_else(|| panic!("DIGEST.GET {key} value {r}"))
            .to_vec(),
        text(&items[1]),
        text(&items[2]).to_ascii_lowercase(),
    )
}

#[test]
fn digests_are_verifiable_and_digest_set_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let mut c = server.conn();
    let value = b"hello \x00\xff digest".to_vec();
    c.ok(&[b"SET".as_slice(), b"k", &value]);

    phase("DIGEST.GET returns the value and its SHA-256, as computed independently");
    let (v, alg, hex) = digest_get(&mut c, "k");
    assert_eq!(v, value);
    assert_eq!(alg, "sha256", "the default algorithm");
    assert_eq!(
        hex,
        sha256_hex(&value),
        "DIGEST.GET's digest is not the SHA-256 of the value"
    );

    phase("DIGEST.SET refuses a wrong digest and writes nothing");
    let mut wrong = sha256_hex(b"v2").into_bytes();
    wrong[10] = if wrong[10] == b'0' { b'1' } else { b'0' };
    let r = c.cmd(&[b"DIGEST.SET".as_slice(), b"k2", b"v2", b"sha256", &wrong]);
    assert!(
        r.error_text()
            .is_some_and(|e| e.starts_with("DIGESTMISMATCH")),
        "DIGEST.SET with a wrong digest replied {r}"
    );
    assert_eq!(
        c.cmd(&["EXISTS", "k2"]),
        Frame::Integer(0),
        "a refused DIGEST.SET wrote the key"
    );
    let r = c.cmd(&[
        b"DIGEST.SET".as_slice(),
        b"k",
        b"other",
        b"sha256",
        sha256_hex(b"v2").as_bytes(),
    ]);
    assert!(
        r.error_text()
            .is_some_and(|e| e.starts_with("DIGESTMISMATCH")),
        "DIGEST.SET with another value's digest replied {r}"
    );
    assert_eq!(
        c.cmd(&["GET", "k"]),
        Frame::bulk(&value),
        "a refused DIGEST.SET overwrote the key"
    );

    phase("DIGEST.SET accepts the right digest");
    c.ok(&["DIGEST.SET", "k2", "v2", "sha256", &sha256_hex(b"v2")]);
    assert_eq!(c.cmd(&["GET", "k2"]), Frame::bulk("v2"));
    assert_eq!(
        digest_get(&mut c, "k2"),
        (b"v2".to_vec(), "sha256".into(), sha256_hex(b"v2"))
    );

    phase("DIGEST.SET with another algorithm keeps that algorithm");
    c.ok(&["DIGEST.SET", "k3", "v3", "xxh3-64", &xxh3_hex(b"v3")]);
    assert_eq!(
        digest_get(&mut c, "k3"),
        (b"v3".to_vec(), "xxh3-64".into(), xxh3_hex(b"v3"))
    );
    let r = c.cmd(&["DIGEST.SET", "k4", "v4", "xxh3-64", &xxh3_hex(b"v3")]);
    assert!(
        r.error_text()
            .is_some_and(|e| e.starts_with("DIGESTMISMATCH")),
        "DIGEST.SET xxh3-64 with a wrong digest replied {r}"
    );

    phase("digests survive a restart");
    let mut server = server;
    drop(c);
    server.restart();
    let mut c = server.conn();
    assert_eq!(
        digest_get(&mut c, "k"),
        (value.clone(), "sha256".into(), sha256_hex(&value))
    );
    assert_eq!(
        digest_get(&mut c, "k3"),
        (b"v3".to_vec(), "xxh3-64".into(), xxh3_hex(b"v3"))
    );
}

// ---------------------------------------------------------------------------------------------
// On disk

/// Starts a node, writes `n` keys one entry each, and kills it (appendfsync always: all durable).
fn node_with_keys(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("data");
    let mut server = Tandem::start(&data, &["--appendfsync", "always"]);
    let mut c = server.conn();
    write_keys(&mut c, 0, n);
    drop(c);
    server.kill9();
    data
}

/// An entry record in the middle of the log holding one of our keys, not the last record.
fn middle_record(data: &Path, n: usize) -> (LogRecord, usize, Vec<LogRecord>) {
    let records = log_records(data);
    let key = format!("key-{:05}", n / 2);
    let pos = record_holding(&records, &key).unwrap_or_else(|| {
        panic!("no log record holds {key}: values are expected to appear as raw bytes in entry payloads ({} records)", records.len())
    });
    assert!(pos + 1 < records.len(), "{key} is in the last record");
    (records[pos].clone(), pos, records)
}

#[test]
fn check_passes_then_names_a_flipped_log_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = node_with_keys(dir.path(), 100);

    phase("tandem check on a healthy stopped node");
    let (ok, out) = check(&data);
    assert!(ok, "tandem check failed on a healthy node:\n{out}");

    let (rec, _, _) = middle_record(&data, 100);
    let at = rec.offset + 17 + rec.payload.len() as u64 / 2;
    phase(format!(
        "flip the byte at {} offset {at} (record at {}, index {})",
        rec.file.display(),
        rec.offset,
        rec.index
    ));
    flip_byte(&rec.file, at);
    let (ok, out) = check(&data);
    eprintln!("tandem check says:\n{out}");
    assert!(!ok, "tandem check passed a log with a flipped byte:\n{out}");
    assert!(
        names_file_and_offset(&out, &rec.file, &[rec.offset, at]),
        "tandem check must name {} and offset {} (record) or {at} (byte):\n{out}",
        rec.file.display(),
        rec.offset
    );
}

#[test]
fn check_names_a_flipped_snapshot_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Tandem::start(&data, &[]);
    let mut c = server.conn();
    write_keys(&mut c, 0, 300);
    c.ok(&["SAVE"]);
    write_keys(&mut c, 300, 320);
    drop(c);
    server.stop();

    phase("tandem check on a healthy stopped node with a snapshot");
    let (ok, out) = check(&data);
    assert!(ok, "tandem check failed on a healthy node:\n{out}");

    let snaps = files_with_ext(&data.join("snapshots"), "snap");
    let snap = snaps
        .last()
        .unwrap_or_else(|| {
            panic!(
                "SAVE left no .snap file in {}",
                data.join("snapshots").display()
            )
        })
        .clone();
    let blocks = snapshot_blocks(&snap);
    assert!(
        !blocks.is_empty(),
        "{}: a snapshot of 300 keys has no blocks",
        snap.display()
    );
    let (block_at, block_len) = blocks[blocks.len() / 2];
    let at = block_at + 8 + (block_len - 8) / 2;
    phase(format!(
        "flip the byte at {} offset {at} (block at {block_at})",
        snap.display()
    ));
    flip_byte(&snap, at);
    let (ok, out) = check(&data);
    eprintln!("tandem check says:\n{out}");
    assert!(
        !ok,
        "tandem check passed a snapshot with a flipped byte:\n{out}"
    );
    assert!(
        names_file_and_offset(&out, &snap, &[block_at, at]),
        "tandem check must name {} and offset {block_at} (block) or {at} (byte):\n{out}",
        snap.display()
    );
}

#[test]
fn damaged_log_record_before_the_tail_stops_start_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100;
    let data = node_with_keys(dir.path(), n);
    let (rec, pos, records) = middle_record(&data, n);
    let at = rec.offset + 17 + rec.payload.len() as u64 / 2;
    phase(format!(
        "flip a byte of record {pos} of {} (index {}, {} offset {})",
        records.len(),
        rec.index,
        rec.file.display(),
        rec.offset
    ));
    flip_byte(&rec.file, at);

    phase("start: must refuse, naming the file and offset");
    let mut server = Tandem::spawn(common::free_port(), &data, &[]);
    match server.wait(Duration::from_secs(60)) {
        Outcome::Ready => panic!(
            "tandem started on a log damaged before its tail (record at {} offset {})",
            rec.file.display(),
            rec.offset
        ),
        Outcome::Exited(status, out) => {
            eprintln!("tandem refused to start ({status}):\n{out}");
            assert!(
                !status.success(),
                "tandem refused to start but exited with success:\n{out}"
            );
            assert!(
                names_file_and_offset(&out, &rec.file, &[rec.offset, at]),
                "the refusal must name {} and offset {}:\n{out}",
                rec.file.display(),
                rec.offset
            );
        }
    }

    phase("start with --force-truncate-log true: starts, keeps what precedes the damage");
    server.set_args(&["--force-truncate-log", "true"]);
    server.restart();
    let mut c = server.conn();
    // Every key whose entry precedes the damaged record must be there.
    let intact: Vec<usize> = (0..n)
        .filter(|i| record_holding(&records, &format!("key-{i:05}")).is_some_and(|p| p < pos))
        .collect();
    assert!(!intact.is_empty(), "no key precedes the damaged record");
    let mut lost = Vec::new();
    for &i in &intact {
        let k = format!("key-{i:05}");
        let r = c.cmd(&["GET", &k]);
        if r != Frame::bulk(expected_value(i)) {
            lost.push(format!("{k}={r}"));
        }
    }
    assert!(
        lost.is_empty(),
        "--force-truncate-log lost entries before the damage: {lost:?}"
    );
    // The node must be writable after the truncation.
    c.ok(&["SET", "after-truncation", "yes"]);
    assert_eq!(c.cmd(&["GET", "after-truncation"]), Frame::bulk("yes"));
}

#[test]
fn torn_final_record_is_cut_at_start_and_earlier_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    let n = 60;
    let data = node_with_keys(dir.path(), n);
    let records = log_records(&data);
    let pos = records
        .iter()
        .rposition(|r| r.kind == KIND_ENTRY && r.payload.windows(4).any(|w| w == b"key-"))
        .expect("an entry holding a key");
    let last = records[pos].clone();
    let end = records.last().map(|r| r.offset + r.len).unwrap();
    assert_eq!(
        last.file,
        records.last().unwrap().file,
        "the last entry is not in the last segment"
    );
    let last_keys: Vec<usize> = (0..n)
        .filter(|i| record_holding(&records, &format!("key-{i:05}")) == Some(pos))
        .collect();
    assert!(!last_keys.is_empty());
    // Zero the second half of the last entry and everything written after it (commit markers):
    // what a crash in the middle of writing that entry leaves in a preallocated segment.
    let half = last.len / 2;
    phase(format!(
        "tear the last entry ({} offset {}, {} bytes, index {}, holds keys {last_keys:?}): zero bytes {}..{end}",
        last.file.display(),
        last.offset,
        last.len,
        last.index,
        last.offset + half
    ));
    zero_bytes(
        &last.file,
        last.offset + half,
        (end - last.offset - half) as usize,
    );

    let mut server = Tandem::spawn(common::free_port(), &data, &[]);
    match server.wait(Duration::from_secs(60)) {
        Outcome::Ready => {}
        Outcome::Exited(status, out) => {
            panic!("tandem refused to start after a torn final record ({status}):\n{out}")
        }
    }
    let mut c = server.conn();
    let lost: Vec<String> = missing_keys(&mut c, 0..n)
        .into_iter()
        .filter(|k| {
            !last_keys
                .iter()
                .any(|i| k.starts_with(&format!("key-{i:05}=")))
        })
        .collect();
    assert!(
        lost.is_empty(),
        "writes before the torn record were lost: {lost:?}"
    );
    c.ok(&["SET", "after-tear", "yes"]);
    drop(c);
    server.stop();
    let (ok, out) = check(&data);
    assert!(
        ok,
        "tandem check fails after the torn tail was cut at start:\n{out}"
    );
}

#[test]
fn damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Tandem::start(&data, &[]);
    let mut c = server.conn();
    phase("two snapshots with writes between and after");
    write_keys(&mut c, 0, 100);
    c.ok(&["SAVE"]);
    write_keys(&mut c, 100, 200);
    c.ok(&["SAVE"]);
    write_keys(&mut c, 200, 250);
    drop(c);
    server.kill9();

    let snaps = files_with_ext(&data.join("snapshots"), "snap");
    assert!(
        snaps.len() >= 2,
        "after two SAVEs only {} snapshot(s) kept in {}: nothing to fall back to",
        snaps.len(),
        data.join("snapshots").display()
    );
    let newest = snaps.last().unwrap().clone();
    let blocks = snapshot_blocks(&newest);
    assert!(!blocks.is_empty());
    let (block_at, block_len) = blocks[0];
    let at = block_at + 8 + (block_len - 8) / 2;
    phase(format!(
        "flip a byte of the newest snapshot {} at {at}",
        newest.display()
    ));
    flip_byte(&newest, at);

    let (ok, out) = check(&data);
    assert!(!ok, "tandem check passed a damaged snapshot:\n{out}");
    assert!(
        out.contains(newest.file_name().unwrap().to_str().unwrap()),
        "tandem check must name {}:\n{out}",
        newest.display()
    );

    phase("restart: must fall back to the previous snapshot plus the log");
    match server.restart_outcome(Duration::from_secs(60)) {
        Outcome::Ready => {}
        Outcome::Exited(status, out) => {
            panic!("tandem did not start with a damaged newest snapshot ({status}):\n{out}")
        }
    }
    let mut c = server.conn();
    let lost = missing_keys(&mut c, 0..250);
    assert!(
        lost.is_empty(),
        "{} keys lost after falling back: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn format_helpers_find_what_they_should() {
    // The near-copy detector must catch a one-byte flip and ignore unrelated bytes.
    let original = b"abcdefghij";
    assert!(holds_damaged_copy(b"$10\r\nabcdefghiX\r\n", original));
    assert!(!holds_damaged_copy(
        b"-CORRUPT value of key 'victim'",
        original
    ));
    assert!(!holds_damaged_copy(b"$10\r\nabcdefghij\r\n", original));
    assert!(names_file_and_offset(
        "log-1.seg: bad crc at offset 4242",
        Path::new("/x/log-1.seg"),
        &[4242]
    ));
    assert!(!names_file_and_offset(
        "log-2.seg: bad crc at offset 4242",
        Path::new("/x/log-1.seg"),
        &[4242]
    ));
}
