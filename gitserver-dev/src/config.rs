//! What a dev server is told at start: where to listen, where the mirrors live, and how the
//! clone queue behaves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The address the binary listens on when not told otherwise: gitserver's port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3178";

/// How many git clones run at once unless configured otherwise; extra requests queue.
pub const DEFAULT_MAX_CONCURRENT_CLONES: usize = 4;

/// Configuration of one [`Server`](crate::Server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to bind. Port 0 picks a free port; read it back with
    /// [`Server::addr`](crate::Server::addr).
    pub listen: SocketAddr,
    /// Root of the mirrors. Created if missing; its `.tmp/` subdirectory is wiped at start.
    pub repos_dir: PathBuf,
    /// At most this many `git clone` processes run at once; more requests wait in FIFO order.
    /// Must be at least 1.
    pub max_concurrent_clones: usize,
    /// Slept before each clone while holding a clone slot, so that tests and the demo can
    /// kill the server while a clone is in progress without needing a huge repository.
    pub clone_delay: Duration,
}

impl Config {
    /// A configuration with the default queue: [`DEFAULT_MAX_CONCURRENT_CLONES`] slots and
    /// no artificial delay.
    pub fn new(listen: SocketAddr, repos_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen,
            repos_dir: repos_dir.into(),
            max_concurrent_clones: DEFAULT_MAX_CONCURRENT_CLONES,
            clone_delay: Duration::ZERO,
        }
    }
}
