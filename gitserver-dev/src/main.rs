//! The `gitserver-dev` binary: all of it lives in [`gitserver_dev::cli_main`] so that other
//! packages can build the same binary under their own name.

fn main() {
    gitserver_dev::cli_main()
}
