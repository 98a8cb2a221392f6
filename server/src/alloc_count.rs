//! The test binary's allocator: the system's, counting what the current
//! thread allocates and how many bytes it holds, so that tests can prove
//! what a connection allocates per message and what it keeps at rest.
//! Counts are per thread, so tests running in parallel do not disturb each
//! other; a test runs what it measures on a current-thread runtime.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

fn add_live(bytes: i64) {
    // A thread being torn down has no counters left; it is not measured.
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

fn count() {
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
}

// SAFETY: every call is forwarded to the system allocator unchanged.
#[allow(unsafe_code)] // A global allocator cannot be written without it; tests only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        add_live(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add_live(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        add_live(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations (and reallocations) made on this thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes allocated on this thread and not yet freed (on any thread).
pub fn live_bytes() -> i64 {
    LIVE.with(Cell::get)
}
