//! The load per code host that the rate-limit policy is told about, with the service type
//! most of the host's repos have (so a policy can budget a self-hosted GitLab as GitLab).

use std::sync::Arc;

/// What the sidecar counts for one code host when it asks the rate-limit policy.
#[derive(Default)]
pub(super) struct HostLoad {
    pub repos: u32,
    pub queued: u32,
    pub in_flight: u32,
    /// Repos per service type; names are interned by the reader, so this stays a short list.
    service_types: Vec<(Arc<str>, u32)>,
}

impl HostLoad {
    pub fn count_service_type(&mut self, service_type: Option<&Arc<str>>) {
        let Some(kind) = service_type else { return };
        match self.service_types.iter_mut().find(|(seen, _)| Arc::ptr_eq(seen, kind) || seen == kind) {
            Some((_, count)) => *count += 1,
            None => self.service_types.push((Arc::clone(kind), 1)),
        }
    }

    /// The most common service type (ties: the first seen).
    pub fn service_type(&self) -> Option<Arc<str>> {
        let mut best: Option<&(Arc<str>, u32)> = None;
        for entry in &self.service_types {
            if best.is_none_or(|b| entry.1 > b.1) {
                best = Some(entry);
            }
        }
        best.map(|(kind, _)| Arc::clone(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_common_service_type_wins_and_ties_go_to_the_first_seen() {
        let (github, gitlab) = (Arc::<str>::from("github"), Arc::<str>::from("gitlab"));
        let mut load = HostLoad::default();
        assert_eq!(load.service_type(), None, "no repo says");
        load.count_service_type(Some(&gitlab));
        load.count_service_type(None);
        load.count_service_type(Some(&Arc::from("github")));
        assert_eq!(load.service_type().as_deref(), Some("gitlab"), "a tie: the first seen");
        load.count_service_type(Some(&github));
        assert_eq!(load.service_type().as_deref(), Some("github"));
        assert_eq!(load.service_types.len(), 2, "equal names count together, interned or not");
    }
}
