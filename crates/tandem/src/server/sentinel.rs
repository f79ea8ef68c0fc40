//! The Sentinel discovery subset. (Being written.)

use bytes::Bytes;
use tandem_core::Frame;

use super::connection::Conn;

pub fn sentinel(_conn: &mut Conn, _args: &[Bytes]) -> Frame {
    Frame::error("ERR SENTINEL is not served yet")
}
