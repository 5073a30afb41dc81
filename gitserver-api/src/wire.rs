//! Request and response bodies of gitserver's and repo-updater's HTTP calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Body of `POST /repos` and `POST /repo-clone-progress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReposRequest {
    #[serde(rename = "Repos")]
    pub repos: Vec<String>,
}

/// Answer of `POST /repos`: one entry per requested name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReposResponse {
    #[serde(rename = "Results", default)]
    pub results: BTreeMap<String, RepoInfo>,
}

/// What gitserver knows about one repository (`protocol.RepoInfo`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RepoInfo {
    #[serde(rename = "URL")]
    pub url: String,
    pub clone_in_progress: bool,
    pub clone_progress: String,
    pub cloned: bool,
    pub last_fetched: Option<String>,
    pub last_changed: Option<String>,
    pub clone_time: Option<String>,
}

/// Answer of `POST /repo-clone-progress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CloneProgressResponse {
    #[serde(rename = "Results", default)]
    pub results: BTreeMap<String, CloneProgress>,
}

/// Clone progress of one repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CloneProgress {
    pub clone_in_progress: bool,
    pub clone_progress: String,
    pub cloned: bool,
}

/// Body of `POST /repo-update`. `since` is a Go duration in nanoseconds: gitserver skips the
/// fetch when the last one is more recent than that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoUpdateRequest {
    pub repo: String,
    pub url: String,
    #[serde(default)]
    pub since: i64,
}

/// Answer of `POST /repo-update`. A non-empty `error` carries git's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RepoUpdateResponse {
    pub cloned: bool,
    pub clone_in_progress: bool,
    pub last_fetched: Option<String>,
    pub last_changed: Option<String>,
    pub error: String,
}

/// Body of repo-updater's `POST /enqueue-repo-update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueRepoUpdateRequest {
    pub repo: String,
    pub url: String,
}

/// Answer of repo-updater's `POST /enqueue-repo-update`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EnqueueRepoUpdateResponse {
    pub id: i64,
    pub name: String,
    pub url: String,
}

/// Body of `POST /is-repo-cloneable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsRepoCloneableRequest {
    #[serde(rename = "Repo")]
    pub repo: String,
    pub url: String,
}

/// Answer of `POST /is-repo-cloneable`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IsRepoCloneableResponse {
    pub cloneable: bool,
    pub reason: String,
}

/// Body of `POST /delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    #[serde(rename = "Repo")]
    pub repo: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_the_go_structs() {
        let body = serde_json::to_value(RepoUpdateRequest {
            repo: "github.com/a/b".into(),
            url: "https://github.com/a/b".into(),
            since: 0,
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"repo": "github.com/a/b", "url": "https://github.com/a/b", "since": 0}));
        let answer: RepoUpdateResponse =
            serde_json::from_str(r#"{"Cloned":false,"CloneInProgress":true,"Error":"","LastFetched":null}"#).unwrap();
        assert!(answer.clone_in_progress && !answer.cloned && answer.error.is_empty());
        let repos: ReposResponse = serde_json::from_str(r#"{"Results":{"a/b":{"URL":"u","Cloned":true}}}"#).unwrap();
        assert!(repos.results["a/b"].cloned);
        assert_eq!(
            serde_json::to_value(ReposRequest { repos: vec!["x".into()] }).unwrap(),
            serde_json::json!({"Repos": ["x"]})
        );
    }
}
