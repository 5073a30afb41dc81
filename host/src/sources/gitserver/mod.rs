//! The gitserver client: listing clones, asking about clones in progress, and dispatching.
//!
//! Only this module speaks gitserver's HTTP. Every call has a timeout and a cap on the size
//! of the answer, and every error names the shard and the call.

pub mod answer;
mod error;

pub use error::{CallError, GitserverError};

use std::time::Duration;

use gitserver_api::{
    EnqueueRepoUpdateRequest, EnqueueRepoUpdateResponse, RepoUpdateRequest, RepoUpdateResponse, ReposRequest,
};
use serde::Serialize;

use crate::model::{NameList, RepoName};

/// Timeouts and limits of the client, from `[gitserver]` and `[dispatch]` in config.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// For list and progress calls.
    pub request_timeout: Duration,
    /// For `/repo-update`, which blocks while the shard clones (up to an hour for big repos).
    pub dispatch_timeout: Duration,
    /// Answers larger than this are refused rather than buffered.
    pub max_response_bytes: usize,
    /// Names per `/repo-clone-progress` call.
    pub progress_batch: usize,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            request_timeout: Duration::from_secs(30),
            dispatch_timeout: Duration::from_secs(3600),
            max_response_bytes: 512 << 20,
            progress_batch: 5_000,
        }
    }
}

/// What `/repo-clone-progress` said about names missing from a shard's list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub cloning: Vec<RepoName>,
    /// Cloned by now (the clone finished after the list call).
    pub cloned: Vec<RepoName>,
}

/// An HTTP client for any number of shards (and repo-updater).
#[derive(Clone, Debug)]
pub struct GitserverClient {
    http: reqwest::Client,
    config: ClientConfig,
}

impl GitserverClient {
    pub fn new(config: ClientConfig) -> Result<GitserverClient, GitserverError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GitserverError::new("-", "building the HTTP client", CallError::Transport(e.to_string())))?;
        Ok(GitserverClient { http, config })
    }

    /// `GET /list?cloned`: the names cloned on the shard, as the shard spells them (normal form).
    pub async fn list_cloned(&self, addr: &str) -> Result<NameList, GitserverError> {
        let request = self.http.get(url(addr, "/list?cloned")).timeout(self.config.request_timeout);
        let body = self.send(addr, answer::LIST, request).await?;
        answer::list(addr, &body, self.config.max_response_bytes)
    }

    /// `POST /repo-clone-progress` in batches: which of `names` the shard is cloning now, and
    /// which it finished cloning since its list was read (they count as cloned at once, so a
    /// clone that completes between the two calls is not dispatched again).
    pub async fn clone_progress(&self, addr: &str, names: &[&str]) -> Result<Progress, GitserverError> {
        let mut progress = Progress::default();
        for batch in names.chunks(self.config.progress_batch.max(1)) {
            let body = ReposRequest { repos: batch.iter().map(|n| n.to_string()).collect() };
            let request =
                self.http.post(url(addr, "/repo-clone-progress")).json(&body).timeout(self.config.request_timeout);
            let body = self.send(addr, answer::CLONE_PROGRESS, request).await?;
            let batch = answer::clone_progress(addr, &body, self.config.max_response_bytes)?;
            progress.cloning.extend(batch.cloning);
            progress.cloned.extend(batch.cloned);
        }
        Ok(progress)
    }

    /// `POST /repo-update` on the owning shard. Blocks while the shard clones; `Ok` carries
    /// the shard's answer, whose `Error` holds git's message when the clone failed.
    pub async fn repo_update(
        &self,
        addr: &str,
        name: &RepoName,
        clone_url: &str,
    ) -> Result<RepoUpdateResponse, GitserverError> {
        let body = RepoUpdateRequest { repo: name.to_string(), url: clone_url.to_string(), since: 0 };
        let body = self.post(addr, "/repo-update", answer::REPO_UPDATE, &body, self.config.dispatch_timeout).await?;
        answer::repo_update(addr, &body, self.config.max_response_bytes)
    }

    /// repo-updater's `POST /enqueue-repo-update`: returns at once; the clone shows up as
    /// cloning on the owning shard.
    pub async fn enqueue_repo_update(
        &self,
        addr: &str,
        name: &RepoName,
        clone_url: &str,
    ) -> Result<EnqueueRepoUpdateResponse, GitserverError> {
        let body = EnqueueRepoUpdateRequest { repo: name.to_string(), url: clone_url.to_string() };
        let body = self.post(addr, "/enqueue-repo-update", answer::ENQUEUE, &body, self.config.request_timeout).await?;
        answer::enqueue(addr, &body, self.config.max_response_bytes)
    }

    async fn post<B: Serialize>(
        &self,
        addr: &str,
        path: &str,
        call: &'static str,
        body: &B,
        timeout: Duration,
    ) -> Result<Vec<u8>, GitserverError> {
        let request = self.http.post(url(addr, path)).json(body).timeout(timeout);
        self.send(addr, call, request).await
    }

    /// Sends `request` and returns the body of a successful answer, read up to the size cap;
    /// decoding is `answer`'s job.
    async fn send(
        &self,
        addr: &str,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, GitserverError> {
        let response = self.start(addr, call, request).await?;
        read_body(addr, call, response, self.config.max_response_bytes).await
    }

    /// Sends `request` and returns a successful answer whose body is still to be read: an
    /// unsuccessful one is an error with the start of its body, and one that announces more
    /// than the size cap is refused before any of it is read.
    async fn start(
        &self,
        addr: &str,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GitserverError> {
        let fail = |kind| GitserverError::new(addr, call, kind);
        let response = request.send().await.map_err(|e| fail(CallError::transport(&e)))?;
        let status = response.status();
        let limit = self.config.max_response_bytes;
        if response.content_length().is_some_and(|len| len > limit as u64) {
            return Err(fail(CallError::TooLarge { limit }));
        }
        if !status.is_success() {
            let body = read_body(addr, call, response, limit).await?;
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_string();
            return Err(fail(CallError::Status { status: status.as_u16(), body: text }));
        }
        Ok(response)
    }
}

/// The whole body of `response`, up to `limit` bytes.
async fn read_body(
    addr: &str,
    call: &'static str,
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, GitserverError> {
    let fail = |kind| GitserverError::new(addr, call, kind);
    // Sized from the announced length (within the cap), so the buffer is not copied while it
    // doubles.
    let announced = response.content_length().map_or(0, |len| usize::try_from(len).unwrap_or(limit).min(limit));
    let mut body = Vec::with_capacity(announced);
    while let Some(chunk) = response.chunk().await.map_err(|e| fail(CallError::transport(&e)))? {
        if body.len() + chunk.len() > limit {
            return Err(fail(CallError::TooLarge { limit }));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `host:port` becomes `http://host:port`; an address with a scheme is used as it is.
fn url(addr: &str, path: &str) -> String {
    let base = addr.trim_end_matches('/');
    if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}{path}")
    } else {
        format!("http://{base}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn addresses_become_urls() {
        assert_eq!(url("gitserver-0:3178", "/list?cloned"), "http://gitserver-0:3178/list?cloned");
        assert_eq!(url("https://gs.example/", "/repos"), "https://gs.example/repos");
    }
}

#[cfg(test)]
mod answer_props;
#[cfg(test)]
mod answer_tests;
