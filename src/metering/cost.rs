//! The cost model: KMS-style list prices (`[pricing]` in the config), which requests are
//! billed in which price class, and the month-to-date and projected cost of a key and of
//! the host. Pure functions, table-tested below.

use super::month::Month;
use crate::clock::UnixMillis;
use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;

/// The `[pricing]` table lives in the config; the cost model below reads it.
pub use crate::config::Pricing;

/// The cost-model side of the prices.
impl Pricing {
    fn per_request_usd(&self) -> f64 {
        self.symmetric_usd_per_10k_requests / 10_000.0
    }

    fn per_asymmetric_request_usd(&self) -> f64 {
        self.asymmetric_usd_per_10k_requests / 10_000.0
    }

    fn per_rsa_2048_request_usd(&self) -> f64 {
        self.rsa_2048_usd_per_10k_requests / 10_000.0
    }

    fn per_data_key_pair_request_usd(&self) -> f64 {
        self.data_key_pair_usd_per_10k_requests / 10_000.0
    }

    fn per_rsa_data_key_pair_request_usd(&self) -> f64 {
        self.rsa_data_key_pair_usd_per_10k_requests / 10_000.0
    }

    /// Extra material versions that are billed, for a key with `versions` versions.
    pub fn billed_rotations(&self, versions: u32) -> u32 {
        versions.saturating_sub(1).min(self.max_billed_rotations)
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Succeeded (2xx).
    Success,
    /// Rejected because of the request (4xx other than AccessDenied).
    ClientError,
    /// AccessDeniedException.
    Denied,
    /// 5xx.
    ServerError,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::Denied,
        Outcome::ServerError,
    ];

    /// The label used in the ledger and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::Denied => "denied",
            Outcome::ServerError => "server_error",
        }
    }

    /// Reads a label written by [`Outcome::as_str`].
    pub fn parse(text: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// Classifies a finished request from its HTTP status and exception name.
    pub fn classify(status: Option<u16>, exception: Option<&str>) -> Outcome {
        match (status, exception) {
            (None, _) => Outcome::Success,
            (Some(status), _) if status >= 500 => Outcome::ServerError,
            (_, Some("AccessDeniedException")) => Outcome::Denied,
            _ => Outcome::ClientError,
        }
    }
}

pub use crate::api::operations::PriceClass;

/// The price class of an operation, from the operation table (unknown names are unpriced).
pub fn price_class(operation: &str) -> PriceClass {
    crate::api::operations::find(operation).map_or(PriceClass::Unpriced, |op| op.price)
}

/// How the usage ledger marks a GenerateDataKeyPair* request of an RSA pair: the operation
/// name with this suffix (`GenerateDataKeyPair+RSA`); reports and metrics show the name alone.
pub const RSA_PAIR_SUFFIX: &str = "+RSA";

/// An operation as the ledger stores it, split into the operation and whether it was an RSA
/// data key pair.
pub fn split_rsa_pair(operation: &str) -> (&str, bool) {
    match operation.strip_suffix(RSA_PAIR_SUFFIX) {
        Some(base) => (base, true),
        None => (operation, false),
    }
}

/// The price class of a request of `operation` counted on a key of `spec`: the operation
/// table's class, refined as AWS prices asymmetric keys — requests with RSA_2048 keys at the
/// RSA_2048 rate, and Encrypt, Decrypt and ReEncrypt with RSA keys as asymmetric requests.
/// `spec` is None for requests that named no key or a key that no longer exists (then the
/// table's class stands).
pub fn request_class(operation: &str, spec: Option<crate::crypto::keyspec::KeySpec>) -> PriceClass {
    use crate::crypto::keyspec::KeySpec;
    let (operation, rsa_pair) = split_rsa_pair(operation);
    let class = price_class(operation);
    if class == PriceClass::DataKeyPair && rsa_pair {
        return PriceClass::DataKeyPairRsa;
    }
    let rsa = matches!(
        spec,
        Some(KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096)
    );
    let encryption = matches!(operation, "Encrypt" | "Decrypt" | "ReEncrypt");
    match (class, spec) {
        (PriceClass::Asymmetric, Some(KeySpec::Rsa2048)) => PriceClass::AsymmetricRsa2048,
        (PriceClass::Symmetric, Some(KeySpec::Rsa2048)) if encryption => {
            PriceClass::AsymmetricRsa2048
        }
        (PriceClass::Symmetric, _) if encryption && rsa => PriceClass::Asymmetric,
        (class, _) => class,
    }
}

/// Whether a request with this class and outcome is billed: successful priced requests only.
pub fn is_billable(class: PriceClass, outcome: Outcome) -> bool {
    class != PriceClass::Unpriced && outcome == Outcome::Success
}

/// What one key used in one month (the ledger's view).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeyUsage {
    /// Milliseconds the key existed and was not pending deletion (Enabled or Disabled).
    pub billable_ms: i64,
    /// Sum over time of billed rotations (0 to max) × milliseconds.
    pub rotation_ms: i64,
    /// Billable (successful, priced) requests, asymmetric ones included.
    pub billable_requests: u64,
    /// Of those, requests with asymmetric keys (their own price, no free tier).
    pub billable_asymmetric_requests: u64,
    /// Of those, GenerateDataKeyPair* requests (their own price, no free tier).
    pub billable_data_key_pair_requests: u64,
    /// Of those, requests with RSA_2048 keys (their own price, no free tier).
    pub billable_rsa_2048_requests: u64,
    /// Of those, GenerateDataKeyPair* requests of RSA pairs (their own price, no free tier).
    pub billable_rsa_data_key_pair_requests: u64,
}

/// How a key is billed from now on (for projections).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyRate {
    /// Enabled or Disabled now (a key pending deletion or destroyed is not billed).
    pub billed: bool,
    /// Rotations billed now (0 to max).
    pub billed_rotations: u32,
    /// The key's spec (it refines the price class of its requests, [`request_class`]).
    pub spec: Option<crate::crypto::keyspec::KeySpec>,
}

/// A cost split by component, in USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyCost {
    /// Key storage (pro rata of the key-hours).
    pub storage: f64,
    /// Storage of rotated material versions.
    pub rotation: f64,
    /// Priced requests.
    pub requests: f64,
    /// Sum of the components.
    pub total: f64,
}

impl KeyCost {
    fn new(storage: f64, rotation: f64, requests: f64) -> KeyCost {
        KeyCost {
            storage,
            rotation,
            requests,
            total: storage + rotation + requests,
        }
    }
}

/// Month-to-date cost of a key (gross: the free tier applies to the host only).
pub fn key_cost(pricing: &Pricing, month: Month, usage: &KeyUsage) -> KeyCost {
    let month_ms = month.len_ms() as f64;
    KeyCost::new(
        usage.billable_ms as f64 / month_ms * pricing.key_month_usd,
        usage.rotation_ms as f64 / month_ms * pricing.rotation_month_usd,
        usage
            .billable_requests
            .saturating_sub(usage.billable_asymmetric_requests)
            .saturating_sub(usage.billable_data_key_pair_requests)
            .saturating_sub(usage.billable_rsa_2048_requests)
            .saturating_sub(usage.billable_rsa_data_key_pair_requests) as f64
            * pricing.per_request_usd()
            + usage.billable_rsa_2048_requests as f64 * pricing.per_rsa_2048_request_usd()
            + usage.billable_rsa_data_key_pair_requests as f64
                * pricing.per_rsa_data_key_pair_request_usd()
            + usage.billable_asymmetric_requests as f64 * pricing.per_asymmetric_request_usd()
            + usage.billable_data_key_pair_requests as f64
                * pricing.per_data_key_pair_request_usd(),
    )
}

/// The factor by which the month's requests so far are scaled to a whole month: month
/// length / elapsed time (elapsed counted as at least one hour, so the first minutes of a
/// month do not explode the projection); 1 once the month is over.
pub fn request_projection_factor(month: Month, now: UnixMillis) -> f64 {
    if now >= month.end_ms() {
        return 1.0;
    }
    let elapsed = (now - month.start_ms()).max(HOUR_MS);
    month.len_ms() as f64 / elapsed as f64
}

/// Projected end-of-month cost of a key: what it used so far, plus the rest of the month at
/// its current rate (`rate`), plus requests at the month's rate so far.
pub fn projected_key_cost(
    pricing: &Pricing,
    month: Month,
    now: UnixMillis,
    usage: &KeyUsage,
    rate: KeyRate,
) -> KeyCost {
    let remaining = (month.end_ms() - now.max(month.start_ms())).max(0);
    let mut projected = *usage;
    if rate.billed {
        projected.billable_ms += remaining;
        projected.rotation_ms += remaining * i64::from(rate.billed_rotations);
    }
    let mut cost = key_cost(pricing, month, &projected);
    cost.requests *= request_projection_factor(month, now);
    cost.total = cost.storage + cost.rotation + cost.requests;
    cost
}

/// The host's bill: gross components, the free-tier credit, and the net.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostCost {
    /// Key storage of every key.
    pub storage: f64,
    /// Storage of rotated material versions of every key.
    pub rotation: f64,
    /// Requests before the free tier.
    pub requests_gross: f64,
    /// Value of the free requests (≤ requests_gross), as a positive number.
    pub free_tier_credit: f64,
    /// What the host would pay: the gross components minus the free-tier credit.
    pub net: f64,
}

/// The host's billable requests by price, for [`host_cost`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostRequests {
    /// Symmetric and management requests (the free tier applies to these).
    pub symmetric: f64,
    /// Requests with asymmetric keys.
    pub asymmetric: f64,
    /// GenerateDataKeyPair* requests.
    pub data_key_pair: f64,
    /// Requests with RSA_2048 keys.
    pub rsa_2048: f64,
    /// GenerateDataKeyPair* requests of RSA pairs.
    pub rsa_data_key_pair: f64,
}

/// Sums per-key costs and applies the free tier to the host's billable symmetric requests
/// (asymmetric and data-key-pair requests are never free).
pub fn host_cost(pricing: &Pricing, keys: &[KeyCost], requests: HostRequests) -> HostCost {
    let symmetric_requests = requests.symmetric;
    let storage: f64 = keys.iter().map(|k| k.storage).sum();
    let rotation: f64 = keys.iter().map(|k| k.rotation).sum();
    let requests_gross = symmetric_requests * pricing.per_request_usd()
        + requests.asymmetric * pricing.per_asymmetric_request_usd()
        + requests.data_key_pair * pricing.per_data_key_pair_request_usd()
        + requests.rsa_2048 * pricing.per_rsa_2048_request_usd()
        + requests.rsa_data_key_pair * pricing.per_rsa_data_key_pair_request_usd();
    let free_tier_credit =
        symmetric_requests.min(pricing.free_tier_requests as f64) * pricing.per_request_usd();
    HostCost {
        storage,
        rotation,
        requests_gross,
        free_tier_credit,
        net: storage + rotation + requests_gross - free_tier_credit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn outcomes_are_classified() {
        let cases = [
            (None, None, Outcome::Success),
            (Some(400), Some("ValidationException"), Outcome::ClientError),
            (Some(400), Some("AccessDeniedException"), Outcome::Denied),
            (
                Some(500),
                Some("KMSInternalException"),
                Outcome::ServerError,
            ),
            (
                Some(405),
                Some("UnknownOperationException"),
                Outcome::ClientError,
            ),
            (
                Some(413),
                Some("RequestEntityTooLargeException"),
                Outcome::ClientError,
            ),
        ];
        for (status, exception, want) in cases {
            assert_eq!(Outcome::classify(status, exception), want, "{exception:?}");
            assert_eq!(Outcome::parse(want.as_str()), Some(want));
        }
    }

    #[test]
    fn price_classes() {
        for op in [
            "Encrypt",
            "CreateKey",
            "DescribeKey",
            "ListKeys",
            "GenerateRandom",
        ] {
            assert_eq!(price_class(op), PriceClass::Symmetric, "{op}");
        }
        for op in ["KmsdGetUsage", "", "unknown"] {
            assert_eq!(price_class(op), PriceClass::Unpriced, "{op}");
        }
        assert!(is_billable(PriceClass::Symmetric, Outcome::Success));
        assert!(!is_billable(PriceClass::Symmetric, Outcome::Denied));
        assert!(!is_billable(PriceClass::Unpriced, Outcome::Success));
    }

    #[test]
    fn key_costs_follow_the_formula() {
        let p = Pricing::default();
        let june = Month::parse("2025-06").unwrap(); // 30 days = 720 h
        let feb = Month::parse("2025-02").unwrap(); // 28 days = 672 h
        let h = HOUR_MS;
        // (month, billable hours, rotation-hours, requests, storage, rotation, requests $)
        let cases = [
            // a whole month is exactly the monthly price
            (june, 720, 0, 0, 1.0, 0.0, 0.0),
            // hourly proration
            (june, 36, 0, 0, 36.0 / 720.0, 0.0, 0.0),
            (feb, 36, 0, 0, 36.0 / 672.0, 0.0, 0.0),
            // two billed rotations for the whole month: +$2
            (june, 720, 2 * 720, 0, 1.0, 2.0, 0.0),
            // requests: $0.03 per 10,000 (gross per key)
            (june, 0, 0, 10_000, 0.0, 0.0, 0.03),
            (june, 0, 0, 1, 0.0, 0.0, 0.000003),
        ];
        for (month, hours, rot_hours, requests, storage, rotation, req) in cases {
            let cost = key_cost(
                &p,
                month,
                &KeyUsage {
                    billable_ms: hours * h,
                    rotation_ms: rot_hours * h,
                    billable_requests: requests,
                    billable_asymmetric_requests: 0,
                    billable_data_key_pair_requests: 0,
                    billable_rsa_2048_requests: 0,
                    billable_rsa_data_key_pair_requests: 0,
                },
            );
            assert!(close(cost.storage, storage), "{month} {hours}: {cost:?}");
            assert!(close(cost.rotation, rotation), "{cost:?}");
            assert!(close(cost.requests, req), "{cost:?}");
            assert!(close(cost.total, storage + rotation + req), "{cost:?}");
        }
    }

    #[test]
    fn rotation_charge_is_capped_at_the_second_rotation() {
        let p = Pricing::default();
        let cases = [(1, 0), (2, 1), (3, 2), (4, 2), (26, 2)];
        for (versions, billed) in cases {
            assert_eq!(p.billed_rotations(versions), billed, "{versions}");
        }
        let p = Pricing {
            max_billed_rotations: 0,
            ..Pricing::default()
        };
        assert_eq!(p.billed_rotations(5), 0);
    }

    #[test]
    fn projections() {
        let p = Pricing::default();
        let june = Month::parse("2025-06").unwrap();
        let h = HOUR_MS;
        let day10 = june.start_ms() + 240 * h; // a third of the month
        let usage = KeyUsage {
            billable_ms: 240 * h,
            rotation_ms: 0,
            billable_requests: 30_000,
            billable_asymmetric_requests: 0,
            billable_data_key_pair_requests: 0,
            billable_rsa_2048_requests: 0,
            billable_rsa_data_key_pair_requests: 0,
        };
        // (now, rate, storage, rotation, requests)
        let cases = [
            // enabled key: whole month of storage; requests ×3
            (
                day10,
                KeyRate {
                    spec: None,
                    billed: true,
                    billed_rotations: 0,
                },
                1.0,
                0.0,
                0.27,
            ),
            // rotated once now: the rest of the month adds 480 h of one rotation
            (
                day10,
                KeyRate {
                    spec: None,
                    billed: true,
                    billed_rotations: 1,
                },
                1.0,
                480.0 / 720.0,
                0.27,
            ),
            // pending deletion: no more storage
            (day10, KeyRate::default(), 240.0 / 720.0, 0.0, 0.27),
            // month over: projection = month-to-date
            (
                june.end_ms() + h,
                KeyRate {
                    spec: None,
                    billed: true,
                    billed_rotations: 2,
                },
                240.0 / 720.0,
                0.0,
                0.09,
            ),
        ];
        for (now, rate, storage, rotation, requests) in cases {
            let cost = projected_key_cost(&p, june, now, &usage, rate);
            assert!(close(cost.storage, storage), "{rate:?} {cost:?}");
            assert!(close(cost.rotation, rotation), "{rate:?} {cost:?}");
            assert!(close(cost.requests, requests), "{rate:?} {cost:?}");
        }
        // the first minutes of a month count as one hour
        assert!(close(
            request_projection_factor(june, june.start_ms() + 1000),
            720.0
        ));
    }

    #[test]
    fn asymmetric_requests_have_their_price_and_no_free_tier() {
        let p = Pricing::default();
        let month = Month::parse("2025-06").unwrap();
        // (billable, of them asymmetric, key request cost, host net request cost)
        let cases = [
            (10_000, 10_000, 0.15, 0.15),
            (30_000, 10_000, 0.06 + 0.15, 0.15),
            (10_000, 0, 0.03, 0.0),
        ];
        for (billable, asymmetric, key_requests, host_net) in cases {
            let usage = KeyUsage {
                billable_requests: billable,
                billable_asymmetric_requests: asymmetric,
                ..KeyUsage::default()
            };
            let key = key_cost(&p, month, &usage);
            assert!(
                close(key.requests, key_requests),
                "{billable}/{asymmetric}: {key:?}"
            );
            let host = host_cost(
                &p,
                &[key],
                HostRequests {
                    symmetric: (billable - asymmetric) as f64,
                    asymmetric: asymmetric as f64,
                    data_key_pair: 0.0,
                    rsa_2048: 0.0,
                    rsa_data_key_pair: 0.0,
                },
            );
            assert!(
                close(host.net, host_net),
                "{billable}/{asymmetric}: {host:?}"
            );
        }
        let pairs = KeyUsage {
            billable_requests: 20_000,
            billable_data_key_pair_requests: 10_000,
            ..KeyUsage::default()
        };
        assert!(close(key_cost(&p, month, &pairs).requests, 0.03 + 0.10));
        let rsa = KeyUsage {
            billable_requests: 10_000,
            billable_rsa_2048_requests: 10_000,
            ..KeyUsage::default()
        };
        assert!(close(key_cost(&p, month, &rsa).requests, 0.03));
        let rsa_pairs = KeyUsage {
            billable_requests: 10_000,
            billable_rsa_data_key_pair_requests: 10_000,
            ..KeyUsage::default()
        };
        assert!(close(key_cost(&p, month, &rsa_pairs).requests, 12.0));
    }

    #[test]
    fn request_classes_follow_the_key_spec() {
        use crate::crypto::keyspec::KeySpec::*;
        let cases = [
            ("Sign", Some(EccNistP256), PriceClass::Asymmetric),
            ("Sign", Some(Rsa2048), PriceClass::AsymmetricRsa2048),
            ("Sign", Some(Rsa4096), PriceClass::Asymmetric),
            ("Sign", None, PriceClass::Asymmetric),
            ("Encrypt", Some(SymmetricDefault), PriceClass::Symmetric),
            ("Encrypt", Some(Rsa3072), PriceClass::Asymmetric),
            ("Decrypt", Some(Rsa2048), PriceClass::AsymmetricRsa2048),
            ("ReEncrypt", Some(Rsa4096), PriceClass::Asymmetric),
            ("DescribeKey", Some(Rsa2048), PriceClass::Symmetric),
            ("GenerateMac", Some(Hmac256), PriceClass::Symmetric),
            (
                "GenerateDataKeyPair",
                Some(SymmetricDefault),
                PriceClass::DataKeyPair,
            ),
            ("KmsdGetUsage", None, PriceClass::Unpriced),
        ];
        for (operation, spec, class) in cases {
            assert_eq!(
                request_class(operation, spec),
                class,
                "{operation} {spec:?}"
            );
        }
    }

    #[test]
    fn free_tier_applies_to_the_host_total() {
        let p = Pricing::default();
        let keys = [KeyCost::new(1.0, 0.0, 0.045), KeyCost::new(0.5, 1.0, 0.03)];
        // (billable requests, credit, net)
        let cases = [
            (0.0, 0.0, 2.5),
            (15_000.0, 0.045, 2.5),
            (20_000.0, 0.06, 2.5),
            (25_000.0, 0.06, 2.5 + 0.015),
        ];
        for (requests, credit, net) in cases {
            let host = host_cost(
                &p,
                &keys,
                HostRequests {
                    symmetric: requests,
                    ..HostRequests::default()
                },
            );
            assert!(close(host.storage, 1.5));
            assert!(close(host.rotation, 1.0));
            assert!(close(host.requests_gross, requests * 0.000003), "{host:?}");
            assert!(close(host.free_tier_credit, credit), "{requests}: {host:?}");
            assert!(close(host.net, net), "{requests}: {host:?}");
        }
    }
}
