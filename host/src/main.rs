//! The `clonekeeper` binary; everything lives in the library's `cli` module.

/// mimalloc rather than glibc's malloc: a tick frees and allocates a million small strings from
/// several threads, and glibc's per-thread arenas kept the freed memory as resident pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    return_freed_pages_at_once();
    clonekeeper::cli::main()
}

/// mimalloc's `mi_option_purge_delay`, numbered as in the `mi_option_e` of the v3 sources that
/// libmimalloc-sys builds; the sys crate has no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// v3's default for it, in milliseconds: reading it back confirms the numbering.
const MI_DEFAULT_PURGE_DELAY: std::ffi::c_long = 1000;

/// mimalloc keeps freed pages a second before it gives them back; a tick at a million repos
/// frees the last lists and plans while it builds the next, and the pages held meanwhile were a
/// tenth of the peak RSS (BENCHMARKS.md, "The sidecar at scale"). Left alone when the option
/// does not read as v3's default: a `MIMALLOC_PURGE_DELAY` set by the operator, or another
/// numbering after an upgrade (which the test below catches).
fn return_freed_pages_at_once() {
    // SAFETY: mimalloc's option calls take any option number and value; they only read and
    // write its option table.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when an upgrade of mimalloc renumbers its options or changes the default, so the
    /// tuning above never sets the wrong option silently.
    #[test]
    fn the_purge_delay_option_is_where_v3_numbers_it() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: as in `return_freed_pages_at_once`.
        let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(default, MI_DEFAULT_PURGE_DELAY);
        return_freed_pages_at_once();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, 0);
    }
}
