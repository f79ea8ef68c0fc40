//! A minimal RESP2 client connection: encodes commands as arrays of bulk strings and parses the
//! five RESP2 reply types. Just enough for a load generator, but strict: anything it does not
//! understand is a protocol error, never silently skipped, so a benchmark cannot count garbage as
//! a success.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest bulk reply accepted (Redis's default `proto-max-bulk-len`).
const BULK_LEN_MAX: usize = 512 * 1024 * 1024;
/// Most elements accepted in one array reply.
const ARRAY_LEN_MAX: usize = 1 << 20;
/// Deepest nesting of arrays accepted.
const DEPTH_MAX: usize = 8;

/// One reply from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(Bytes),
    Error(Bytes),
    Int(i64),
    /// `None` is the null bulk string (`$-1`).
    Bulk(Option<Bytes>),
    /// `None` is the null array (`*-1`).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// A short description for error reports ("expected +OK, got ...").
    pub fn describe(&self) -> String {
        match self {
            Reply::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
            Reply::Error(e) => format!("-{}", String::from_utf8_lossy(e)),
            Reply::Int(i) => format!(":{i}"),
            Reply::Bulk(None) => "(nil)".into(),
            Reply::Bulk(Some(b)) => format!("bulk of {} bytes", b.len()),
            Reply::Array(None) => "(nil array)".into(),
            Reply::Array(Some(a)) => format!("array of {}", a.len()),
        }
    }
}

/// Why a reply could not be parsed.
#[derive(Debug)]
struct ProtocolError(String);

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// reply and the number of bytes it took.
fn parse(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > DEPTH_MAX {
        return Err(ProtocolError("arrays nested too deeply".into()));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(ProtocolError("reply line longer than 64 KiB".into()));
        }
        return Ok(None);
    };
    let line = &buf[1..eol];
    let after_line = eol + 2;
    let int = |line: &[u8]| -> Result<i64, ProtocolError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| {
                ProtocolError(format!("bad integer {:?}", String::from_utf8_lossy(line)))
            })
    };
    match kind {
        b'+' => Ok(Some((
            Reply::Simple(Bytes::copy_from_slice(line)),
            after_line,
        ))),
        b'-' => Ok(Some((
            Reply::Error(Bytes::copy_from_slice(line)),
            after_line,
        ))),
        b':' => Ok(Some((Reply::Int(int(line)?), after_line))),
        b'$' => {
            let len = int(line)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), after_line)));
            }
            if len < 0 || len as usize > BULK_LEN_MAX {
                return Err(ProtocolError(format!("bad bulk length {len}")));
            }
            let end = after_line + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError("bulk string not followed by CRLF".into()));
            }
            Ok(Some((
                Reply::Bulk(Some(Bytes::copy_from_slice(&buf[after_line..end]))),
                end + 2,
            )))
        }
        b'*' => {
            let len = int(line)?;
            if len == -1 {
                return Ok(Some((Reply::Array(None), after_line)));
            }
            if len < 0 || len as usize > ARRAY_LEN_MAX {
                return Err(ProtocolError(format!("bad array length {len}")));
            }
            let mut items = Vec::with_capacity(len as usize);
            let mut at = after_line;
            for _ in 0..len {
                match parse(&buf[at..], depth + 1)? {
                    None => return Ok(None),
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ProtocolError(format!(
            "unexpected reply type byte 0x{other:02x}"
        ))),
    }
}

/// One connection to a RESP server. Commands are queued with [`Conn::push`] (several make a
/// pipeline), sent with [`Conn::flush`], and their replies read in order with [`Conn::read`].
pub struct Conn {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read_buf: BytesMut::with_capacity(16 * 1024),
            write_buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Queues one command (an array of bulk strings).
    pub fn push(&mut self, args: &[&[u8]]) {
        let w = &mut self.write_buf;
        w.push(b'*');
        w.extend_from_slice(args.len().to_string().as_bytes());
        w.extend_from_slice(b"\r\n");
        for a in args {
            w.push(b'$');
            w.extend_from_slice(a.len().to_string().as_bytes());
            w.extend_from_slice(b"\r\n");
            w.extend_from_slice(a);
            w.extend_from_slice(b"\r\n");
        }
    }

    /// Sends every queued command.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.write_buf.is_empty() {
            self.stream.write_all(&self.write_buf).await?;
            self.write_buf.clear();
        }
        Ok(())
    }

    /// Reads the next reply. A closed connection or a malformed reply is an `io::Error`.
    pub async fn read(&mut self) -> io::Result<Reply> {
        loop {
            match parse(&self.read_buf, 0) {
                Ok(Some((reply, used))) => {
                    self.read_buf.advance(used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(ProtocolError(e)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("protocol error: {e}"),
                    ))
                }
            }
            if self.read_buf.capacity() - self.read_buf.len() < 4096 {
                self.read_buf.reserve(16 * 1024);
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
        }
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.push(args);
        self.flush().await?;
        self.read().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Reply {
        let (r, used) = parse(bytes, 0).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        r
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(one(b"+OK\r\n"), Reply::Simple(Bytes::from_static(b"OK")));
        assert_eq!(
            one(b"-ERR no\r\n"),
            Reply::Error(Bytes::from_static(b"ERR no"))
        );
        assert_eq!(one(b":-42\r\n"), Reply::Int(-42));
        assert_eq!(one(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(
            one(b"$3\r\na\r\n\r\n"),
            Reply::Bulk(Some(Bytes::from_static(b"a\r\n")))
        );
        assert_eq!(
            one(b"*2\r\n:1\r\n$1\r\nx\r\n"),
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Bulk(Some(Bytes::from_static(b"x")))
            ]))
        );
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        for partial in [
            &b""[..],
            b"+O",
            b"+OK\r",
            b"$3\r\nab",
            b"$3\r\nabc\r",
            b"*2\r\n:1\r\n",
        ] {
            assert!(parse(partial, 0).unwrap().is_none(), "{partial:?}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [&b"?x\r\n"[..], b":x\r\n", b"$-2\r\n", b"$1\r\nab\r\n"] {
            assert!(parse(bad, 0).is_err(), "{bad:?}");
        }
    }
}
