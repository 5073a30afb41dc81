fn main() {
    gitserver_dev::cli_main()
}
