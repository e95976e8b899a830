//! The process's allocator, mimalloc, and the one setting of it that a command changes.
//!
//! The workspace's only `unsafe` code: two calls into mimalloc's C API (an option's setter
//! and getter), which `libmimalloc-sys` links but declares only behind a feature that pulls
//! in another crate for three C integer types.
#![allow(unsafe_code)]

/// mimalloc instead of glibc malloc: the gateway allocates many short-lived strings per request,
/// and glibc's allocator took about 12% of the gateway's CPU under load (perf, bench/proxy.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 alike): how long freed
/// memory stays with the process before it is returned to the OS, in ms (-1: never).
const PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// mimalloc's option setter (`mimalloc.h`), linked through `libmimalloc-sys`.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    /// mimalloc's option getter (`mimalloc.h`).
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// Keeps the memory the process frees for its own reuse instead of returning it to the OS
/// after mimalloc's purge delay (1 s in mimalloc v3, which `libmimalloc-sys` builds; 10 ms in
/// v2): for batch commands (`store rebuild`) that free and
/// allocate hundreds of MB a second, where every purged page comes back as a fresh page the
/// kernel must zero (13-16% of a rebuild's CPU in `perf`, docs/benchmarks.md). Not for the
/// server, which should give memory back. Left alone when `MIMALLOC_PURGE_DELAY` is set.
///
/// Call it before the command starts any thread: mimalloc documents its option setter as
/// not thread-safe.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table; it touches no
    // memory of ours. Its only hazard is a race with other threads reading options, and the
    // callers run it before starting any.
    unsafe { mi_option_set(PURGE_DELAY, -1) }
}

/// The purge delay mimalloc uses now, in ms (-1: never).
#[cfg(test)]
fn purge_delay() -> std::ffi::c_long {
    // SAFETY: `mi_option_get` reads an integer from mimalloc's option table.
    unsafe { mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    /// The one test of this binary that sets an option; other tests' threads may run (and
    /// allocate) meanwhile, which the setter's rule forbids for a command but which here
    /// can only change when their freed pages go back to the OS.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // The default of the option at this index is mimalloc v3's purge delay (1000 ms),
        // which no other option has: the index names the right option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(super::purge_delay(), 1000);
        }
        super::keep_freed_memory();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(super::purge_delay(), -1);
        }
    }
}
