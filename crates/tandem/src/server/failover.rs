//! FAILOVER: planned switchover. (Being written.)

use bytes::Bytes;
use tandem_core::Frame;

use super::connection::Conn;

pub async fn failover(_conn: &mut Conn, _args: &[Bytes]) -> Frame {
    Frame::error("ERR FAILOVER is not served yet")
}
