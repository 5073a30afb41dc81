//! Decoding a shard's answers: the bytes of a body in, the typed answer or an error naming the
//! shard and the call out.
//!
//! Pure (no I/O, no clock), so arbitrary bytes can be fed to it directly: the property tests
//! do, and so do the fuzz targets in `fuzz/`. The client reads the body (under the same size
//! cap) and hands it here.

use std::fmt;

use gitserver_api::{CloneProgressResponse, EnqueueRepoUpdateResponse, RepoUpdateResponse};
use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};

use super::{CallError, GitserverError, Progress};
use crate::model::{NameList, NameListBuilder, RepoName};
use crate::text;

/// The calls, as errors and logs name them.
pub const LIST: &str = "GET /list?cloned";
pub const CLONE_PROGRESS: &str = "POST /repo-clone-progress";
pub const REPO_UPDATE: &str = "POST /repo-update";
pub const ENQUEUE: &str = "POST /enqueue-repo-update";

/// `GET /list?cloned`: a JSON array of names, taken as the shard spells them (its directories,
/// already in normal form), decoded straight into one [`NameList`]: no string per name.
pub fn list(addr: &str, body: &[u8], limit: usize) -> Result<NameList, GitserverError> {
    if body.len() > limit {
        return Err(GitserverError::new(addr, LIST, CallError::TooLarge { limit }));
    }
    // Every name is a JSON string, so its two quotes bound the count; the text is at most the
    // body less the quotes and the commas between names (escapes only shorten it), so the
    // buffer never grows and holds little it does not use.
    let quotes = body.iter().filter(|&&b| b == b'"').count();
    let names_at_most = quotes / 2;
    let text_at_most = body.len().saturating_sub(quotes + names_at_most.saturating_sub(1));
    let mut names = NameListBuilder::with_capacity(names_at_most, text_at_most);
    let mut decoder = serde_json::Deserializer::from_slice(body);
    ListSeed(&mut names)
        .deserialize(&mut decoder)
        .and_then(|()| decoder.end())
        .map_err(|e| decode_error(addr, LIST, &e))?;
    Ok(names.finish())
}

/// Decodes a JSON array of strings into the builder.
struct ListSeed<'b>(&'b mut NameListBuilder);

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, decoder: D) -> Result<(), D::Error> {
        decoder.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of repository names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(NameSeed(self.0))?.is_some() {}
        Ok(())
    }
}

/// Appends one JSON string to the builder, borrowed from the body where it has no escapes.
struct NameSeed<'b>(&'b mut NameListBuilder);

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, decoder: D) -> Result<(), D::Error> {
        decoder.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a repository name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<(), E> {
        self.0.try_push(name).map_err(|_| E::custom("the list's names pass 4 GiB"))
    }
}

/// One batch of `POST /repo-clone-progress`: which names the shard is cloning and which it has
/// finished cloning. Names are normalised again (the answer is keyed by what was asked, and a
/// shard may echo another spelling); names that normalise to nothing are dropped.
pub fn clone_progress(addr: &str, body: &[u8], limit: usize) -> Result<Progress, GitserverError> {
    let answer: CloneProgressResponse = json(addr, CLONE_PROGRESS, body, limit)?;
    let mut progress = Progress::default();
    for (name, state) in answer.results {
        let Some(name) = RepoName::normalize(&name) else { continue };
        if state.cloned {
            progress.cloned.push(name);
        } else if state.clone_in_progress {
            progress.cloning.push(name);
        }
    }
    Ok(progress)
}

/// `POST /repo-update`: the shard's answer; a non-empty `Error` is git's message, for the caller
/// to judge.
pub fn repo_update(addr: &str, body: &[u8], limit: usize) -> Result<RepoUpdateResponse, GitserverError> {
    json(addr, REPO_UPDATE, body, limit)
}

/// repo-updater's `POST /enqueue-repo-update`.
pub fn enqueue(addr: &str, body: &[u8], limit: usize) -> Result<EnqueueRepoUpdateResponse, GitserverError> {
    json(addr, ENQUEUE, body, limit)
}

/// Bytes of serde's message kept in a decode error: it quotes the offending value, which a
/// broken shard can make as large as the answer, and the error is logged and stored.
pub const MAX_DECODE_MESSAGE_BYTES: usize = 300;

/// A body over `limit` is refused whole, even when the client's streaming check was bypassed
/// (a fuzz target, a future caller), so no decoder ever works on more than the cap.
fn json<T: DeserializeOwned>(addr: &str, call: &'static str, body: &[u8], limit: usize) -> Result<T, GitserverError> {
    if body.len() > limit {
        return Err(GitserverError::new(addr, call, CallError::TooLarge { limit }));
    }
    serde_json::from_slice(body).map_err(|e| decode_error(addr, call, &e))
}

fn decode_error(addr: &str, call: &'static str, error: &serde_json::Error) -> GitserverError {
    let message = text::truncated(&error.to_string(), MAX_DECODE_MESSAGE_BYTES);
    GitserverError::new(addr, call, CallError::Decode(message))
}
