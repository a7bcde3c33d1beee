//! The `[limits]` table: what no local caller may exceed — read timeouts, connection caps
//! (global and per uid) and per-uid request quotas (token buckets, as AWS KMS's request
//! quotas). `crate::server` enforces them.

use serde::{Deserialize, Serialize};

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Seconds a client may take to send a request's headers; also how long an idle
    /// keep-alive connection is kept (the wait for the next request's headers).
    pub header_timeout_secs: u64,
    /// Seconds a client may take to send a request's body once its headers are in; a
    /// stalled body gets 408 and the connection is closed.
    pub body_timeout_secs: u64,
    /// Most connections open at once; kmsd keeps it below its descriptor limit.
    pub max_connections: usize,
    /// Most connections one uid may hold open at once.
    pub max_connections_per_uid: usize,
    /// Cryptographic requests (Encrypt, Decrypt, ReEncrypt, GenerateDataKey*,
    /// GenerateRandom) per second per uid; 0 = unlimited. Bursts of one second's worth.
    pub cryptographic_requests_per_sec: u32,
    /// Every other request per second per uid; 0 = unlimited.
    pub management_requests_per_sec: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            header_timeout_secs: 10,
            body_timeout_secs: 10,
            max_connections: 4096,
            max_connections_per_uid: 512,
            cryptographic_requests_per_sec: 100_000,
            management_requests_per_sec: 1_000,
        }
    }
}

impl LimitsSection {
    /// The bounds TOML types cannot express: (field, value, min, max).
    pub(crate) fn checks(&self) -> [(&'static str, u64, u64, u64); 4] {
        [
            (
                "limits.header_timeout_secs",
                self.header_timeout_secs,
                1,
                3600,
            ),
            ("limits.body_timeout_secs", self.body_timeout_secs, 1, 3600),
            (
                "limits.max_connections",
                self.max_connections as u64,
                1,
                1_000_000,
            ),
            (
                "limits.max_connections_per_uid",
                self.max_connections_per_uid as u64,
                1,
                1_000_000,
            ),
        ]
    }
}
