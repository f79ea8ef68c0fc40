//! The bytes of a snapshot file: constants, limits and the pure encode/decode helpers.
//!
//! Nothing here touches a file; the writer and the reader do the IO and call these. The layout is
//! specified byte by byte in `docs/format.md`, section `## Snapshot`; keep the two in step.
//!
//! ```text
//! header   magic "TNDMSNAP" | version u32 | meta_len u32 | meta | crc32c u32
//! block*   payload_len u32 | crc32c u32 | payload            (records packed, may span blocks)
//! trailer  magic "TNDMTRLR" | records u64 | blocks u64 | sha256 [32] | crc32c u32
//! ```
//!
//! All integers are little-endian.

/// First eight bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"TNDMSNAP";

/// First eight bytes of the trailer.
///
/// Its first four bytes, read as a block's `payload_len`, are 0x4D44_4E54 (about 1.2 GiB), far
/// above [`MAX_BLOCK_PAYLOAD_LEN`]; so no valid block starts like the trailer, and a reader at a
/// block boundary tells the two apart by those four bytes.
pub const TRAILER_MAGIC: [u8; 8] = *b"TNDMTRLR";

/// The format version this crate writes, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Bytes of the header before the meta blob: magic, version, meta length.
pub const HEADER_FIXED_LEN: usize = 16;

/// Bytes of the CRC32C that closes the header.
pub const HEADER_CRC_LEN: usize = 4;

/// Bytes before each block's payload: payload length and CRC32C.
pub const BLOCK_HEAD_LEN: usize = 8;

/// Bytes of the length prefix before each record in the record stream.
pub const RECORD_LEN_PREFIX: usize = 4;

/// Bytes of the trailer: magic 8, record count 8, block count 8, SHA-256 32, CRC32C 4.
pub const TRAILER_LEN: usize = 60;

/// Block payload size the writer uses unless told otherwise.
///
/// Large enough that the 8-byte block head and one CRC per block cost nothing, small enough that
/// a damaged block pinpoints the fault to within a megabyte and a reader holds little in memory.
pub const DEFAULT_BLOCK_PAYLOAD_LEN: usize = 1 << 20;

/// Largest block payload a reader accepts (and a writer may be configured with).
///
/// A bound on what one length field read from disk can make the reader allocate.
pub const MAX_BLOCK_PAYLOAD_LEN: usize = 16 << 20;

/// Largest record, in bytes, excluding its 4-byte length prefix.
///
/// A record is typically one key with its value, checksum and expiry; Redis caps a string at
/// 512 MiB, and the extra megabyte is slack for the key and the fields around the value.
pub const MAX_RECORD_LEN: usize = (512 << 20) + (1 << 20);

/// Largest meta blob. Meta holds the consensus layer's last log id and membership: small.
pub const MAX_META_LEN: usize = 1 << 20;

/// Largest chunk [`crate::read_chunk`] returns in one call.
pub const MAX_CHUNK_LEN: usize = 16 << 20;

// Compile-time guarantees the format relies on.
const _: () = {
    // The trailer is recognisable at a block boundary.
    assert!(
        u32::from_le_bytes([
            TRAILER_MAGIC[0],
            TRAILER_MAGIC[1],
            TRAILER_MAGIC[2],
            TRAILER_MAGIC[3]
        ]) as usize
            > MAX_BLOCK_PAYLOAD_LEN
    );
    // Every length the format allows fits its u32 field.
    assert!(MAX_BLOCK_PAYLOAD_LEN <= u32::MAX as usize);
    assert!(MAX_RECORD_LEN <= u32::MAX as usize);
    assert!(MAX_META_LEN <= u32::MAX as usize);
    assert!(DEFAULT_BLOCK_PAYLOAD_LEN <= MAX_BLOCK_PAYLOAD_LEN);
};

/// Encodes the whole header for `meta`, CRC included.
///
/// The caller has checked `meta.len() <= MAX_META_LEN`.
pub fn encode_header(meta: &[u8]) -> Vec<u8> {
    debug_assert!(meta.len() <= MAX_META_LEN);
    let mut out = Vec::with_capacity(HEADER_FIXED_LEN + meta.len() + HEADER_CRC_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(meta);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What the fixed part of a header says, before its meta and CRC are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderFixed {
    pub version: u32,
    pub meta_len: u32,
}

/// Splits the fixed header fields. Checking magic, version and limits is the caller's job, so it
/// can report each with the file's name.
pub fn decode_header_fixed(bytes: &[u8; HEADER_FIXED_LEN]) -> ([u8; 8], HeaderFixed) {
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[0..8]);
    (
        magic,
        HeaderFixed {
            version: le_u32(&bytes[8..12]),
            meta_len: le_u32(&bytes[12..16]),
        },
    )
}

/// The CRC32C stored in a block head: over the 4 length bytes, then the payload.
///
/// Covering the length means a damaged length field that still points inside the file is caught
/// as a CRC mismatch of that very block, not as a confusing fault somewhere later.
pub fn block_crc(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), payload)
}

/// Encodes a block head for `payload`.
pub fn encode_block_head(payload: &[u8]) -> [u8; BLOCK_HEAD_LEN] {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_BLOCK_PAYLOAD_LEN);
    let len_bytes = (payload.len() as u32).to_le_bytes();
    let crc = block_crc(&len_bytes, payload);
    let mut head = [0u8; BLOCK_HEAD_LEN];
    head[0..4].copy_from_slice(&len_bytes);
    head[4..8].copy_from_slice(&crc.to_le_bytes());
    head
}

/// The trailer's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub record_count: u64,
    pub block_count: u64,
    /// SHA-256 of every byte of the file before the trailer.
    pub digest: [u8; 32],
}

/// Why trailer bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerFault {
    BadMagic([u8; 8]),
    Crc { stored: u32, computed: u32 },
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut out = [0u8; TRAILER_LEN];
        out[0..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..16].copy_from_slice(&self.record_count.to_le_bytes());
        out[16..24].copy_from_slice(&self.block_count.to_le_bytes());
        out[24..56].copy_from_slice(&self.digest);
        let crc = crc32c::crc32c(&out[..56]);
        out[56..60].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8; TRAILER_LEN]) -> Result<Trailer, TrailerFault> {
        if bytes[0..8] != TRAILER_MAGIC {
            let mut magic = [0u8; 8];
            magic.copy_from_slice(&bytes[0..8]);
            return Err(TrailerFault::BadMagic(magic));
        }
        let stored = le_u32(&bytes[56..60]);
        let computed = crc32c::crc32c(&bytes[..56]);
        if stored != computed {
            return Err(TrailerFault::Crc { stored, computed });
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[24..56]);
        Ok(Trailer {
            record_count: le_u64(&bytes[8..16]),
            block_count: le_u64(&bytes[16..24]),
            digest,
        })
    }
}

/// Reads a little-endian u32 from exactly four bytes.
pub fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(bytes);
    u32::from_le_bytes(b)
}

/// Reads a little-endian u64 from exactly eight bytes.
pub fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes_are_exactly_as_specified() {
        let h = encode_header(b"ab");
        assert_eq!(&h[0..8], b"TNDMSNAP");
        assert_eq!(&h[8..12], &[1, 0, 0, 0]);
        assert_eq!(&h[12..16], &[2, 0, 0, 0]);
        assert_eq!(&h[16..18], b"ab");
        assert_eq!(le_u32(&h[18..22]), crc32c::crc32c(&h[..18]));
        assert_eq!(h.len(), HEADER_FIXED_LEN + 2 + HEADER_CRC_LEN);
        let fixed: [u8; 16] = h[..16].try_into().unwrap();
        assert_eq!(
            decode_header_fixed(&fixed),
            (
                MAGIC,
                HeaderFixed {
                    version: 1,
                    meta_len: 2
                }
            )
        );
    }

    #[test]
    fn block_head_covers_length_and_payload() {
        let head = encode_block_head(b"xyz");
        assert_eq!(&head[0..4], &[3, 0, 0, 0]);
        let mut both = vec![3, 0, 0, 0];
        both.extend_from_slice(b"xyz");
        assert_eq!(le_u32(&head[4..8]), crc32c::crc32c(&both));
    }

    #[test]
    fn trailer_round_trips_and_rejects_damage() {
        let t = Trailer {
            record_count: 7,
            block_count: 3,
            digest: [9; 32],
        };
        let bytes = t.encode();
        assert_eq!(&bytes[0..8], b"TNDMTRLR");
        assert_eq!(Trailer::decode(&bytes), Ok(t));
        for i in 0..TRAILER_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            assert!(Trailer::decode(&bad).is_err(), "flip at {i} accepted");
        }
    }
}
