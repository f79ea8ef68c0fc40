//! Tandem's own commands for end-to-end verification by clients.
//!
//! - `DIGEST.GET key` → `[value, algorithm name, lower-case hex digest]`, or a null array if the
//!   key is absent. The stored value is verified first (CORRUPT error otherwise), so a client
//!   that recomputes the digest over the bytes it received checks the whole path.
//! - `DIGEST.SET key value algorithm hexdigest` → stores the value only if the digest of the
//!   bytes that arrived, computed with the client's algorithm, equals the client's digest; the
//!   key then carries the client's (algorithm, digest). Otherwise `-DIGESTMISMATCH ...` and
//!   nothing is written. Like SET, the key loses any deadline.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tandem_checksum::{Algorithm, Checksum};
use tandem_resp::Frame;

use super::{Command, ParseContext, ReadCmd, Value, WriteCmd};
use crate::keyspace::{ApplyContext, Keyspace};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DigestRead {
    Get(Bytes),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DigestWrite {
    /// The value with the client's checksum (checked against the bytes at parse time).
    Set { key: Bytes, value: Value },
}

pub fn parse_get(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    Ok(Command::Read(ReadCmd::Digest(DigestRead::Get(
        args[1].clone(),
    ))))
}

pub fn parse_set(args: &[Bytes], _: &ParseContext) -> Result<Command, Frame> {
    let name = String::from_utf8_lossy(&args[3]);
    let algorithm: Algorithm = name.parse().map_err(|e| Frame::error(format!("ERR {e}")))?;
    let claimed = Checksum::from_hex(algorithm, &args[4])
        .map_err(|e| Frame::error(format!("ERR invalid {algorithm} digest: {e}")))?;
    let computed = Checksum::compute(algorithm, &args[2]);
    if computed != claimed {
        return Err(Frame::error(format!(
            "DIGESTMISMATCH the value's {algorithm} digest is {}, not {}; nothing was written",
            computed.to_hex(),
            claimed.to_hex()
        )));
    }
    Ok(Command::Write(WriteCmd::Digest(DigestWrite::Set {
        key: args[1].clone(),
        value: Value {
            bytes: args[2].clone(),
            checksum: claimed,
        },
    })))
}

pub(crate) fn read(ks: &Keyspace, cmd: &DigestRead, now_ms: i64) -> Frame {
    match cmd {
        DigestRead::Get(key) => {
            let Some(entry) = ks.lookup(key, now_ms) else {
                return Frame::NullArray;
            };
            let value = match ks.verify(entry) {
                Err(corrupt) => return corrupt,
                Ok(v) => v,
            };
            // verify succeeded, so the checksum is well-formed.
            let Some(checksum) = entry.checksum() else {
                return Frame::error("ERR value has no checksum");
            };
            Frame::Array(vec![
                Frame::Bulk(Bytes::copy_from_slice(value)),
                Frame::Bulk(Bytes::from_static(checksum.algorithm().name().as_bytes())),
                Frame::Bulk(Bytes::from(checksum.to_hex())),
            ])
        }
    }
}

pub(crate) fn apply(ks: &mut Keyspace, cmd: &DigestWrite, _: &ApplyContext) -> Frame {
    match cmd {
        DigestWrite::Set { key, value } => {
            super::strings::store_client_value(ks, key, value);
            Frame::ok()
        }
    }
}

#[cfg(test)]
mod tests;
