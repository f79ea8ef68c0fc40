//! RESP codec. See `frame.rs` for the reply type.
mod frame;
pub use frame::Frame;
