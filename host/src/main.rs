//! The `clonekeeper` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    clonekeeper::cli::main()
}
