//! `clonekeeper snapshot`: fetches what a running sidecar knows as a snapshot file, for
//! `clonekeeper replay` or for the operator's own queries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Writes the sidecar's snapshot to `out` (whole or not at all: a failed download leaves no
/// file behind).
pub async fn main(admin: &str, token: Option<&str>, out: Option<PathBuf>) -> ExitCode {
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!("clonekeeper-snapshot-{}.ndjson.gz", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")))
    });
    match fetch(admin, token, &out).await {
        Ok(bytes) => {
            println!("Wrote {} ({:.1} MB). Replay it with:", out.display(), bytes as f64 / 1e6);
            println!("  clonekeeper replay {} --policy builtin --policy MODULE.wasm", out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("clonekeeper snapshot: {error}");
            ExitCode::from(1)
        }
    }
}

async fn fetch(admin: &str, token: Option<&str>, out: &Path) -> Result<u64, String> {
    let url =
        if admin.starts_with("http") { format!("{admin}/v1/snapshot") } else { format!("http://{admin}/v1/snapshot") };
    let token =
        token.ok_or("no admin token: set CLONEKEEPER_ADMIN_TOKEN or pass --token-file (repo names can be private)")?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // The first byte can take a full read of the repo DB (the sidecar reads stars for it).
        .read_timeout(Duration::from_secs(360))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response =
        client.get(&url).bearer_auth(token.trim()).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("GET {url}: {status}: {}", crate::text::truncated(body.trim(), 500)));
    }
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: the download broke off: {e}"))? {
        file.write_all(&chunk).map_err(|e| format!("{}: {e}", out.display()))?;
        bytes += chunk.len() as u64;
    }
    file.as_file().sync_all().map_err(|e| format!("{}: {e}", out.display()))?;
    file.persist(out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(bytes)
}
