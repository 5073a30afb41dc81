//! The `gitserver-dev` command line: parses flags, logs to stderr, announces the bound
//! address on stdout and serves until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::{Config, DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_CLONES};
use crate::server::Server;

/// A gitserver-compatible development server: real `git clone --mirror`, in-memory queue.
#[derive(Debug, Parser)]
#[command(name = "gitserver-dev", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (read it from the "listening on" line).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory holding the mirrors, as `<dir>/<normalised name>/.git`.
    #[arg(long)]
    repos_dir: PathBuf,
    /// How many git clones may run at once; further requests wait in FIFO order.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT_CLONES, value_parser = parse_positive)]
    max_concurrent_clones: usize,
    /// Artificial delay before each clone, e.g. "200ms", to make mid-clone kills easy.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    clone_delay: Duration,
}

fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// The binary's `main`. Exits 2 on bad arguments (clap's convention), 1 when the server
/// cannot start, 0 after a signal. Prints `listening on ADDR` to stdout once bound, because
/// tests that pass port 0 learn the port from that line.
pub fn cli_main() {
    let args = Args::parse();
    init_logging();
    let config = Config {
        listen: args.listen,
        repos_dir: args.repos_dir,
        max_concurrent_clones: args.max_concurrent_clones,
        clone_delay: args.clone_delay,
    };
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(err) => {
            tracing::error!("The dev gitserver could not start: {err:#}.");
            std::process::exit(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    // Nobody may be reading stdout; the server is useful all the same.
    let _ = writeln!(stdout, "listening on {}", server.addr()).and_then(|()| stdout.flush());
    drop(stdout);
    match wait_for_signal() {
        Ok(signal) => tracing::info!("Received {signal}, stopping."),
        Err(err) => tracing::error!("Cannot wait for signals ({err}), stopping."),
    }
    server.kill();
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Blocks until SIGINT or SIGTERM, on a small runtime of its own (the server has another).
fn wait_for_signal() -> std::io::Result<&'static str> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    })
}
