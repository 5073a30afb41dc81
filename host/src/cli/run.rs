//! `clonekeeper run`: the sidecar for real deployments.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use super::logging;
use crate::admin::{AdminState, Probe};
use crate::config::Config;
use crate::db::Database;
use crate::error_chain::error_chain;
use crate::schedule::{BuiltinOrder, BuiltinRetry};
use crate::sidecar::{self, Parts, Shared};
use crate::sources::gitserver::{ClientConfig, GitserverClient};
use crate::sources::repo_db::RepoDb;
use crate::state::StateStore;

pub async fn main(config_path: Option<&Path>) -> ExitCode {
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("clonekeeper: {error}");
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format, &config.log_level);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "clonekeeper stopped on an error.");
            eprintln!("clonekeeper: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Connects everything, serves the admin API and runs the tick loop until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let shared = Shared::default();
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(64);
    // The admin API starts first, so probes answer while the databases are still awaited.
    let repo_db_cell: Arc<OnceLock<RepoDb>> = Arc::new(OnceLock::new());
    let probe_cell = Arc::clone(&repo_db_cell);
    let repo_db_probe: Probe = Arc::new(move || {
        let cell = Arc::clone(&probe_cell);
        Box::pin(async move {
            match cell.get() {
                Some(repo_db) => repo_db.ping().await.map_err(|e| error_chain(&e)),
                None => Err("not connected yet".to_string()),
            }
        })
    });
    let admin_state = AdminState {
        status: Arc::clone(&shared.status),
        metrics: Arc::clone(&shared.metrics),
        control: control_tx,
        probes: vec![("repo DB".to_string(), repo_db_probe)],
        reload: None,
        token: config.admin_token.clone(),
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let admin_listen = config.admin_listen;
    let admin = tokio::spawn(crate::admin::serve(admin_listen, admin_state, bound_tx, shutdown_signal()));
    match bound_rx.await {
        Ok(addr) => tracing::info!(%addr, "Admin API listening."),
        Err(_) => {
            let error = admin.await.context("admin task")?.err();
            return Err(anyhow::anyhow!(
                "binding the admin API on {admin_listen} failed: {}",
                error.map(|e| e.to_string()).unwrap_or_default()
            ));
        }
    }

    let repo_db = retry_until_up("repo DB", || async {
        let db = Database::connect(&config.repo_db_url).await?;
        Ok::<_, anyhow::Error>(RepoDb::open(db).await?)
    })
    .await;
    let _ = repo_db_cell.set(repo_db.clone());
    let state = retry_until_up("state DB", || async {
        let db = Database::connect(&config.state_url).await?;
        Ok::<_, anyhow::Error>(StateStore::open(db).await?)
    })
    .await;
    let client = GitserverClient::new(ClientConfig {
        request_timeout: config.list_timeout,
        dispatch_timeout: config.dispatch_timeout,
        max_response_bytes: config.max_response_bytes,
        ..ClientConfig::default()
    })?;
    tracing::info!(
        shards = config.shards.len(),
        routing = ?config.shards.routing(),
        target = %sidecar::describe_target(&config.target),
        interval = %humantime::format_duration(config.interval),
        "clonekeeper running."
    );
    let parts = Parts {
        retry: Arc::new(BuiltinRetry { backoff: config.backoff, max_attempts: config.max_attempts }),
        prioritizer: Arc::new(BuiltinOrder),
        config,
        repo_db,
        state,
        client,
    };
    sidecar::run(parts, shared, control_rx, shutdown_signal()).await.context("loading attempt state")?;
    Ok(())
}

/// Retries `connect` with capped backoff until it succeeds: a sidecar that starts before its
/// database should wait for it, not crash-loop.
async fn retry_until_up<T, F, Fut>(what: &str, mut connect: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match connect().await {
            Ok(value) => return value,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "Connecting to the {what} failed; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Resolves on SIGTERM (Kubernetes) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
