//! Pub/Sub: SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB. (Being written.)

use bytes::Bytes;
use tandem_core::Frame;

use super::connection::Conn;

/// Channels and patterns and their subscribers, shared by every connection of this node.
#[derive(Default)]
pub struct Hub {}

impl Hub {
    /// Delivers `message` to every subscriber of `channel` and of a pattern matching it; returns
    /// how many received it.
    pub fn publish(&self, _channel: &[u8], _message: Bytes) -> usize {
        0
    }
}

pub async fn handle(conn: &mut Conn, name: &str, _args: &[Bytes]) {
    conn.reply(Frame::Error(format!(
        "ERR command '{name}' is known but not served by this node"
    )));
}
