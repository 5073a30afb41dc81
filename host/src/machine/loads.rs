//! The load per code host that the rate-limit policy is told about, with the service type
//! most of the host's repos have (so a policy can budget a self-hosted GitLab as GitLab).

use std::collections::HashMap;
use std::sync::Arc;

use super::Machine;
use crate::model::{DesiredRepos, ServiceType, ShardIdx};
use crate::reconcile::Plan;
use crate::schedule::{self, KeyLoad, LimitKey};

impl Machine {
    /// The load on every code host and shard, for the rate-limit policy: code hosts in name
    /// order, then the shards in address order.
    pub(super) fn key_loads(&self, desired: &DesiredRepos, plan: &Plan, jobs: &[schedule::Job]) -> Vec<KeyLoad> {
        let mut hosts: HashMap<&str, HostLoad> = HashMap::new();
        for repo in desired.iter() {
            let host = hosts.entry(repo.code_host()).or_default();
            host.repos += 1;
            host.count_service_type(repo.service_type());
        }
        let mut shard_queued = vec![0u32; self.settings.shards.len()];
        for job in jobs {
            if let Some(repo) = desired.get(job.repo as usize) {
                hosts.entry(repo.code_host()).or_default().queued += 1;
            }
            if let Some(count) = shard_queued.get_mut(usize::from(job.shard)) {
                *count += 1;
            }
        }
        for name in self.scheduler.in_flight() {
            if let Some(host) = hosts.get_mut(schedule::code_host_of(name.as_str())) {
                host.in_flight += 1;
            }
        }
        let in_flight = self.scheduler.in_flight_per_shard();
        let mut loads: Vec<KeyLoad> = hosts
            .into_iter()
            .map(|(host, load)| KeyLoad {
                key: LimitKey::CodeHost(host.into()),
                service_type: load.service_type(),
                repos: load.repos,
                queued: load.queued,
                in_flight: load.in_flight,
            })
            .collect();
        loads.sort_by(|a, b| a.key.cmp(&b.key));
        for (idx, queued) in shard_queued.into_iter().enumerate() {
            loads.push(KeyLoad {
                key: LimitKey::Shard(idx as ShardIdx),
                service_type: None,
                repos: plan.shards.get(idx).map_or(0, |c| u32::try_from(c.desired).unwrap_or(u32::MAX)),
                queued,
                in_flight: in_flight.get(idx).map_or(0, |&n| u32::try_from(n).unwrap_or(u32::MAX)),
            });
        }
        loads
    }
}

/// What the sidecar counts for one code host when it asks the rate-limit policy.
#[derive(Default)]
struct HostLoad {
    pub repos: u32,
    pub queued: u32,
    pub in_flight: u32,
    /// Repos per service type; names are interned by the reader, so this stays a short list.
    service_types: Vec<(ServiceType, u32)>,
}

impl HostLoad {
    pub fn count_service_type(&mut self, service_type: Option<&ServiceType>) {
        let Some(kind) = service_type else { return };
        match self.service_types.iter_mut().find(|(seen, _)| seen.ptr_eq(kind) || seen == kind) {
            Some((_, count)) => *count += 1,
            None => self.service_types.push((kind.clone(), 1)),
        }
    }

    /// The most common service type (ties: the first seen).
    pub fn service_type(&self) -> Option<Arc<str>> {
        let mut best: Option<&(ServiceType, u32)> = None;
        for entry in &self.service_types {
            if best.is_none_or(|b| entry.1 > b.1) {
                best = Some(entry);
            }
        }
        best.map(|(kind, _)| Arc::from(kind.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_common_service_type_wins_and_ties_go_to_the_first_seen() {
        let (github, gitlab) = (ServiceType::new("github"), ServiceType::new("gitlab"));
        let mut load = HostLoad::default();
        assert_eq!(load.service_type(), None, "no repo says");
        load.count_service_type(Some(&gitlab));
        load.count_service_type(None);
        load.count_service_type(Some(&ServiceType::new("github")));
        assert_eq!(load.service_type().as_deref(), Some("gitlab"), "a tie: the first seen");
        load.count_service_type(Some(&github));
        assert_eq!(load.service_type().as_deref(), Some("github"));
        assert_eq!(load.service_types.len(), 2, "equal names count together, interned or not");
    }
}
