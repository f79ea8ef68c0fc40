/// Every size and count the parsers accept, with Redis's defaults.
///
/// Going over a limit is a [`ProtocolError`](crate::ProtocolError) with Redis's wording; the
/// parsers never allocate from a length before checking it here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string, in bytes (Redis `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Most elements in one multibulk request or reply aggregate (Redis 6's 1 Mi).
    pub max_array_len: usize,
    /// Longest inline request and longest `*N` / `$N` header line, in bytes (Redis
    /// `PROTO_INLINE_MAX_SIZE`, 64 KiB). `parse_frame` applies it to every line of a reply.
    pub max_inline_len: usize,
    /// Deepest nesting of aggregates accepted by `parse_frame`. It bounds the parser's recursion,
    /// so keep it small.
    pub max_nesting: usize,
}

/// Redis `proto-max-bulk-len`.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// The multibulk count Redis 6 accepted.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1024 * 1024;
/// Redis `PROTO_INLINE_MAX_SIZE`.
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;
/// Deep enough for any reply Redis or Tandem sends.
pub const DEFAULT_MAX_NESTING: usize = 32;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: DEFAULT_MAX_BULK_LEN,
            max_array_len: DEFAULT_MAX_ARRAY_LEN,
            max_inline_len: DEFAULT_MAX_INLINE_LEN,
            max_nesting: DEFAULT_MAX_NESTING,
        }
    }
}

/// Cap on elements preallocated for an aggregate whose count came from the peer, so a request
/// claiming a million arguments costs memory only as its bytes arrive.
pub(crate) const PREALLOC_ELEMENTS_MAX: usize = 1024;
