//! The `[pricing]` table: the list prices the cost estimates use. The cost model itself
//! (`crate::metering::cost`) reads these values; a reload replaces them at run time.

use super::ConfigError;
use serde::{Deserialize, Serialize};

/// The `[pricing]` table. Defaults are AWS KMS list prices in USD (see `prices_as_of`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pricing {
    /// Price of one key for a whole month, prorated hourly.
    pub key_month_usd: f64,
    /// Added per month for each billed rotation (prorated hourly).
    pub rotation_month_usd: f64,
    /// Rotations beyond this many add nothing (AWS: the first and second rotation are billed).
    pub max_billed_rotations: u32,
    /// Price of 10,000 symmetric and management requests (HMAC requests included).
    pub symmetric_usd_per_10k_requests: f64,
    /// Price of 10,000 requests with asymmetric keys (Sign, Verify, GetPublicKey); they are
    /// never in the free tier.
    pub asymmetric_usd_per_10k_requests: f64,
    /// Price of 10,000 requests with RSA_2048 keys (Sign, Verify, GetPublicKey, and Encrypt,
    /// Decrypt, ReEncrypt with an RSA_2048 ENCRYPT_DECRYPT key); never in the free tier.
    pub rsa_2048_usd_per_10k_requests: f64,
    /// Price of 10,000 GenerateDataKeyPair* requests for ECC pairs; never in the free tier.
    pub data_key_pair_usd_per_10k_requests: f64,
    /// Price of 10,000 GenerateDataKeyPair* requests for RSA pairs; never in the free tier.
    pub rsa_data_key_pair_usd_per_10k_requests: f64,
    /// Requests per month that are free, host-wide.
    pub free_tier_requests: u64,
    /// When the defaults were taken from AWS's price list (informational).
    pub prices_as_of: String,
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            key_month_usd: 1.0,
            rotation_month_usd: 1.0,
            max_billed_rotations: 2,
            symmetric_usd_per_10k_requests: 0.03,
            asymmetric_usd_per_10k_requests: 0.15,
            rsa_2048_usd_per_10k_requests: 0.03,
            data_key_pair_usd_per_10k_requests: 0.10,
            rsa_data_key_pair_usd_per_10k_requests: 12.0,
            free_tier_requests: 20_000,
            prices_as_of: "2025-01-15".to_string(),
        }
    }
}

impl Pricing {
    /// Checks that every price is a finite, non-negative number.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prices = [
            ("pricing.key_month_usd", self.key_month_usd),
            ("pricing.rotation_month_usd", self.rotation_month_usd),
            (
                "pricing.symmetric_usd_per_10k_requests",
                self.symmetric_usd_per_10k_requests,
            ),
            (
                "pricing.asymmetric_usd_per_10k_requests",
                self.asymmetric_usd_per_10k_requests,
            ),
            (
                "pricing.rsa_2048_usd_per_10k_requests",
                self.rsa_2048_usd_per_10k_requests,
            ),
            (
                "pricing.data_key_pair_usd_per_10k_requests",
                self.data_key_pair_usd_per_10k_requests,
            ),
            (
                "pricing.rsa_data_key_pair_usd_per_10k_requests",
                self.rsa_data_key_pair_usd_per_10k_requests,
            ),
        ];
        for (field, value) in prices {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    reason: "must be a non-negative number".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pricing_validation_names_the_field() {
        let bad = Pricing {
            key_month_usd: -1.0,
            ..Pricing::default()
        };
        let err = bad.validate().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { field: "pricing.key_month_usd", value, .. } if value == "-1"),
            "{err}"
        );
        let nan = Pricing {
            symmetric_usd_per_10k_requests: f64::NAN,
            ..Pricing::default()
        };
        assert!(nan.validate().is_err());
        assert!(Pricing::default().validate().is_ok());
    }
}
