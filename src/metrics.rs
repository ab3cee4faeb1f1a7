//! Process metrics exported at `/metrics` (Prometheus text): inbound events, releases, jobs, events
//! recorded and requests sent to the state store.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// Process metrics, exported at `/metrics`.
pub struct Metrics {
    registry: Registry,
    inbound: Family<KindLabel, Counter>,
    releases_started: Counter,
    releases_finished: Family<OutcomeLabel, Counter>,
    active: Gauge,
    jobs: Family<OutcomeLabel, Counter>,
    jobs_running: Gauge,
    events_recorded: Counter,
    store_requests: Counter,
}

impl Metrics {
    /// A fresh registry with every `raybot_*` metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("raybot");
        let inbound = Family::<KindLabel, Counter>::default();
        let releases_started = Counter::default();
        let releases_finished = Family::<OutcomeLabel, Counter>::default();
        let active = Gauge::default();
        let jobs = Family::<OutcomeLabel, Counter>::default();
        let jobs_running = Gauge::default();
        let events_recorded = Counter::default();
        let store_requests = Counter::default();
        registry.register("inbound_events", "Commands, reactions and clicks received", inbound.clone());
        registry.register("releases_started", "Releases started", releases_started.clone());
        registry.register("releases_finished", "Releases ended, by outcome", releases_finished.clone());
        registry.register("active_releases", "Releases in progress", active.clone());
        registry.register("jobs", "Jobs finished, by outcome", jobs.clone());
        registry.register("jobs_running", "Jobs running now", jobs_running.clone());
        registry.register(
            "events_recorded",
            "Events appended to release logs by this process",
            events_recorded.clone(),
        );
        registry.register(
            "store_requests",
            "Requests this process sent to the state store (a pipeline counts once; Redis only)",
            store_requests.clone(),
        );
        Metrics {
            registry,
            inbound,
            releases_started,
            releases_finished,
            active,
            jobs,
            jobs_running,
            events_recorded,
            store_requests,
        }
    }

    /// Counts one inbound event of `kind`: `command`, `reaction` or `click`.
    pub fn inbound(&self, kind: &str) {
        self.inbound.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    /// Counts a started release and raises the active gauge.
    pub fn release_started(&self) {
        self.releases_started.inc();
        self.active.inc();
    }

    /// Raises the active gauge for a release picked up from the store after a restart (it was
    /// counted as started by the process that started it).
    pub fn release_resumed(&self) {
        self.active.inc();
    }

    /// Counts an ended release under its [`Terminal::label`](crate::engine::Terminal::label) and
    /// lowers the active gauge.
    pub fn release_finished(&self, outcome: &str) {
        self.releases_finished.get_or_create(&OutcomeLabel { outcome: outcome.into() }).inc();
        self.active.dec();
    }

    /// Raises the running-jobs gauge.
    pub fn job_started(&self) {
        self.jobs_running.inc();
    }

    /// Lowers the running-jobs gauge and counts the job as `succeeded` or `failed`.
    pub fn job_finished(&self, ok: bool) {
        self.jobs_running.dec();
        self.jobs.get_or_create(&OutcomeLabel { outcome: if ok { "succeeded" } else { "failed" }.into() }).inc();
    }

    /// Counts `n` events appended to release logs.
    pub fn recorded(&self, n: u64) {
        self.events_recorded.inc_by(n);
    }

    /// Brings the store-requests counter up to `total`, the store's own count.
    pub fn store_requests(&self, total: u64) {
        let seen = self.store_requests.get();
        if total > seen {
            self.store_requests.inc_by(total - seen);
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
