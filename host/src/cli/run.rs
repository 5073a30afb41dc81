//! `clonekeeper run`: the sidecar for real deployments.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;

use super::logging;
use crate::admin::{AdminState, Probe, Reload};
use crate::config::Config;
use crate::db::Database;
use crate::error_chain::error_chain;
use crate::model::Timestamp;
use crate::policy::{reload::Watcher, PolicyHost};
use crate::schedule::{BuiltinOrder, BuiltinRetry, NoLimits, Prioritizer, RateLimitPolicy, RetryPolicy};
use crate::sidecar::{self, Parts, Shared, StatusCell};
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
    let shared = Shared::new(config.stall_after);
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
    // The policy engine exists from here (the reload hook needs it); its folder loads in the
    // background while the admin API starts and the databases are awaited.
    let (policy, loading) = start_policies(&config, &shared)?;
    let admin_state = AdminState {
        status: Arc::clone(&shared.status),
        metrics: Arc::clone(&shared.metrics),
        liveness: Arc::clone(&shared.liveness),
        control: control_tx,
        probes: vec![("repo DB".to_string(), repo_db_probe)],
        reload: policy.as_ref().map(reload_hook),
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

    let Some(repo_db) = retry_until_up("repo DB", || async {
        let db = Database::connect_with(&config.repo_db_url, config.repo_db_timeouts).await?;
        Ok::<_, anyhow::Error>(RepoDb::open(db).await?)
    })
    .await
    else {
        tracing::info!("Stopped while waiting for the repo DB.");
        return Ok(());
    };
    let _ = repo_db_cell.set(repo_db.clone());
    let Some(state) = retry_until_up("state DB", || async {
        let db = Database::connect_with(&config.state_url, config.state_timeouts).await?;
        Ok::<_, anyhow::Error>(StateStore::open(db).await?)
    })
    .await
    else {
        tracing::info!("Stopped while waiting for the state DB.");
        return Ok(());
    };
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
    let builtin_retry = BuiltinRetry { backoff: config.backoff, max_attempts: config.max_attempts };
    let (prioritizer, retry, rate_limits): (Arc<dyn Prioritizer>, Arc<dyn RetryPolicy>, Arc<dyn RateLimitPolicy>) =
        match &policy {
            Some(host) => (host.clone(), host.clone(), host.clone()),
            None => (Arc::new(BuiltinOrder), Arc::new(builtin_retry), Arc::new(NoLimits)),
        };
    // The first tick uses the policies: wait for the folder's first load.
    let _watcher = match loading {
        Some(loading) => Some(loading.await.context("the policy loader stopped")?.with_context(|| {
            format!("loading policies from {}", config.policy.dir.as_deref().unwrap_or(Path::new("")).display())
        })?),
        None => None,
    };
    let parts = Parts { retry, prioritizer, rate_limits, policy, config, repo_db, state, client };
    sidecar::run(parts, shared, control_rx, shutdown_signal()).await.context("loading attempt state")?;
    Ok(())
}

/// The policy engine when `[policy] dir` is set: loads the folder (off the runtime), then
/// watches it. Every reload and quarantine refreshes the `policies` list of the status.
type Loading = tokio::task::JoinHandle<Result<Watcher, crate::policy::PolicyError>>;

fn start_policies(config: &Config, shared: &Shared) -> anyhow::Result<(Option<Arc<PolicyHost>>, Option<Loading>)> {
    let Some(dir) = &config.policy.dir else {
        tracing::info!("No policy folder configured; built-in order, retries and no rate limits.");
        return Ok((None, None));
    };
    let shard_addrs = (0..config.shards.len()).map(|idx| config.shards.addr(idx as u16).to_string()).collect();
    let builtin_retry = BuiltinRetry { backoff: config.backoff, max_attempts: config.max_attempts };
    let host = Arc::new(
        PolicyHost::from_config(&config.policy, shard_addrs, builtin_retry).context("starting the policy engine")?,
    );
    host.set_metrics(Arc::clone(&shared.metrics));
    let weak = Arc::downgrade(&host);
    let status: StatusCell = Arc::clone(&shared.status);
    host.set_listener(move || {
        if let Some(host) = weak.upgrade() {
            let policies = host.status(Timestamp::now());
            status.rcu(|current| {
                let mut next = (**current).clone();
                next.policies = policies.clone();
                next
            });
        }
    });
    let loader = Arc::clone(&host);
    tracing::info!(dir = %dir.display(), "Loading policies.");
    Ok((Some(host), Some(tokio::task::spawn_blocking(move || loader.watch()))))
}

/// `POST /v1/policies/reload`: a rescan now, off the runtime; answers what changed.
fn reload_hook(host: &Arc<PolicyHost>) -> Reload {
    let host = Arc::clone(host);
    Arc::new(move || {
        let host = Arc::clone(&host);
        Box::pin(async move {
            let report = tokio::task::spawn_blocking(move || host.reload(Timestamp::now()))
                .await
                .map_err(|e| format!("the reload task failed: {e}"))?
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "loaded: [{}]; rejected: [{}]; removed: [{}]",
                report.loaded.join(", "),
                report.rejected.join(", "),
                report.removed.join(", ")
            ))
        })
    })
}

/// Retries `connect` with capped backoff until it succeeds: a sidecar that starts before its
/// database should wait for it, not crash-loop. `None` when SIGTERM or Ctrl-C came first.
async fn retry_until_up<T, F, Fut>(what: &str, mut connect: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(500);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let attempt = tokio::select! {
            () = &mut shutdown => return None,
            attempt = connect() => attempt,
        };
        match attempt {
            Ok(value) => return Some(value),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), retry_in = ?delay, "Connecting to the {what} failed; retrying.");
                tokio::select! {
                    () = &mut shutdown => return None,
                    () = tokio::time::sleep(delay) => {}
                }
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
