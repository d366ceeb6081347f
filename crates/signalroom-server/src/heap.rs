//! Giving the heap's free memory back to the kernel.
//!
//! A session filling up sends join answers of up to megabytes (each lists everyone already in),
//! and queues a `participantJoined` for everyone per join. Freed, that memory stays in glibc's
//! heap: it only returns what lies at the heap's top, and the live data of the sockets opened
//! meanwhile sits above it. `malloc_trim` releases the whole free pages inside the heap too; it
//! walks the heap, so it runs only when a check of the free bytes (`mallinfo2`) finds enough, and
//! that check (it walks the allocator's free lists) at most once a second, and only after a
//! large frame was written or an idle writer released the queues a burst grew: a server that
//! sends small frames at an even pace never pays for either.
//!
//! The `signalroom` binary allocates with jemalloc (feature `jemalloc`), which gives freed pages
//! back on its own as they age; this is for glibc's heap, the allocator of a program that embeds
//! the server without choosing another (the Python package), and of the C libraries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A frame of this many bytes or more counts as large ([`wrote_large`]).
pub(crate) const LARGE_FRAME: usize = 64 << 10;

/// Large frames written and idle queues released so far (by every server in the process), and as
/// seen by the last trim.
static LARGE_WRITTEN: AtomicU64 = AtomicU64::new(0);
static LARGE_SEEN: AtomicU64 = AtomicU64::new(0);

/// A writer wrote a frame of [`LARGE_FRAME`] bytes or more: the next trim looks at the heap.
pub(crate) fn wrote_large() {
    LARGE_WRITTEN.fetch_add(1, Ordering::Relaxed);
}

/// An idle writer released the queues a burst grew: the next trim looks at the heap too (after a
/// big session's fill, thousands of them free their queues at once).
pub(crate) fn released_queues() {
    LARGE_WRITTEN.fetch_add(1, Ordering::Relaxed);
}

/// How often the heap's free bytes are checked.
pub(crate) const EVERY: Duration = Duration::from_secs(1);

/// Free bytes in the heap worth a trim.
const WORTH: usize = 16 << 20;

/// After a large frame was written (or queues released) since the last call: returns the heap's
/// free pages to the kernel if there are enough of them. The bytes that were free before (0 when
/// not looked at, not worth it, or on another allocator than glibc's).
pub(crate) fn trim() -> usize {
    let written = LARGE_WRITTEN.load(Ordering::Relaxed);
    if LARGE_SEEN.swap(written, Ordering::Relaxed) == written {
        return 0;
    }
    imp::trim()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    pub(super) fn trim() -> usize {
        // SAFETY: both read or release only the allocator's own free memory; neither touches
        // live allocations, and glibc makes them thread-safe.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        if free < super::WORTH {
            return 0;
        }
        // SAFETY: as above.
        unsafe { libc::malloc_trim(0) };
        free
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn trim() -> usize {
        0
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident bytes of this process.
    fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn free_pages_inside_the_heap_go_back_to_the_kernel() {
        // Alone, in a process of its own, on its main thread: other tests running meanwhile
        // allocate, free and trim in the same heap (a small block below may then come from a
        // hole they left, and the large ones merge into the heap's top, which glibc gives back
        // by itself: nothing would be left to trim).
        const ALONE: &str = "SIGNALROOM_HEAP_TEST_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let name = "heap::tests::free_pages_inside_the_heap_go_back_to_the_kernel";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([name, "--exact", "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        // 600 blocks of 100 KiB (under the threshold above which glibc maps a block on its own),
        // each followed by a small one that stays: freed, the large ones stay in the heap.
        let (mut large, mut kept) = (Vec::new(), Vec::new());
        for _ in 0..600 {
            large.push(vec![1u8; 100 << 10]);
            kept.push(vec![1u8; 64]);
        }
        drop(large);
        let before = rss();
        // (The trim itself, not its gate: another test's server may pass the gate meanwhile.)
        let free = imp::trim();
        let after = rss();
        assert!(free >= 32 << 20, "only {free} bytes free");
        assert!(after + (24 << 20) < before, "RSS {before} -> {after}");
        assert!(kept.iter().all(|k| k.iter().all(|&b| b == 1)));
    }
}
