//! Prometheus exposition: the metric families (documented in the README, "Prometheus metrics"), rendered
//! in the text format for `GET /metrics` on the Unix socket and on `metrics_listen` (whose
//! listener is `server::metrics`).

use super::{Metering, MeteringError};
use crate::keystore::KeyState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, TextEncoder};
use std::collections::BTreeSet;

const KEY_STATES: [KeyState; 4] = [
    KeyState::Enabled,
    KeyState::Disabled,
    KeyState::PendingDeletion,
    KeyState::PendingImport,
];

fn metrics_err(err: prometheus::Error) -> MeteringError {
    MeteringError::Metrics(err.to_string())
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, MeteringError> {
    GaugeVec::new(Opts::new(name, help), labels).map_err(metrics_err)
}

impl Metering {
    /// Every metric family, in the Prometheus text format.
    ///
    /// The families with a series per key are written as text directly: building them as
    /// `prometheus` metric vectors cost ~40 µs per key, too slow for 10,000 keys.
    pub fn render_metrics(&self) -> Result<Vec<u8>, MeteringError> {
        let report = self.live_report();
        // Key states now (the sampler's may be up to a second old).
        let summaries = self.kms.key_summaries();
        let mut families = self.registry.gather();
        families.extend(
            self.dynamic_families(&report, &summaries)?
                .into_iter()
                .filter(|family| !family.get_metric().is_empty()),
        );
        let encoder = TextEncoder::new();
        let mut chunks: Vec<(String, Vec<u8>)> = Vec::with_capacity(families.len() + 4);
        for family in &families {
            let mut text = Vec::new();
            encoder
                .encode(std::slice::from_ref(family), &mut text)
                .map_err(metrics_err)?;
            chunks.push((family.name().to_string(), text));
        }
        chunks.extend(
            per_key_families(&report, &summaries)
                .into_iter()
                .filter(|family| family.samples > 0)
                .map(|family| (family.name.to_string(), family.text.into_bytes())),
        );
        chunks.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = Vec::with_capacity(chunks.iter().map(|c| c.1.len()).sum());
        for (_, text) in chunks {
            out.extend_from_slice(&text);
        }
        Ok(out)
    }

    fn dynamic_families(
        &self,
        report: &super::report::UsageReport,
        summaries: &[crate::service::KeySummary],
    ) -> Result<Vec<MetricFamily>, MeteringError> {
        let mut families = Vec::new();

        let keys = IntGaugeVec::new(
            Opts::new("kmsd_keys", "Keys by state and key spec."),
            &["state", "key_spec"],
        )
        .map_err(metrics_err)?;
        let specs: BTreeSet<&str> = summaries
            .iter()
            .map(|k| k.key_spec.as_str())
            .chain(["SYMMETRIC_DEFAULT"])
            .collect();
        for state in KEY_STATES {
            for spec in &specs {
                keys.with_label_values(&[state.as_str(), spec]);
            }
        }
        let mut counts: std::collections::BTreeMap<(&str, &str), i64> = Default::default();
        for key in summaries {
            *counts
                .entry((key.state.as_str(), key.key_spec.as_str()))
                .or_default() += 1;
        }
        for ((state, spec), count) in counts {
            keys.with_label_values(&[state, spec]).set(count);
        }
        families.extend(keys.collect());

        let host_mtd = gauge_vec(
            "kmsd_host_cost_month_to_date_usd",
            "Estimated bill of this host this billing month in USD by component; free_tier_credit is negative, so the sum over components is the net bill.",
            &["component"],
        )?;
        let host_projected = gauge_vec(
            "kmsd_host_cost_projected_usd",
            "Projected bill of this host for the whole billing month in USD by component; the sum over components is the net bill.",
            &["component"],
        )?;
        for (gauge, cost) in [
            (&host_mtd, &report.totals.month_to_date),
            (&host_projected, &report.totals.projected),
        ] {
            for (component, value) in [
                ("storage", cost.storage),
                ("rotation", cost.rotation),
                ("requests", cost.requests_gross),
                ("free_tier_credit", -cost.free_tier_credit),
            ] {
                gauge.with_label_values(&[component]).set(value);
            }
        }
        families.extend(host_mtd.collect());
        families.extend(host_projected.collect());

        let billable = prometheus::IntGauge::new(
            "kmsd_billable_requests_month_to_date",
            "Billable requests of this host this billing month (before the free tier).",
        )
        .map_err(metrics_err)?;
        billable.set(report.totals.requests.billable as i64);
        families.extend(billable.collect());

        let by_class = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "kmsd_requests_by_price_class_month_to_date",
                "Requests of this host this billing month by AWS price class (symmetric, asymmetric, asymmetric_rsa_2048, data_key_pair, data_key_pair_rsa, unpriced), whatever their outcome.",
            ),
            &["class"],
        )
        .map_err(metrics_err)?;
        for class in [
            crate::api::operations::PriceClass::Symmetric,
            crate::api::operations::PriceClass::Asymmetric,
            crate::api::operations::PriceClass::AsymmetricRsa2048,
            crate::api::operations::PriceClass::DataKeyPair,
            crate::api::operations::PriceClass::DataKeyPairRsa,
            crate::api::operations::PriceClass::Unpriced,
        ] {
            let count = report
                .totals
                .requests
                .by_class
                .get(class.as_str())
                .copied()
                .unwrap_or(0);
            by_class
                .with_label_values(&[class.as_str()])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        families.extend(by_class.collect());

        if let Some(stats) = self.tpm_stats() {
            let up = prometheus::IntGauge::new(
                "kmsd_tpm_up",
                "1 if the TPM answered the last command or ping (pinged every 15 s), else 0.",
            )
            .map_err(metrics_err)?;
            up.set(i64::from(stats.up));
            families.extend(up.collect());
            let commands = prometheus::IntCounter::new(
                "kmsd_tpm_commands_total",
                "Commands sent to the TPM thread since kmsd started.",
            )
            .map_err(metrics_err)?;
            commands.inc_by(stats.commands_total);
            families.extend(commands.collect());
            let errors = prometheus::IntCounter::new(
                "kmsd_tpm_errors_total",
                "TPM commands that failed since kmsd started.",
            )
            .map_err(metrics_err)?;
            errors.inc_by(stats.errors_total);
            families.extend(errors.collect());
            if let Some(last) = stats.last_unseal_unix {
                let unseal = prometheus::Gauge::new(
                    "kmsd_tpm_last_unseal_timestamp_seconds",
                    "Unix time of the last successful unseal of the root key.",
                )
                .map_err(metrics_err)?;
                unseal.set(last as f64);
                families.extend(unseal.collect());
            }
        }

        if let Some((written, failures, healthy)) = self.audit_stats() {
            let records = prometheus::IntCounter::new(
                "kmsd_audit_records_total",
                "Audit records written since kmsd started.",
            )
            .map_err(metrics_err)?;
            records.inc_by(written);
            families.extend(records.collect());
            let failed = prometheus::IntCounter::new(
                "kmsd_audit_write_failures_total",
                "Audit writes that failed since kmsd started (requests were refused: fail closed).",
            )
            .map_err(metrics_err)?;
            failed.inc_by(failures);
            families.extend(failed.collect());
            let up = prometheus::IntGauge::new(
                "kmsd_audit_healthy",
                "1 while the audit trail accepts records, 0 while requests are refused.",
            )
            .map_err(metrics_err)?;
            up.set(i64::from(healthy));
            families.extend(up.collect());
        }

        let recovery = self.kms.recovery_status_now();
        let configured = prometheus::IntGauge::new(
            "kmsd_recovery_escrow_configured",
            "1 if the state dir has a recovery escrow this kmsd's root key authenticates (kmsctl recovery init), else 0.",
        )
        .map_err(metrics_err)?;
        configured.set(i64::from(recovery.configured));
        families.extend(configured.collect());
        if let Some(verified) = recovery.last_verified_date {
            let last = prometheus::Gauge::new(
                "kmsd_recovery_escrow_last_verified_timestamp_seconds",
                "Unix time of the last successful rehearsal of the recovery escrow (kmsctl recovery verify).",
            )
            .map_err(metrics_err)?;
            last.set(verified);
            families.extend(last.collect());
        }

        let build = IntGaugeVec::new(
            Opts::new(
                "kmsd_build_info",
                "Always 1; the labels name the kmsd build.",
            ),
            &["version"],
        )
        .map_err(metrics_err)?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        families.extend(build.collect());
        Ok(families)
    }
}

/// The `GET /metrics` answer (200 with the text format, or 500 naming the failure).
/// One metric family written straight in the text format.
struct TextFamily {
    name: &'static str,
    text: String,
    samples: usize,
}

impl TextFamily {
    fn new(name: &'static str, help: &str, kind: &str, capacity: usize) -> Self {
        let mut text = String::with_capacity(capacity);
        text.push_str("# HELP ");
        text.push_str(name);
        text.push(' ');
        text.push_str(help);
        text.push_str("\n# TYPE ");
        text.push_str(name);
        text.push(' ');
        text.push_str(kind);
        text.push('\n');
        TextFamily {
            name,
            text,
            samples: 0,
        }
    }

    /// One sample; `labels` in the order to print (sorted by name, as the prometheus
    /// crate prints them).
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        use std::fmt::Write as _;
        self.text.push_str(self.name);
        for (i, (name, value)) in labels.iter().enumerate() {
            self.text.push(if i == 0 { '{' } else { ',' });
            self.text.push_str(name);
            self.text.push_str("=\"");
            push_escaped(&mut self.text, value);
            self.text.push('"');
        }
        if !labels.is_empty() {
            self.text.push('}');
        }
        // f64 Display, as the prometheus text encoder writes values.
        let _ = writeln!(self.text, " {value}");
        self.samples += 1;
    }
}

/// A label value escaped for the text format (backslash, double quote, newline).
fn push_escaped(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The families with one or more series per key.
fn per_key_families(
    report: &super::report::UsageReport,
    summaries: &[crate::service::KeySummary],
) -> [TextFamily; 4] {
    let mut requests = TextFamily::new(
        "kmsd_requests_total",
        "Requests this billing month (UTC), by key, operation and outcome; resets when a month starts.",
        "counter",
        report.keys.len() * 128,
    );
    for key in &report.keys {
        for (operation, outcomes) in &key.requests.by_operation {
            for (outcome, count) in outcomes {
                requests.sample(
                    &[
                        ("key_id", &key.key_id),
                        ("operation", operation),
                        ("outcome", outcome),
                    ],
                    *count as f64,
                );
            }
        }
    }
    let mut info = TextFamily::new(
        "kmsd_key_info",
        "Always 1: one series per existing key, to join key ids with their first alias, spec and state.",
        "gauge",
        summaries.len() * 128,
    );
    for key in summaries {
        let alias = key.aliases.iter().min().map(String::as_str).unwrap_or("");
        info.sample(
            &[
                ("alias", alias),
                ("key_id", &key.key_id),
                ("key_spec", &key.key_spec),
                ("state", key.state.as_str()),
            ],
            1.0,
        );
    }
    let mut mtd = TextFamily::new(
        "kmsd_cost_month_to_date_usd",
        "Estimated gross cost of a key this billing month in USD, by component (storage, rotation, requests).",
        "gauge",
        report.keys.len() * 240,
    );
    let mut projected = TextFamily::new(
        "kmsd_cost_projected_usd",
        "Projected gross cost of a key for the whole billing month in USD, by component.",
        "gauge",
        report.keys.len() * 240,
    );
    for key in &report.keys {
        for (family, cost) in [
            (&mut mtd, &key.month_to_date),
            (&mut projected, &key.projected),
        ] {
            for (component, value) in [
                ("storage", cost.storage),
                ("rotation", cost.rotation),
                ("requests", cost.requests),
            ] {
                family.sample(&[("component", component), ("key_id", &key.key_id)], value);
            }
        }
    }
    [requests, info, mtd, projected]
}

/// The HTTP reply of `GET /metrics`: the Prometheus text format, or 500 if encoding fails.
pub fn metrics_response(metering: &Metering) -> Response<Full<Bytes>> {
    match metering.render_metrics() {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            );
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot render metrics");
            let mut response = Response::new(Full::new(Bytes::from(format!("{err}\n"))));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}
