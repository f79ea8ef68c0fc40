//! Damage to a stopped node's files that their framing checksums do not catch: a value's bytes
//! changed and the record's (or block's) CRC, and a snapshot's whole-file digest, rewritten to
//! match. What is left to catch it is the value's own checksum (DESIGN.md §2.5), which is the
//! point of these helpers. The layouts are parsed from `docs/format.md` (sections Log and
//! Snapshot), not with Tandem's own code, so a bug there cannot hide itself.

use std::path::{Path, PathBuf};

use super::files_with_ext;

/// Log segment header length and the entry record kind (docs/format.md, Log).
const SEGMENT_HEADER_LEN: usize = 24;
const KIND_ENTRY: u8 = 1;

/// Where a helper damaged a file.
#[derive(Debug)]
pub struct Damaged {
    pub file: PathBuf,
    /// Offset of the flipped byte.
    pub offset: u64,
}

/// In the last log entry of `data_dir` (a stopped node's data dir) whose payload holds `value`,
/// flips the last byte of `value` and rewrites the record's CRC32C to match: the log opens
/// cleanly, the value no longer matches its checksum. Panics if no entry holds `value`.
pub fn damage_value_in_log(data_dir: &Path, value: &[u8]) -> Damaged {
    let mut found = None;
    for seg in files_with_ext(&data_dir.join("log"), "seg") {
        let buf = std::fs::read(&seg).expect("read segment");
        assert_eq!(&buf[..8], b"TNDMLOG\0", "{}: not a segment", seg.display());
        let mut pos = SEGMENT_HEADER_LEN;
        while pos + 8 <= buf.len() {
            let body_len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
            if body_len == 0 {
                break;
            }
            let body = &buf[pos + 8..pos + 8 + body_len];
            if body[0] == KIND_ENTRY {
                if let Some(at) = find(&body[9..], value) {
                    found = Some((seg.clone(), pos, body_len, pos + 8 + 9 + at));
                }
            }
            pos += 8 + body_len;
        }
    }
    let (file, record, body_len, value_at) = found.unwrap_or_else(|| {
        panic!(
            "no log entry in {} holds the value",
            data_dir.join("log").display()
        )
    });
    let mut buf = std::fs::read(&file).unwrap();
    let flip = value_at + value.len() - 1;
    buf[flip] ^= 0x01;
    let crc = crc32c::crc32c(&buf[record + 8..record + 8 + body_len]);
    buf[record + 4..record + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&file, &buf).unwrap();
    Damaged {
        file,
        offset: flip as u64,
    }
}

/// In the snapshot file `snap`, flips the last byte of `value` (which must lie inside one
/// block) and rewrites that block's CRC32C, the trailer's SHA-256 of the file and the trailer's
/// CRC to match: the file verifies as a snapshot, the value no longer matches its checksum.
pub fn damage_value_in_snapshot(snap: &Path, value: &[u8]) -> Damaged {
    use sha2::Digest;
    let mut buf = std::fs::read(snap).expect("read snapshot");
    assert_eq!(&buf[..8], b"TNDMSNAP", "{}: not a snapshot", snap.display());
    let meta_len = u32::from_le_bytes(buf[12..16].try_into().unwrap()) as usize;
    let mut pos = 20 + meta_len;
    let trailer = buf.len() - 60;
    let mut done = None;
    while pos < trailer {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let payload = pos + 8..pos + 8 + len;
        if done.is_none() {
            if let Some(at) = find(&buf[payload.clone()], value) {
                let flip = payload.start + at + value.len() - 1;
                buf[flip] ^= 0x01;
                let crc = crc32c::crc32c(&buf[pos..pos + 4]);
                let crc = crc32c::crc32c_append(crc, &buf[payload.clone()]);
                buf[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
                done = Some(flip);
            }
        }
        pos = payload.end;
    }
    assert_eq!(
        pos,
        trailer,
        "{}: blocks do not end at the trailer",
        snap.display()
    );
    let flip = done.unwrap_or_else(|| panic!("{}: no block holds the value whole", snap.display()));
    let digest = sha2::Sha256::digest(&buf[..trailer]);
    buf[trailer + 24..trailer + 56].copy_from_slice(&digest);
    let crc = crc32c::crc32c(&buf[trailer..trailer + 56]);
    buf[trailer + 56..trailer + 60].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(snap, &buf).unwrap();
    Damaged {
        file: snap.to_path_buf(),
        offset: flip as u64,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}
