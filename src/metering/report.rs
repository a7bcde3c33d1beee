//! Usage reports: one month's requests, key time and cost per key plus host totals, as
//! returned by the `KmsdGetUsage` operation, printed by `kmsctl usage`, and exported as
//! Prometheus gauges.

use super::cost::{self, HostCost, KeyCost, KeyRate, KeyUsage, Outcome, Pricing};
use super::ledger::{Accrual, CountRow};
use super::month::Month;
use crate::clock::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

const HOUR_MS: f64 = 3_600_000.0;

/// Request counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestCounts {
    /// All requests, priced or not, whatever their outcome.
    pub total: u64,
    /// Successful priced requests (what the request charge is computed from).
    pub billable: u64,
    /// Of those, requests with asymmetric keys (their own price, no free tier).
    #[serde(default)]
    pub billable_asymmetric: u64,
    /// Of those, GenerateDataKeyPair* requests (their own price, no free tier).
    #[serde(default)]
    pub billable_data_key_pair: u64,
    /// Of those, requests with RSA_2048 keys (their own price, no free tier).
    #[serde(default)]
    pub billable_rsa_2048: u64,
    /// Of those, GenerateDataKeyPair* requests of RSA pairs (their own price, no free tier).
    #[serde(default)]
    pub billable_rsa_data_key_pair: u64,
    /// By outcome: success, client_error, denied, server_error.
    pub by_outcome: BTreeMap<String, u64>,
    /// By price class: symmetric, asymmetric, asymmetric_rsa_2048, data_key_pair,
    /// data_key_pair_rsa, unpriced.
    pub by_class: BTreeMap<String, u64>,
    /// By operation, then outcome.
    pub by_operation: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RequestCounts {
    fn add(&mut self, operation: &str, outcome: &str, count: u64, class: cost::PriceClass) {
        let (operation, _) = cost::split_rsa_pair(operation);
        self.total += count;
        if Outcome::parse(outcome).is_some_and(|o| cost::is_billable(class, o)) {
            self.billable += count;
            match class {
                cost::PriceClass::Asymmetric => self.billable_asymmetric += count,
                cost::PriceClass::DataKeyPair => self.billable_data_key_pair += count,
                cost::PriceClass::AsymmetricRsa2048 => self.billable_rsa_2048 += count,
                cost::PriceClass::DataKeyPairRsa => self.billable_rsa_data_key_pair += count,
                _ => {}
            }
        }
        *self.by_outcome.entry(outcome.to_string()).or_default() += count;
        *self.by_class.entry(class.as_str().to_string()).or_default() += count;
        *self
            .by_operation
            .entry(operation.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += count;
    }

    /// Requests with this outcome.
    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.by_outcome.get(outcome.as_str()).copied().unwrap_or(0)
    }
}

/// One key's month. The key id "" collects requests that named no key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyReport {
    /// The key id ("" for requests that named no key).
    pub key_id: String,
    /// The key's requests this month.
    pub requests: RequestCounts,
    /// Hours Enabled or Disabled (billed).
    pub key_hours: f64,
    /// Sum over time of billed rotations (0 to 2) × hours.
    pub rotation_hours: f64,
    /// Hours pending deletion not (yet) billed.
    pub pending_deletion_hours: f64,
    /// Gross month-to-date cost in USD.
    pub month_to_date: KeyCost,
    /// Projected end-of-month cost in USD.
    pub projected: KeyCost,
}

/// Host totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Totals {
    /// Requests of every key.
    pub requests: RequestCounts,
    /// Billed key-hours of every key.
    pub key_hours: f64,
    /// Month-to-date cost of the host.
    pub month_to_date: HostCost,
    /// Projected end-of-month cost of the host.
    pub projected: HostCost,
}

/// A month's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsageReport {
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// When the report was made (epoch seconds, service clock).
    pub generated_at: f64,
    /// Time of the last key-state sample (epoch seconds).
    pub sampled_at: Option<f64>,
    /// Whether the month is over.
    pub month_complete: bool,
    /// One report per key (and one for requests that named no key).
    pub keys: Vec<KeyReport>,
    /// Sums over the keys, with the free tier applied.
    pub totals: Totals,
    /// The prices the costs were computed with.
    pub pricing: Pricing,
}

/// Builds the report of `month` from ledger rows; `rates` are the keys' current billing
/// rates (for projections; absent keys are no longer billed).
pub fn build(
    pricing: &Pricing,
    month: Month,
    now: UnixMillis,
    sampled_at: Option<UnixMillis>,
    counts: &[CountRow],
    accruals: &[(String, Accrual)],
    rates: &HashMap<String, KeyRate>,
) -> UsageReport {
    let mut keys: BTreeMap<String, KeyReport> = BTreeMap::new();
    let mut accrued: HashMap<&str, Accrual> = HashMap::new();
    for (key_id, accrual) in accruals {
        accrued.insert(key_id, *accrual);
        keys.entry(key_id.clone()).or_default();
    }
    let mut totals = Totals::default();
    for row in counts.iter().filter(|r| r.month == month) {
        let spec = rates.get(&row.key_id).and_then(|rate| rate.spec);
        let class = cost::request_class(&row.operation, spec);
        totals
            .requests
            .add(&row.operation, &row.outcome, row.count, class);
        keys.entry(row.key_id.clone()).or_default().requests.add(
            &row.operation,
            &row.outcome,
            row.count,
            class,
        );
    }
    let factor = cost::request_projection_factor(month, now);
    let mut mtd_costs = Vec::new();
    let mut projected_costs = Vec::new();
    for (key_id, report) in &mut keys {
        report.key_id = key_id.clone();
        let accrual = accrued.get(key_id.as_str()).copied().unwrap_or_default();
        let usage = KeyUsage {
            billable_ms: accrual.billable_ms,
            rotation_ms: accrual.rotation_ms,
            billable_requests: report.requests.billable,
            billable_asymmetric_requests: report.requests.billable_asymmetric,
            billable_data_key_pair_requests: report.requests.billable_data_key_pair,
            billable_rsa_2048_requests: report.requests.billable_rsa_2048,
            billable_rsa_data_key_pair_requests: report.requests.billable_rsa_data_key_pair,
        };
        report.key_hours = accrual.billable_ms as f64 / HOUR_MS;
        report.rotation_hours = accrual.rotation_ms as f64 / HOUR_MS;
        report.pending_deletion_hours = accrual.suspended_ms as f64 / HOUR_MS;
        report.month_to_date = cost::key_cost(pricing, month, &usage);
        let rate = if now < month.end_ms() {
            rates.get(key_id).copied().unwrap_or_default()
        } else {
            KeyRate::default()
        };
        report.projected = cost::projected_key_cost(pricing, month, now, &usage, rate);
        totals.key_hours += report.key_hours;
        mtd_costs.push(report.month_to_date);
        projected_costs.push(report.projected);
    }
    let asymmetric = totals.requests.billable_asymmetric as f64;
    let data_key_pair = totals.requests.billable_data_key_pair as f64;
    let rsa_2048 = totals.requests.billable_rsa_2048 as f64;
    let rsa_data_key_pair = totals.requests.billable_rsa_data_key_pair as f64;
    let requests = cost::HostRequests {
        symmetric: totals.requests.billable as f64
            - asymmetric
            - data_key_pair
            - rsa_2048
            - rsa_data_key_pair,
        asymmetric,
        data_key_pair,
        rsa_2048,
        rsa_data_key_pair,
    };
    totals.month_to_date = cost::host_cost(pricing, &mtd_costs, requests);
    totals.projected = cost::host_cost(
        pricing,
        &projected_costs,
        cost::HostRequests {
            symmetric: requests.symmetric * factor,
            asymmetric: asymmetric * factor,
            data_key_pair: data_key_pair * factor,
            rsa_2048: rsa_2048 * factor,
            rsa_data_key_pair: rsa_data_key_pair * factor,
        },
    );
    UsageReport {
        month: month.to_string(),
        generated_at: now as f64 / 1000.0,
        sampled_at: sampled_at.map(|ms| ms as f64 / 1000.0),
        month_complete: now >= month.end_ms(),
        keys: keys.into_values().collect(),
        totals,
        pricing: pricing.clone(),
    }
}

/// The report as a text table (for `kmsctl usage`).
pub fn render_table(report: &UsageReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Usage for {} (UTC){}; prices as of {}, USD",
        report.month,
        if report.month_complete {
            ""
        } else {
            ", month to date"
        },
        report.pricing.prices_as_of
    );
    let _ = writeln!(
        out,
        "{:<36}  {:>9}  {:>9}  {:>7}  {:>7}  {:>9}  {:>9}  {:>10}  {:>10}",
        "KEY ID",
        "REQUESTS",
        "BILLABLE",
        "DENIED",
        "ERRORS",
        "KEY-HOURS",
        "STORAGE",
        "REQ COST",
        "PROJECTED"
    );
    for key in &report.keys {
        let errors =
            key.requests.outcome(Outcome::ClientError) + key.requests.outcome(Outcome::ServerError);
        let _ = writeln!(
            out,
            "{:<36}  {:>9}  {:>9}  {:>7}  {:>7}  {:>9.2}  {:>9.4}  {:>10.6}  {:>10.4}",
            if key.key_id.is_empty() {
                "(no key)"
            } else {
                key.key_id.as_str()
            },
            key.requests.total,
            key.requests.billable,
            key.requests.outcome(Outcome::Denied),
            errors,
            key.key_hours,
            key.month_to_date.storage + key.month_to_date.rotation,
            key.month_to_date.requests,
            key.projected.total,
        );
    }
    let t = &report.totals;
    let _ = writeln!(
        out,
        "\nTotal requests {} (billable {}), key-hours {:.2}",
        t.requests.total, t.requests.billable, t.key_hours
    );
    let classes: Vec<String> = t
        .requests
        .by_class
        .iter()
        .map(|(class, count)| format!("{class} {count}"))
        .collect();
    if !classes.is_empty() {
        let _ = writeln!(out, "By price class: {}", classes.join(", "));
    }
    for (label, cost) in [
        ("Month to date", &t.month_to_date),
        ("Projected", &t.projected),
    ] {
        let _ = writeln!(
            out,
            "{label:<14} storage {:.4} + rotation {:.4} + requests {:.6} - free tier {:.6} = {:.4} USD",
            cost.storage, cost.rotation, cost.requests_gross, cost.free_tier_credit, cost.net
        );
    }
    out
}

/// The report as pretty JSON (for `kmsctl usage --output json`).
pub fn to_json(report: &UsageReport) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sums_keys_and_applies_the_free_tier_once() {
        let p = Pricing::default();
        let june = Month::parse("2025-06").unwrap();
        let now = june.start_ms() + 360 * 3_600_000; // half the month
        let row = |key: &str, op: &str, outcome: &str, count| CountRow {
            month: june,
            key_id: key.into(),
            operation: op.into(),
            outcome: outcome.into(),
            count,
        };
        let counts = [
            row("a", "Encrypt", "success", 15_000),
            row("a", "Encrypt", "denied", 7),
            row("b", "Decrypt", "success", 10_000),
            row("", "ListKeys", "success", 5_000),
            row("", "KmsdGetUsage", "success", 3),
        ];
        let accruals = [(
            "a".to_string(),
            Accrual {
                billable_ms: 360 * 3_600_000,
                ..Accrual::default()
            },
        )];
        let rates = HashMap::from([(
            "a".to_string(),
            KeyRate {
                billed: true,
                billed_rotations: 0,
                spec: None,
            },
        )]);
        let r = build(&p, june, now, Some(now), &counts, &accruals, &rates);
        assert_eq!(r.keys.len(), 3);
        assert_eq!(r.totals.requests.total, 30_010);
        assert_eq!(r.totals.requests.billable, 30_000);
        assert_eq!(r.keys[1].key_id, "a");
        assert_eq!(r.keys[1].requests.outcome(Outcome::Denied), 7);
        assert!((r.keys[1].month_to_date.storage - 0.5).abs() < 1e-9);
        assert!((r.keys[1].projected.storage - 1.0).abs() < 1e-9);
        assert!((r.keys[1].month_to_date.requests - 0.045).abs() < 1e-9);
        assert!((r.totals.month_to_date.free_tier_credit - 0.06).abs() < 1e-9);
        assert!((r.totals.month_to_date.net - (0.5 + 0.09 - 0.06)).abs() < 1e-9);
        // projection: 60,000 requests, 1 key-month
        assert!((r.totals.projected.net - (1.0 + 0.18 - 0.06)).abs() < 1e-9);
        let table = render_table(&r);
        assert!(
            table.contains("(no key)") && table.contains("2025-06"),
            "{table}"
        );
    }
}
