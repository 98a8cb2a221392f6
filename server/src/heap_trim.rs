//! Giving memory back to the system once a burst is over.
//!
//! Connections free the buffers a burst grew when they go quiet, but glibc's
//! malloc returns to the system only the free memory at the top of a heap.
//! The freed buffers lie between the small blocks of the connections that stay
//! open (their tasks), so without help the process would keep the resident
//! memory of its largest burst for as long as those connections live.
//! `malloc_trim` hands back the whole free pages wherever they are.
//!
//! Trimming alone is not enough: a page keeps any live byte resident, and the
//! tasks of idle connections (about 1.2 KiB each) lie on the pages of the
//! buffers freed around them, so after a burst of one line an idle TCP
//! connection still cost 6.4 KiB of RSS, 2.3 KiB before it spoke. [`configure`]
//! has glibc serve every block of a page or more from a mapping of its own,
//! which it unmaps at free: a connection's buffers then never share pages
//! with anything, and freeing them gives the memory back at once (2.6 KiB
//! after one line). Those blocks are per connection and per burst, never per
//! message (buffers are reused while a connection is busy).
//!
//! What is freed is reported here ([`released`]), and [`run`] trims once
//! enough has come together, at most once per [`MIN_INTERVAL`]: a trim walks
//! every free block of every arena, which is cheap next to a burst but not
//! something to do per connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Freed bytes that make a trim worth its walk over the heap.
const THRESHOLD: usize = 256 * 1024;
/// After the first release of a wave, the others of the same wave (every
/// connection of a burst goes quiet at about the same time) are waited for.
const GATHER: Duration = Duration::from_millis(100);
/// The least time between two trims.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The heap is the process's, and so is what it owes back: one count for
/// all listeners, not state handed down to every connection.
static RELEASED: AtomicUsize = AtomicUsize::new(0);
static ENOUGH: Notify = Notify::const_new();

/// Reports `bytes` of buffers just freed. Wakes the trimmer when the total
/// since its last trim passes the threshold.
pub fn released(bytes: usize) {
    if bytes == 0 {
        return;
    }
    let before = RELEASED.fetch_add(bytes, Ordering::Relaxed);
    if before < THRESHOLD && before + bytes >= THRESHOLD {
        ENOUGH.notify_one();
    }
}

/// Blocks of this size and larger get their own mapping: one page, the
/// size of a connection's read buffer.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const OWN_MAPPING_FROM: libc::c_int = 4096;

/// Trims the heap whenever enough has been released, until shutdown.
pub async fn run(shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = ENOUGH.notified() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = tokio::time::sleep(GATHER) => {}
        }
        let freed = RELEASED.swap(0, Ordering::Relaxed);
        let started = std::time::Instant::now();
        trim();
        debug!(freed, took = ?started.elapsed(), "heap trimmed");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = tokio::time::sleep(MIN_INTERVAL - GATHER) => {}
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // The crate's one libc call into the allocator, with the one below.
fn trim() {
    // SAFETY: malloc_trim only returns free pages of the allocator's own
    // arenas to the system; it takes the arenas' locks and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes large blocks independent of the heap (see the module's comment).
/// Called once at start-up, before the runtime's threads exist.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: mallopt only changes a tuning value of glibc's allocator
    // (when it maps a block instead of carving it from a heap); it takes the
    // main arena's lock and touches no memory of ours. If the kernel refuses
    // a mapping (vm.max_map_count), glibc falls back to the heap.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_MAPPING_FROM);
    }
}

/// Other allocators (musl's, the BSDs') return freed memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}
