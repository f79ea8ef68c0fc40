//! The parsers never allocate from a length they have not yet received the bytes for: a peer
//! announcing a million elements or a 512 MiB bulk costs memory only as its bytes arrive.
//! Measured with a counting allocator, which is why this test has a binary of its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use tandem_resp::{parse_frame, Limits, RequestParser};

struct Counting;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records the largest size asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn announced_sizes_do_not_allocate() {
    let mut parser = RequestParser::new(Limits::default());
    let mut buf = BytesMut::from(&b"*1048576\r\n$536870912\r\nabc"[..]);
    LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
    assert_eq!(parser.parse(&mut buf), Ok(None));
    for reply in [
        &b"*1048576\r\n"[..],
        b"%1048576\r\n",
        b"~1048576\r\n*1048576\r\n",
        b"$536870912\r\nabc",
        b"=536870912\r\ntxt:",
    ] {
        assert_eq!(parse_frame(reply, &Limits::default()), Ok(None));
    }
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(largest <= 256 * 1024, "largest allocation {largest} bytes");
}
