fn main() -> std::process::ExitCode {
    clonekeeper::cli::main()
}
