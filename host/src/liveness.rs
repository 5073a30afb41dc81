//! Liveness of the tick loop: which step it is in, since when, and when it last finished a
//! tick and a repo DB read.
//!
//! clonekeeper exists because a clone queue once stalled while every signal said all was
//! well, so a stall of its own loop must be loud. The loop reports each step here (atomics,
//! no locks, no allocation); `/readyz`, the metrics and the watchdog log read it. The
//! verdict itself ([`Report::problems`]) is a pure function of a [`Report`] and `now`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::model::Timestamp;

/// What the tick loop is doing; a stall names the step it is stuck in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Connecting to the databases at startup, before the loop starts.
    Startup,
    /// Between ticks, or handling dispatch outcomes.
    Idle,
    /// Loading the attempt records at startup.
    StateLoad,
    /// Reading the desired repos from the repo DB.
    RepoDbRead,
    /// Waiting for the shards' list and progress answers.
    ShardLists,
    /// Asking the policy modules (order, rate limits, retries).
    Policy,
}

impl Step {
    pub const ALL: [Step; 6] =
        [Step::Startup, Step::Idle, Step::StateLoad, Step::RepoDbRead, Step::ShardLists, Step::Policy];

    /// The name in metrics labels and readiness messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Startup => "startup",
            Step::Idle => "idle",
            Step::StateLoad => "state_load",
            Step::RepoDbRead => "repo_db_read",
            Step::ShardLists => "shard_lists",
            Step::Policy => "policy",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Step::Startup => "connecting to the repo DB and state DB",
            Step::Idle => "between ticks",
            Step::StateLoad => "loading attempt state from the state DB",
            Step::RepoDbRead => "reading the repo DB",
            Step::ShardLists => "waiting for shard lists",
            Step::Policy => "waiting for a policy call",
        }
    }

    fn from_u8(value: u8) -> Step {
        Step::ALL.iter().copied().find(|&step| step as u8 == value).unwrap_or(Step::Idle)
    }
}

/// What this replica does (`[ha]`): a follower makes no ticks, so its liveness is judged
/// differently.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// The only replica (no `[ha]`).
    Single,
    /// Holds the lease and dispatches.
    Leader,
    /// Waits for the lease; serves the status, dispatches nothing.
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }

    fn from_u8(value: u8) -> Role {
        [Role::Single, Role::Leader, Role::Follower].into_iter().find(|r| *r as u8 == value).unwrap_or(Role::Single)
    }
}

/// Shared between the tick loop (writer) and the admin API (reader).
#[derive(Debug)]
pub struct Liveness {
    role: AtomicU8,
    stall_after: Duration,
    started_at: Timestamp,
    step: AtomicU8,
    step_since: AtomicI64,
    /// 0: never.
    last_tick: AtomicI64,
    /// 0: never.
    last_repo_db_read: AtomicI64,
    /// When the oldest attempt record not yet in the state DB was handed to the writer; 0: none.
    state_unwritten_since: AtomicI64,
    /// Set when the tick loop task ends (normally or by a panic); before it starts, false.
    loop_ended: AtomicBool,
    metrics: std::sync::Arc<Metrics>,
}

/// A consistent-enough copy of [`Liveness`] for one verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub role: Role,
    pub stall_after: Duration,
    pub started_at: Timestamp,
    pub step: Step,
    pub step_since: Timestamp,
    pub last_tick: Option<Timestamp>,
    pub last_repo_db_read: Option<Timestamp>,
    pub state_unwritten_since: Option<Timestamp>,
    pub loop_ended: bool,
}

impl Liveness {
    pub fn new(stall_after: Duration, metrics: std::sync::Arc<Metrics>, now: Timestamp) -> Liveness {
        metrics.stall_after_seconds.set(stall_after.as_secs_f64());
        let liveness = Liveness {
            role: AtomicU8::new(Role::Single as u8),
            stall_after,
            started_at: now,
            step: AtomicU8::new(Step::Startup as u8),
            step_since: AtomicI64::new(now.as_millis()),
            last_tick: AtomicI64::new(0),
            last_repo_db_read: AtomicI64::new(0),
            state_unwritten_since: AtomicI64::new(0),
            loop_ended: AtomicBool::new(false),
            metrics,
        };
        liveness.set_step_gauge(Step::Startup);
        liveness
    }

    /// This replica's role from now on; a new leader starts its stall clocks afresh.
    pub fn set_role(&self, role: Role, now: Timestamp) {
        if Role::from_u8(self.role.swap(role as u8, Ordering::Relaxed)) != role && role == Role::Leader {
            self.last_tick.store(now.as_millis(), Ordering::Relaxed);
            self.last_repo_db_read.store(now.as_millis(), Ordering::Relaxed);
        }
        self.metrics.leader.set(i64::from(role != Role::Follower));
    }

    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    /// The tick loop entered `step` at `now`.
    pub fn enter(&self, step: Step, now: Timestamp) {
        let previous = Step::from_u8(self.step.swap(step as u8, Ordering::Relaxed));
        if previous != step {
            self.step_since.store(now.as_millis(), Ordering::Relaxed);
            self.set_step_gauge(step);
        }
    }

    pub fn tick_completed(&self, now: Timestamp) {
        self.last_tick.store(now.as_millis(), Ordering::Relaxed);
        self.metrics.last_tick_completed.set(now.as_millis() as f64 / 1000.0);
    }

    pub fn repo_db_read_succeeded(&self, now: Timestamp) {
        self.last_repo_db_read.store(now.as_millis(), Ordering::Relaxed);
        self.metrics.last_repo_db_read.set(now.as_millis() as f64 / 1000.0);
    }

    /// The state writer's backlog: `Some(since)` while records wait to be written.
    pub fn state_unwritten_since(&self, since: Option<Timestamp>) {
        self.state_unwritten_since.store(since.map_or(0, Timestamp::as_millis), Ordering::Relaxed);
    }

    /// A guard whose drop (the loop's end, also by a panic) marks the loop as ended.
    pub fn loop_guard(self: &std::sync::Arc<Self>) -> LoopGuard {
        LoopGuard(std::sync::Arc::clone(self))
    }

    /// Whether the tick loop has ended: the one failure a restart cures. Not yet started
    /// (still connecting to the databases) is not ended.
    pub fn loop_ended(&self) -> bool {
        self.loop_ended.load(Ordering::Relaxed)
    }

    pub fn report(&self) -> Report {
        let at =
            |cell: &AtomicI64| Some(cell.load(Ordering::Relaxed)).filter(|&ms| ms != 0).map(Timestamp::from_millis);
        Report {
            role: self.role(),
            stall_after: self.stall_after,
            started_at: self.started_at,
            step: Step::from_u8(self.step.load(Ordering::Relaxed)),
            step_since: Timestamp::from_millis(self.step_since.load(Ordering::Relaxed)),
            last_tick: at(&self.last_tick),
            last_repo_db_read: at(&self.last_repo_db_read),
            state_unwritten_since: at(&self.state_unwritten_since),
            loop_ended: self.loop_ended(),
        }
    }

    fn set_step_gauge(&self, current: Step) {
        for step in Step::ALL {
            let label = crate::metrics::StepLabel { step: step.as_str() };
            self.metrics.tick_step.get_or_create(&label).set(i64::from(step == current));
        }
    }
}

/// Logs a stall when it starts and when it clears: a loop that stops making progress says
/// so in its log, not only on `/readyz`. Runs until dropped.
pub async fn watchdog(liveness: std::sync::Arc<Liveness>) {
    let period = (liveness.stall_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
    let mut stalled = false;
    loop {
        tokio::time::sleep(period).await;
        let problems = liveness.report().problems(Timestamp::now());
        match (stalled, problems.is_empty()) {
            (false, false) => {
                tracing::error!(problems = %problems.join("; "), "clonekeeper is not making progress; /readyz fails until it does.");
                stalled = true;
            }
            (true, true) => {
                tracing::info!("clonekeeper is making progress again.");
                stalled = false;
            }
            _ => {}
        }
    }
}

/// Dropped when the tick loop ends, normally or by a panic; `/healthz` then fails.
#[derive(Debug)]
pub struct LoopGuard(std::sync::Arc<Liveness>);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        self.0.loop_ended.store(true, Ordering::Relaxed);
    }
}

impl Report {
    /// Why the loop is not making progress, one sentence per problem; empty when it is.
    ///
    /// A tick that has not completed for `stall_after` (counted from the last tick, or from
    /// startup) names the step it is stuck in; a desired set older than `stall_after` is
    /// called stale even if ticks complete on it; so is a backlog of attempt records the state
    /// DB has not taken for that long.
    pub fn problems(&self, now: Timestamp) -> Vec<String> {
        let mut problems = Vec::new();
        // A follower makes no ticks and reads nothing: it waits for the lease.
        if self.role == Role::Follower {
            return problems;
        }
        let secs = |d: Duration| d.as_secs();
        let since_tick = now.since(self.last_tick.unwrap_or(self.started_at));
        if since_tick >= self.stall_after {
            let what = if self.last_tick.is_some() { "no tick completed for" } else { "no first tick after" };
            problems.push(format!(
                "tick loop stalled: {what} {}s (stall_after {}s); stuck {} for {}s",
                secs(since_tick),
                secs(self.stall_after),
                self.step.describe(),
                secs(now.since(self.step_since)),
            ));
        }
        let since_read = now.since(self.last_repo_db_read.unwrap_or(self.started_at));
        if since_read >= self.stall_after {
            problems.push(match self.last_repo_db_read {
                Some(at) => format!(
                    "desired set stale: the last successful repo DB read was {}s ago (at {}; stall_after {}s)",
                    secs(since_read),
                    at.to_rfc3339(),
                    secs(self.stall_after)
                ),
                None => format!("desired set unknown: no successful repo DB read in {}s since start", secs(since_read)),
            });
        }
        if let Some(since) = self.state_unwritten_since {
            let waiting = now.since(since);
            if waiting >= self.stall_after {
                problems.push(format!(
                    "attempt state not written: records have waited {}s for the state DB (stall_after {}s)",
                    secs(waiting),
                    secs(self.stall_after)
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(now_ms: i64) -> Report {
        Report {
            role: Role::Single,
            stall_after: Duration::from_secs(60),
            started_at: Timestamp::from_millis(0),
            step: Step::Idle,
            step_since: Timestamp::from_millis(now_ms),
            last_tick: Some(Timestamp::from_millis(now_ms)),
            last_repo_db_read: Some(Timestamp::from_millis(now_ms)),
            state_unwritten_since: None,
            loop_ended: false,
        }
    }

    #[test]
    fn a_fresh_loop_has_no_problems() {
        assert_eq!(report(100_000).problems(Timestamp::from_millis(159_999)), Vec::<String>::new());
    }

    #[test]
    fn a_stalled_tick_names_its_step_and_duration() {
        let mut stuck = report(100_000);
        stuck.step = Step::RepoDbRead;
        stuck.step_since = Timestamp::from_millis(101_000);
        let problems = stuck.problems(Timestamp::from_millis(161_000));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no tick completed for 61s"), "{problems:?}");
        assert!(problems[0].contains("reading the repo DB for 60s"), "{problems:?}");
        assert!(problems[1].starts_with("desired set stale"), "{problems:?}");
    }

    #[test]
    fn ticks_on_a_stale_desired_set_are_not_ready() {
        let mut stale = report(200_000);
        stale.last_repo_db_read = Some(Timestamp::from_millis(100_000));
        let problems = stale.problems(Timestamp::from_millis(200_500));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("last successful repo DB read was 100s ago"), "{problems:?}");
    }

    #[test]
    fn a_loop_that_never_ticked_is_stalled_after_startup_plus_stall_after() {
        let mut never = report(0);
        never.last_tick = None;
        never.last_repo_db_read = None;
        never.step = Step::StateLoad;
        assert!(never.problems(Timestamp::from_millis(59_000)).is_empty());
        let problems = never.problems(Timestamp::from_millis(60_000));
        assert!(problems[0].contains("no first tick after 60s"), "{problems:?}");
        assert!(problems[0].contains("loading attempt state"), "{problems:?}");
        assert!(problems[1].contains("no successful repo DB read"), "{problems:?}");
    }

    #[test]
    fn a_state_backlog_older_than_stall_after_is_reported() {
        let mut backlog = report(100_000);
        backlog.state_unwritten_since = Some(Timestamp::from_millis(30_000));
        let problems = backlog.problems(Timestamp::from_millis(100_000));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("attempt state not written: records have waited 70s"), "{problems:?}");
    }

    #[test]
    fn the_loop_guard_marks_the_loop_ended_on_drop_and_on_panic() {
        let liveness = std::sync::Arc::new(Liveness::new(
            Duration::from_secs(60),
            std::sync::Arc::default(),
            Timestamp::from_millis(1),
        ));
        assert!(!liveness.loop_ended(), "not started is not ended");
        let guard = liveness.loop_guard();
        assert!(!liveness.loop_ended());
        drop(guard);
        assert!(liveness.loop_ended());
        let inner = std::sync::Arc::clone(&liveness);
        let result = std::thread::spawn(move || {
            let _guard = inner.loop_guard();
            panic!("the loop task dies");
        })
        .join();
        assert!(result.is_err());
        assert!(liveness.loop_ended());
    }
}
