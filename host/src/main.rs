//! The `clonekeeper` binary; everything lives in the library's `cli` module.

/// mimalloc rather than glibc's malloc: a tick frees and allocates a million small strings from
/// several threads, and glibc's per-thread arenas kept the freed memory as resident pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    clonekeeper::cli::main()
}
