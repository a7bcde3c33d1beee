//! Usage metering: counts every request by month, key, operation and outcome, samples key
//! states into billable key time, keeps both in the usage ledger (`usage.db`), and turns
//! them into KMS-style cost estimates, Prometheus metrics and `kmsctl usage` reports.
//!
//! Hot path: [`Metering::record`] takes the read lock of one of [`SHARDS`] counter maps
//! (chosen by key id and operation) and increments an atomic; only the first request of a
//! new (month, key, operation, outcome) series takes that shard's write lock. Duration
//! histograms are lock-free (one pre-built histogram per operation).
//!
//! Background: [`Metering::flush`] runs once a second (and at shutdown). It samples every
//! key's state on the service clock, accrues the time since the previous sample to the
//! state seen now (Enabled/Disabled: billable; PendingDeletion: set aside, credited back if
//! the deletion is cancelled and dropped if the key is destroyed), and commits the counts
//! added since the last flush plus the key time in one SQLite transaction.

pub mod cost;
pub mod exposition;
pub mod ledger;
pub mod month;
pub mod report;

pub use cost::{Outcome, PriceClass, Pricing};
pub use month::Month;
pub use report::UsageReport;

use crate::api::operations::{self as ops, OPERATIONS};
use crate::clock::UnixMillis;
use crate::identity::Caller;
use crate::keystore::KeyState;
use crate::request::{Observed, Observer, RequestEvent, TrailHealth};
use crate::service::{KeySummary, Kms};
use crate::tpm::{TpmHandle, TpmStats};
use ledger::{Accrual, CountRow, Ledger};
use prometheus::{Histogram, HistogramOpts, HistogramVec, Registry};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Number of counter maps; requests for different keys or operations rarely share one.
pub const SHARDS: usize = 16;
/// The kmsd extension operation that returns a month's usage report.
pub const USAGE_OPERATION: &str = ops::KMSD_GET_USAGE.name;
/// How often counts are flushed and key states sampled.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Label of operations kmsd does not know (keeps the label set bounded).
pub const UNKNOWN_OPERATION: &str = "unknown";

/// Errors of the metering layer.
#[derive(Debug, thiserror::Error)]
pub enum MeteringError {
    /// The ledger database failed.
    #[error("usage ledger: {0}")]
    Ledger(String),
    /// A usage query is malformed (for example an unknown month).
    #[error("{0}")]
    Validation(String),
    /// The caller may not read the usage of other users.
    #[error("{0}")]
    AccessDenied(String),
    /// The metrics could not be encoded.
    #[error("metrics encoding: {0}")]
    Metrics(String),
    /// The metrics listener could not be bound.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CounterKey {
    month: Month,
    key_id: String,
    operation: &'static str,
    outcome: Outcome,
    /// A request of the operation that AWS prices apart: GenerateDataKeyPair* of an RSA
    /// pair. The ledger stores it as `<operation>+RSA` ([`cost::RSA_PAIR_SUFFIX`]).
    rsa_pair: bool,
}

impl CounterKey {
    /// The operation as the ledger stores it.
    fn ledger_operation(&self) -> String {
        if self.rsa_pair {
            format!("{}{}", self.operation, cost::RSA_PAIR_SUFFIX)
        } else {
            self.operation.to_string()
        }
    }
}

#[derive(Debug, Default)]
struct Counter {
    value: AtomicU64,
    /// Part of `value` already in the ledger; written only by `flush` under the state lock.
    flushed: AtomicU64,
}

type Shard = RwLock<HashMap<CounterKey, Arc<Counter>>>;

/// What the sampler knows (touched once a second and at scrapes, never by requests).
#[derive(Debug, Default)]
struct State {
    last_sample_ms: Option<UnixMillis>,
    /// This month's and last month's key time.
    accruals: HashMap<(Month, String), Accrual>,
    /// Accruals changed since the last commit.
    dirty: HashSet<(Month, String)>,
    /// Key states at the last sample.
    summaries: Vec<KeySummary>,
    pruned_for: Option<Month>,
}

impl State {
    /// Accrues `[last sample, now)` to the key states in `summaries` (see the module doc).
    fn accrue(&mut self, pricing: &Pricing, now: UnixMillis, summaries: Vec<KeySummary>) {
        let month_now = Month::containing(now);
        let from = self.last_sample_ms.unwrap_or_else(|| month_now.start_ms());
        if now > from {
            for key in &summaries {
                let rotations = i64::from(pricing.billed_rotations(key.versions));
                for (month, start, end) in month::split_by_month(from.max(key.created_ms), now) {
                    let span = end - start;
                    let id = (month, key.key_id.clone());
                    let acc = self.accruals.entry(id.clone()).or_default();
                    if key.state == KeyState::PendingDeletion {
                        acc.suspended_ms += span;
                        acc.suspended_rotation_ms += span * rotations;
                    } else {
                        acc.billable_ms += span;
                        acc.rotation_ms += span * rotations;
                    }
                    self.dirty.insert(id);
                }
            }
        }
        // Every key that exists has this month's row (so its series exist from creation).
        for key in &summaries {
            let id = (month_now, key.key_id.clone());
            if !self.accruals.contains_key(&id) {
                self.accruals.insert(id.clone(), Accrual::default());
                self.dirty.insert(id);
            }
        }
        let states: HashMap<&str, KeyState> = summaries
            .iter()
            .map(|k| (k.key_id.as_str(), k.state))
            .collect();
        for ((month, key_id), acc) in &mut self.accruals {
            if acc.suspended_ms == 0 && acc.suspended_rotation_ms == 0 {
                continue;
            }
            match states.get(key_id.as_str()) {
                // Deletion cancelled: billed as if it had never been scheduled.
                Some(KeyState::Enabled | KeyState::Disabled | KeyState::PendingImport) => {
                    acc.billable_ms += acc.suspended_ms;
                    acc.rotation_ms += acc.suspended_rotation_ms;
                }
                Some(KeyState::PendingDeletion) => continue,
                // Destroyed: the time pending deletion is never billed.
                None => {}
            }
            acc.suspended_ms = 0;
            acc.suspended_rotation_ms = 0;
            self.dirty.insert((*month, key_id.clone()));
        }
        // When the clock went back, accrual restarts from the earlier time.
        self.last_sample_ms = Some(now);
        self.summaries = summaries;
    }
}

/// The usage meter of one daemon.
pub struct Metering {
    kms: Arc<Kms>,
    /// Swapped by a reload ([`Metering::set_pricing`]); each report reads it once.
    pricing: RwLock<Arc<Pricing>>,
    shards: Vec<Shard>,
    durations: HashMap<&'static str, Histogram>,
    registry: Registry,
    state: Mutex<State>,
    ledger: Mutex<Ledger>,
    tpm: Mutex<Option<TpmHandle>>,
    audit: Mutex<Option<Arc<dyn TrailHealth>>>,
    /// `kmsd_tcp_refused_total`, by reason.
    tcp_refusals: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Metering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metering")
            .field("pricing", &self.pricing())
            .finish_non_exhaustive()
    }
}

/// The `reason` label values of `kmsd_tcp_refused_total` (all exported from the start, at 0).
pub const TCP_REFUSAL_REASONS: [&str; 5] = [
    "browser",
    "host",
    "not_aws_request",
    "signature",
    "unproven_caller",
];

impl Metering {
    /// Counts one refusal of the TCP endpoint (`reason`: one of [`TCP_REFUSAL_REASONS`]).
    pub fn count_tcp_refusal(&self, reason: &'static str) {
        if TCP_REFUSAL_REASONS.contains(&reason) {
            self.tcp_refusals.with_label_values(&[reason]).inc();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The bounded operation label: a known operation name, or [`UNKNOWN_OPERATION`].
pub fn operation_label(operation: &str) -> &'static str {
    ops::find(operation).map_or(UNKNOWN_OPERATION, |op| op.name)
}

fn all_operation_labels() -> impl Iterator<Item = &'static str> {
    OPERATIONS
        .iter()
        .map(|op| op.name)
        .chain([UNKNOWN_OPERATION])
}

fn shard_index(key_id: &str, operation: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    key_id.hash(&mut hasher);
    operation.hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

impl Metering {
    /// Opens the ledger in `state_dir` and loads the current month's counts and the key
    /// time of this month and the previous one.
    pub fn open(
        state_dir: &Path,
        kms: Arc<Kms>,
        pricing: Pricing,
    ) -> Result<Metering, MeteringError> {
        let ledger = Ledger::open(state_dir)?;
        let registry = Registry::new();
        let histograms = HistogramVec::new(
            HistogramOpts::new(
                "kmsd_request_duration_seconds",
                "Time kmsd took to answer a request, by operation.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["operation"],
        )
        .map_err(|err| MeteringError::Metrics(err.to_string()))?;
        let durations = all_operation_labels()
            .map(|op| (op, histograms.with_label_values(&[op])))
            .collect();
        let register = |collector: Box<dyn prometheus::core::Collector>| {
            registry
                .register(collector)
                .map_err(|err| MeteringError::Metrics(err.to_string()))
        };
        register(Box::new(histograms))?;
        register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let tcp_refusals = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "kmsd_tcp_refused_total",
                "Connections and requests the loopback TCP endpoint refused before the pipeline, by reason (browser, host, not_aws_request, signature, unproven_caller).",
            ),
            &["reason"],
        )
        .map_err(|err| MeteringError::Metrics(err.to_string()))?;
        for reason in TCP_REFUSAL_REASONS {
            tcp_refusals.with_label_values(&[reason]);
        }
        register(Box::new(tcp_refusals.clone()))?;

        let now = kms.clock().now_ms();
        let month = Month::containing(now);
        let mut state = State {
            last_sample_ms: ledger.last_sample_ms()?,
            ..State::default()
        };
        for m in [month.previous(), month] {
            for (key_id, accrual) in ledger.accruals(m)? {
                state.accruals.insert((m, key_id), accrual);
            }
        }
        let shards: Vec<Shard> = (0..SHARDS).map(|_| RwLock::default()).collect();
        for row in ledger.counts(month)? {
            let (base, rsa_pair) = cost::split_rsa_pair(&row.operation);
            let (Some(outcome), operation) = (Outcome::parse(&row.outcome), operation_label(base))
            else {
                continue;
            };
            let key = CounterKey {
                month,
                key_id: row.key_id,
                operation,
                outcome,
                rsa_pair,
            };
            let shard = &shards[shard_index(&key.key_id, operation)];
            let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
            let counter = map.entry(key).or_default();
            counter.value.fetch_add(row.count, Ordering::Relaxed);
            counter.flushed.fetch_add(row.count, Ordering::Relaxed);
        }
        Ok(Metering {
            kms,
            pricing: RwLock::new(Arc::new(pricing)),
            shards,
            durations,
            registry,
            tcp_refusals,
            state: Mutex::new(state),
            ledger: Mutex::new(ledger),
            tpm: Mutex::new(None),
            audit: Mutex::new(None),
        })
    }

    /// Lets the metrics report the health of this TPM.
    pub fn set_tpm(&self, tpm: TpmHandle) {
        *lock(&self.tpm) = Some(tpm);
    }

    /// The prices now in effect.
    pub fn pricing(&self) -> Arc<Pricing> {
        Arc::clone(&self.pricing.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the prices (a reload of `[pricing]`); later estimates use them.
    pub fn set_pricing(&self, pricing: Pricing) {
        *self.pricing.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pricing);
    }

    /// The audit trail whose health is exported.
    pub fn set_audit(&self, audit: Arc<dyn TrailHealth>) {
        *lock(&self.audit) = Some(audit);
    }

    /// (records written, write failures, healthy) of the audit trail, when there is one.
    fn audit_stats(&self) -> Option<(u64, u64, bool)> {
        lock(&self.audit).as_ref().map(|audit| {
            (
                audit.records_written(),
                audit.write_failures(),
                audit.is_healthy(),
            )
        })
    }

    fn tpm_stats(&self) -> Option<TpmStats> {
        lock(&self.tpm).as_ref().map(TpmHandle::stats)
    }

    /// Counts one finished request (the hot path; see the module doc).
    pub fn record(&self, event: &RequestEvent<'_>) {
        let operation = operation_label(event.call.operation.name);
        let outcome = Outcome::classify(
            event.error.map(|e| e.status),
            event.error.map(|e| e.exception),
        );
        let month = Month::containing(event.call.event_time_ms);
        let keys = event.call.keys();
        let key_id = keys.first().map(|k| k.key_id.as_str()).unwrap_or("");
        // AWS prices RSA data key pairs apart from ECC ones; the spec is a logged parameter.
        let rsa_pair = event.call.operation.price == cost::PriceClass::DataKeyPair
            && event.call.logged_parameters["keyPairSpec"]
                .as_str()
                .is_some_and(|spec| spec.starts_with("RSA_"));
        self.count(month, key_id, operation, outcome, rsa_pair);
        if let Some(histogram) = self.durations.get(operation) {
            histogram.observe(event.duration.as_secs_f64());
        }
    }

    fn count(
        &self,
        month: Month,
        key_id: &str,
        operation: &'static str,
        outcome: Outcome,
        rsa_pair: bool,
    ) {
        let mut key = CounterKey {
            month,
            key_id: key_id.to_string(),
            operation,
            outcome,
            rsa_pair,
        };
        if self.increment_existing(&key) {
            return;
        }
        // A new series. Key ids read from ciphertext headers are not checked by the
        // service: one that names no key of this kmsd is counted under "" so that forged
        // blobs cannot grow the label set.
        if !key.key_id.is_empty() && !self.kms.read_catalog().keys.contains_key(&key.key_id) {
            key.key_id.clear();
            if self.increment_existing(&key) {
                return;
            }
        }
        let shard = &self.shards[shard_index(&key.key_id, operation)];
        let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_default()
            .value
            .fetch_add(1, Ordering::Relaxed);
    }

    fn increment_existing(&self, key: &CounterKey) -> bool {
        let shard = &self.shards[shard_index(&key.key_id, key.operation)];
        let map = shard.read().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(counter) => {
                counter.value.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The in-memory counts of `month` (flushed or not).
    fn counts_of(&self, month: Month) -> Vec<CountRow> {
        let mut rows = Vec::new();
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            for (key, counter) in map.iter().filter(|(k, _)| k.month == month) {
                rows.push(CountRow {
                    month,
                    key_id: key.key_id.clone(),
                    operation: key.ledger_operation(),
                    outcome: key.outcome.as_str().to_string(),
                    count: counter.value.load(Ordering::Relaxed),
                });
            }
        }
        rows
    }

    /// Samples key states and commits everything counted since the last flush. Runs once a
    /// second and at shutdown; safe to call from several threads.
    pub fn flush(&self) -> Result<(), MeteringError> {
        let now = self.kms.clock().now_ms();
        let summaries = self.kms.key_summaries();
        let mut state = lock(&self.state);
        state.accrue(&self.pricing(), now, summaries);
        let mut deltas = Vec::new();
        let mut marks = Vec::new();
        for shard in &self.shards {
            let map = shard.read().unwrap_or_else(|p| p.into_inner());
            for (key, counter) in map.iter() {
                let value = counter.value.load(Ordering::Relaxed);
                let flushed = counter.flushed.load(Ordering::Relaxed);
                if value > flushed {
                    deltas.push(CountRow {
                        month: key.month,
                        key_id: key.key_id.clone(),
                        operation: key.ledger_operation(),
                        outcome: key.outcome.as_str().to_string(),
                        count: value - flushed,
                    });
                    marks.push((Arc::clone(counter), value));
                }
            }
        }
        let accruals: Vec<(Month, String, Accrual)> = state
            .dirty
            .iter()
            .filter_map(|id| state.accruals.get(id).map(|acc| (id.0, id.1.clone(), *acc)))
            .collect();
        lock(&self.ledger).commit(&deltas, &accruals, state.last_sample_ms)?;
        for (counter, value) in marks {
            counter.flushed.store(value, Ordering::Relaxed);
        }
        state.dirty.clear();
        let month = Month::containing(now);
        if state.pruned_for != Some(month) {
            // A new billing month: drop last month's series from memory (they are in the
            // ledger) and key time older than last month.
            state.pruned_for = Some(month);
            state.accruals.retain(|(m, _), _| *m >= month.previous());
            for shard in &self.shards {
                let mut map = shard.write().unwrap_or_else(|p| p.into_inner());
                map.retain(|key, counter| {
                    key.month >= month
                        || counter.value.load(Ordering::Relaxed)
                            != counter.flushed.load(Ordering::Relaxed)
                });
            }
        }
        Ok(())
    }

    /// Flushes once a second until `stop` turns true. Never touches the TPM: `kmsd_tpm_up`
    /// is kept by the TPM health monitor (`crate::tpm::health`), on its own thread.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let metering = Arc::clone(&self);
            let result = tokio::task::spawn_blocking(move || metering.flush()).await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "usage ledger flush failed"),
                Err(err) => tracing::error!(error = %err, "usage ledger flush task failed"),
            }
        }
    }

    /// Current billing month on the service clock.
    pub fn current_month(&self) -> Month {
        Month::containing(self.kms.clock().now_ms())
    }

    /// The usage report of a month for `caller` (the `KmsdGetUsage` operation). Only root
    /// and the daemon's own uid may read usage. Flushes first, so the report is the ledger.
    pub fn usage(
        &self,
        caller: &Caller,
        month: Option<&str>,
        key_id: Option<&str>,
    ) -> Result<UsageReport, MeteringError> {
        if !caller.is_root() && caller.uid != nix::unistd::geteuid().as_raw() {
            return Err(MeteringError::AccessDenied(format!(
                "{caller} is not authorized to perform kmsd:GetUsage (root or the daemon's user only)"
            )));
        }
        let month = match month {
            None => self.current_month(),
            Some(text) => Month::parse(text).ok_or_else(|| {
                MeteringError::Validation(format!(
                    "1 validation error detected: Month '{text}' must be YYYY-MM"
                ))
            })?,
        };
        self.flush()?;
        let (counts, accruals) = {
            let ledger = lock(&self.ledger);
            (ledger.counts(month)?, ledger.accruals(month)?)
        };
        let state = lock(&self.state);
        let pricing = self.pricing();
        let mut report = report::build(
            &pricing,
            month,
            self.kms.clock().now_ms(),
            state.last_sample_ms,
            &counts,
            &accruals,
            &self.rates(&state, &pricing),
        );
        if let Some(key_id) = key_id {
            report.keys.retain(|k| k.key_id == key_id);
        }
        Ok(report)
    }

    fn rates(&self, state: &State, pricing: &Pricing) -> HashMap<String, cost::KeyRate> {
        state
            .summaries
            .iter()
            .map(|k| {
                (
                    k.key_id.clone(),
                    cost::KeyRate {
                        billed: k.state != KeyState::PendingDeletion,
                        billed_rotations: pricing.billed_rotations(k.versions),
                        spec: crate::crypto::keyspec::KeySpec::parse(&k.key_spec),
                    },
                )
            })
            .collect()
    }

    /// The current month's report from memory (for scrapes).
    fn live_report(&self) -> UsageReport {
        let now = self.kms.clock().now_ms();
        let month = Month::containing(now);
        let counts = self.counts_of(month);
        let state = lock(&self.state);
        let accruals: Vec<(String, Accrual)> = state
            .accruals
            .iter()
            .filter(|((m, _), _)| *m == month)
            .map(|((_, k), a)| (k.clone(), *a))
            .collect();
        let pricing = self.pricing();
        report::build(
            &pricing,
            month,
            now,
            state.last_sample_ms,
            &counts,
            &accruals,
            &self.rates(&state, &pricing),
        )
    }
}

impl Observer for Metering {
    fn observe(&self, event: &RequestEvent<'_>) -> Observed {
        self.record(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn key(id: &str, state: KeyState, created: i64, versions: u32) -> KeySummary {
        KeySummary {
            key_id: id.into(),
            state,
            key_spec: "SYMMETRIC_DEFAULT".into(),
            created_ms: created,
            deletion_date_ms: None,
            versions,
            aliases: vec![],
        }
    }

    #[test]
    fn accrual_follows_key_states() {
        let p = Pricing::default();
        let june = Month::parse("2025-06").unwrap();
        let t0 = june.start_ms() + 24 * H;
        let mut s = State {
            last_sample_ms: Some(t0),
            ..State::default()
        };
        let get = |s: &State, m: Month, id: &str| s.accruals[&(m, id.to_string())];
        // a: enabled from t0, 3 versions (2 billed rotations); b: created 1 h after t0.
        s.accrue(
            &p,
            t0 + 10 * H,
            vec![
                key("a", KeyState::Enabled, t0 - H, 3),
                key("b", KeyState::Disabled, t0 + H, 6),
            ],
        );
        assert_eq!(get(&s, june, "a").billable_ms, 10 * H);
        assert_eq!(get(&s, june, "a").rotation_ms, 20 * H);
        assert_eq!(get(&s, june, "b").billable_ms, 9 * H);
        assert_eq!(get(&s, june, "b").rotation_ms, 18 * H);
        // a pending deletion for 5 h, then cancelled: the 5 h are billed after all.
        s.accrue(
            &p,
            t0 + 15 * H,
            vec![key("a", KeyState::PendingDeletion, t0 - H, 1)],
        );
        assert_eq!(get(&s, june, "a").billable_ms, 10 * H);
        assert_eq!(get(&s, june, "a").suspended_ms, 5 * H);
        s.accrue(
            &p,
            t0 + 16 * H,
            vec![key("a", KeyState::Enabled, t0 - H, 1)],
        );
        assert_eq!(get(&s, june, "a").billable_ms, 16 * H);
        assert_eq!(get(&s, june, "a").suspended_ms, 0);
        // pending deletion across the month end, then destroyed: nothing more billed.
        let end = june.end_ms();
        s.accrue(
            &p,
            end - 2 * H,
            vec![key("a", KeyState::Enabled, t0 - H, 1)],
        );
        let billed = get(&s, june, "a").billable_ms;
        s.accrue(
            &p,
            end + 3 * H,
            vec![key("a", KeyState::PendingDeletion, t0 - H, 1)],
        );
        assert_eq!(get(&s, june, "a").suspended_ms, 2 * H);
        assert_eq!(get(&s, june.next(), "a").suspended_ms, 3 * H);
        s.accrue(&p, end + 4 * H, vec![]);
        assert_eq!(get(&s, june, "a").billable_ms, billed);
        assert_eq!(get(&s, june, "a").suspended_ms, 0);
        assert_eq!(get(&s, june.next(), "a").suspended_ms, 0);
        assert_eq!(get(&s, june.next(), "a").billable_ms, 0);
        // the clock going back accrues nothing and restarts from there
        s.accrue(&p, end, vec![key("c", KeyState::Enabled, 0, 1)]);
        assert_eq!(s.last_sample_ms, Some(end));
        assert_eq!(get(&s, june.next(), "c").billable_ms, 0);
    }

    #[test]
    fn operation_labels_are_bounded() {
        assert_eq!(operation_label("Encrypt"), "Encrypt");
        assert_eq!(operation_label(USAGE_OPERATION), USAGE_OPERATION);
        assert_eq!(operation_label(""), UNKNOWN_OPERATION);
        assert_eq!(operation_label("Bogus'\"{}"), UNKNOWN_OPERATION);
    }
}
