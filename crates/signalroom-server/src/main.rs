//! `signalroom serve`: the OpenVidu 2.32-compatible signalling server.

/// The server's allocator (feature `jemalloc`, on by default): faster than glibc's for the
/// server's many small allocations, and it keeps freed pages a while instead of returning the
/// top of a thread's heap after every large frame.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: freed pages go back to the kernel about a second after
/// they were freed, by a thread of its own, whether or not the server allocates meanwhile (its
/// default is 10 s, and only while the program allocates): memory a burst or an evicted
/// participant's queue held is returned as glibc returned it, and the answers of a run of joins
/// still reuse each other's pages. `MALLOC_CONF` (`_RJEM_MALLOC_CONF`) overrides them.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
// SAFETY: jemalloc reads this symbol as its `malloc_conf`, a NUL-terminated C string; the static
// is one, immutable, for the program's whole life.
#[allow(unsafe_code, non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    signalroom_server::cli::main_with_args(std::env::args_os())
}
