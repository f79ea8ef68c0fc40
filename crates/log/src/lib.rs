//! Tandem's durable log: opaque payloads stored by index in segmented, append-only files,
//! each record guarded by a CRC32C, written by one thread with group commit.
//!
//! The consensus layer serializes its entries into payloads; this crate knows nothing of
//! openraft. The on-disk format is specified byte by byte in `docs/format.md`, section "Log".
//!
//! # Map
//!
//! - [`config`] — what a caller tunes ([`LogConfig`], [`FsyncPolicy`]) and the named limits
//!   (payload size, segment size, queue depth) that bound everything read or accepted.
//! - `record` — the record codec: length, CRC32C, kind, index, payload. Pure functions over
//!   bytes (no IO), plus the resynchronising scan that tells a torn tail from damage in the
//!   middle of the log.
//! - `segment` — segment file names (`log-<first index>.seg`), the segment header codec and the
//!   scan of one segment's bytes into its entries and markers. Pure.
//! - `meta` — the meta file `log.meta` (vote, purge point, saved committed marker): codec and
//!   its atomic replacement (temp file, fsync, rename, fsync directory).
//! - `recovery` — [`Log::open`]'s work: lock the directory, verify every segment, cut a torn
//!   tail or report damage with file and offset, finish an interrupted purge.
//! - `state` — the state shared by callers and the writer under one mutex: the logical view
//!   (indexes present, purge point, payload cache) and the physical one (segments, record
//!   locations).
//! - `writer` — the writer thread: drains the request queue, writes each group with one
//!   `pwrite` and one `fdatasync`, rolls segments, runs truncation, purge and vote saves in
//!   queue order.
//! - `syncer` — the once-a-second fdatasync thread of [`FsyncPolicy::EverySec`].
//! - `log` — [`Log`], the handle: submits requests, serves reads from the cache or `pread`,
//!   reports [`LogStats`].
//! - [`check()`] — offline verification for `tandem check`: what open would find, changing
//!   nothing ([`CheckReport`]).
//! - [`error`] — [`LogError`] for open, [`TruncatedTail`] for what open dropped.
//! - `sys` — the system calls std lacks: fallocate, directory fsync, flock.
//! - [`fuzzing`] — the properties a fuzz target for the record, segment and meta decoders
//!   checks, shared with this crate's seeded tests.
//! - [`layout`] — file names and record sizes, for tests and tools that look at the files.
//!
//! # How a write flows
//!
//! `append` checks the indexes continue the log, puts the payloads in the cache (so they are
//! readable at once) and queues the request. The writer thread takes every request queued,
//! encodes their records into one buffer, writes it at the end of the current segment, calls
//! `fdatasync` once (policy `always`) and then each request's `done`. Under load, requests
//! pile up during that fdatasync, so the next group is bigger: the cost of one fdatasync is
//! shared by many appends.

mod check;
pub mod config;
pub mod error;
pub mod fuzzing;
mod log;
mod meta;
mod record;
mod recovery;
mod segment;
mod state;
mod syncer;
mod sys;
mod writer;

pub use crate::check::{check, check_entries, verify_dir, CheckReport, Problem};
pub use crate::config::{FsyncPolicy, LogConfig, UnknownFsyncPolicy};
pub use crate::error::{LogError, TruncatedTail};
pub use crate::log::{Log, LogStats, OpenReport};
pub use crate::writer::Done;

/// Record-level constants tests and tools need to reason about file layout.
pub mod layout {
    pub use crate::meta::META_FILE_NAME;
    pub use crate::record::{encoded_len as record_len, RECORD_HEADER_LEN};
    pub use crate::recovery::LOCK_FILE_NAME;
    pub use crate::segment::{segment_file_name, SEGMENT_HEADER_LEN};
}
