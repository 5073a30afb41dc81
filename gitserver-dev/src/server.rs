//! A running dev server: its own OS thread and tokio runtime, so that [`Server::kill`] can
//! tear everything down at once (listener, in-flight requests, queued clones, git children)
//! the way killing the process would, while the caller's own runtime carries on.

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clones::Clones;
use crate::config::Config;
use crate::debug::Dispatches;
use crate::faults::Faults;
use crate::layout::Layout;
use crate::routes::{self, AppState};

/// How long a kill waits for blocking filesystem work (a listing walk) to return. Async
/// work, including git children, is dropped without waiting.
const BLOCKING_WORK_GRACE: Duration = Duration::from_secs(5);

/// A dev server running on a dedicated thread. Dropping it kills it, like [`Server::kill`].
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Prepares `repos_dir` (deleting any partial clones a previous run left), binds
    /// `config.listen` (port 0 picks a free port; the address is reused right after a kill)
    /// and starts serving on a dedicated tokio runtime in its own OS thread. Returns once the
    /// port accepts connections.
    ///
    /// Can be called from inside another tokio runtime; it does not use the caller's.
    pub fn start(config: Config) -> anyhow::Result<Server> {
        if config.max_concurrent_clones == 0 {
            bail!("max_concurrent_clones must be at least 1");
        }
        let layout = Layout::new(config.repos_dir.clone());
        layout.prepare().with_context(|| format!("cannot prepare {}", config.repos_dir.display()))?;

        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("gitserver-dev".to_owned())
            .spawn(move || serve_until_stopped(config, layout, ready_tx, stop_rx))
            .context("cannot start the server thread")?;
        match ready_rx.recv() {
            Ok(Ok(addr)) => {
                tracing::info!("The dev gitserver is listening on {addr}.");
                Ok(Server { addr, stop: Some(stop_tx), thread: Some(thread) })
            }
            failed => {
                // The thread has returned or is about to; reap it before reporting.
                drop(stop_tx);
                let _ = thread.join();
                match failed {
                    Ok(Err(err)) => Err(err),
                    _ => bail!("the server thread ended before binding"),
                }
            }
        }
    }

    /// The bound address, with the actual port when the configuration asked for port 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Abrupt stop, like killing the process: drops the runtime, which aborts in-flight
    /// requests, forgets the clone queue and kills running git children. Returns once the
    /// port is closed. Partial clones stay on disk until the next [`Server::start`].
    pub fn kill(self) {
        drop(self);
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The thread may already have ended; then there is nothing to stop.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("The dev gitserver thread panicked.");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The body of the server thread: binds, reports the address (or the failure) through
/// `ready`, serves until `stop` fires or its sender is dropped, then shuts the runtime down,
/// dropping every task.
fn serve_until_stopped(
    config: Config,
    layout: Layout,
    ready: mpsc::Sender<anyhow::Result<SocketAddr>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = ready.send(Err(anyhow::Error::new(err).context("cannot build a runtime")));
            return;
        }
    };
    runtime.block_on(async move {
        // tokio sets SO_REUSEADDR on Unix, so a restart can bind the port of a killed server
        // while its old connections linger in TIME_WAIT.
        let listener = match TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(err) => {
                let err = anyhow::Error::new(err).context(format!("cannot bind {}", config.listen));
                let _ = ready.send(Err(err));
                return;
            }
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => {
                let _ = ready.send(Err(anyhow::Error::new(err).context("cannot read the bound address")));
                return;
            }
        };
        let state = Arc::new(AppState {
            clones: Arc::new(Clones::new(layout.clone(), config.max_concurrent_clones, config.clone_delay)),
            layout,
            dispatches: Arc::new(Dispatches::default()),
            faults: Faults::default(),
        });
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, routes::router(state)).await {
                tracing::error!("The dev gitserver stopped serving: {err}.");
            }
        });
        let _ = ready.send(Ok(addr));
        // Either a kill or a dropped `Server`: both mean stop.
        let _ = stop.await;
    });
    // Drops the serving task (closing the listener), every connection and every clone task
    // (killing its git child).
    runtime.shutdown_timeout(BLOCKING_WORK_GRACE);
}
