//! What no local caller may exhaust: connection slots (a global cap kept below the
//! descriptor limit, and a cap per uid so one uid cannot take every slot) and per-uid
//! request quotas (token buckets per operation class, as AWS KMS's request quotas; a request
//! over its quota is ThrottlingException). Settings: the `[limits]` table.

use crate::api::operations::QuotaClass;
use crate::config::LimitsSection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Descriptors kept free for the database, the audit files, the TPM and the listeners.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft descriptor limit to the hard one (systemd's `LimitNOFILE=` sets both) and
/// returns the soft limit now in force.
pub fn raise_descriptor_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                tracing::info!(from = soft, to = hard, "raised the descriptor limit");
                hard
            } else {
                soft
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The connection slots and request quotas of one server.
#[derive(Debug)]
pub struct Limits {
    settings: LimitsSection,
    max_connections: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: usize,
    by_uid: HashMap<u32, usize>,
    buckets: HashMap<(u32, QuotaClass), Bucket>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotRefusal {
    /// Every slot is taken.
    Full {
        /// The cap in force.
        max: usize,
    },
    /// This uid holds its share.
    UidFull {
        /// The uid.
        uid: u32,
        /// The per-uid cap.
        max: usize,
    },
}

impl std::fmt::Display for SlotRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotRefusal::Full { max } => write!(
                f,
                "kmsd has {max} connections open, its maximum ([limits] max_connections, bounded by the descriptor limit); try again later"
            ),
            SlotRefusal::UidFull { uid, max } => write!(
                f,
                "uid {uid} already holds {max} connections, the most one uid may ([limits] max_connections_per_uid); close idle connections or try again later"
            ),
        }
    }
}

/// A held connection slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        state.open = state.open.saturating_sub(1);
        if let Some(count) = state.by_uid.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                state.by_uid.remove(&self.uid);
            }
        }
    }
}

impl Limits {
    /// Limits from the `[limits]` table, with the connection cap kept below
    /// `descriptor_limit`.
    pub fn new(settings: LimitsSection, descriptor_limit: u64) -> Limits {
        let by_descriptors = usize::try_from(
            descriptor_limit
                .saturating_sub(RESERVED_DESCRIPTORS)
                .max(16),
        )
        .unwrap_or(usize::MAX);
        let max_connections = settings.max_connections.min(by_descriptors);
        if max_connections < settings.max_connections {
            tracing::warn!(
                configured = settings.max_connections,
                in_force = max_connections,
                descriptor_limit,
                "max_connections lowered to stay below the descriptor limit (raise LimitNOFILE=)"
            );
        }
        Limits {
            settings,
            max_connections,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long a client may take to send a request's headers (and an idle keep-alive
    /// connection waits for the next request).
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.header_timeout_secs)
    }

    /// How long a client may take to send a request's body.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.body_timeout_secs)
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Takes a connection slot for `uid`, or says why not.
    pub fn admit_connection(self: &Arc<Self>, uid: u32) -> Result<Slot, SlotRefusal> {
        let mut state = self.lock();
        if state.open >= self.max_connections {
            return Err(SlotRefusal::Full {
                max: self.max_connections,
            });
        }
        let held = state.by_uid.get(&uid).copied().unwrap_or(0);
        if held >= self.settings.max_connections_per_uid {
            return Err(SlotRefusal::UidFull {
                uid,
                max: self.settings.max_connections_per_uid,
            });
        }
        state.open += 1;
        *state.by_uid.entry(uid).or_insert(0) += 1;
        drop(state);
        Ok(Slot {
            limits: Arc::clone(self),
            uid,
        })
    }

    /// Takes one request from `uid`'s quota for `class`; Err names the quota when it is
    /// spent (ThrottlingException).
    pub fn take_request(&self, uid: u32, class: QuotaClass) -> Result<(), String> {
        let (rate, setting) = match class {
            QuotaClass::Cryptographic => (
                self.settings.cryptographic_requests_per_sec,
                "cryptographic_requests_per_sec",
            ),
            QuotaClass::Management => (
                self.settings.management_requests_per_sec,
                "management_requests_per_sec",
            ),
        };
        if rate == 0 {
            return Ok(());
        }
        let rate = f64::from(rate);
        let now = Instant::now();
        let mut state = self.lock();
        let bucket = state.buckets.entry((uid, class)).or_insert(Bucket {
            tokens: rate,
            refilled: now,
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(format!(
                "Rate exceeded: uid {uid} is over its quota of {rate} requests per second for this kind of operation ([limits] {setting})"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_uid: usize, max: usize, crypto: u32) -> Arc<Limits> {
        Arc::new(Limits::new(
            LimitsSection {
                max_connections: max,
                max_connections_per_uid: per_uid,
                cryptographic_requests_per_sec: crypto,
                management_requests_per_sec: 0,
                ..LimitsSection::default()
            },
            1 << 20,
        ))
    }

    #[test]
    fn slots_are_capped_per_uid_and_in_all() {
        let limits = limits(2, 3, 0);
        let a1 = limits.admit_connection(1).unwrap();
        let _a2 = limits.admit_connection(1).unwrap();
        assert_eq!(
            limits.admit_connection(1).unwrap_err(),
            SlotRefusal::UidFull { uid: 1, max: 2 }
        );
        let _b1 = limits.admit_connection(2).unwrap();
        assert_eq!(
            limits.admit_connection(3).unwrap_err(),
            SlotRefusal::Full { max: 3 }
        );
        drop(a1);
        assert!(limits.admit_connection(3).is_ok());
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        let limits = Limits::new(LimitsSection::default(), 1024);
        assert_eq!(limits.max_connections(), 1024 - 128);
        let limits = Limits::new(LimitsSection::default(), 1 << 20);
        assert_eq!(limits.max_connections(), 4096);
    }

    #[test]
    fn quotas_are_per_uid_and_class() {
        let limits = limits(10, 10, 5);
        for _ in 0..5 {
            limits.take_request(7, QuotaClass::Cryptographic).unwrap();
        }
        let err = limits
            .take_request(7, QuotaClass::Cryptographic)
            .unwrap_err();
        assert!(
            err.contains("uid 7") && err.contains("cryptographic_requests_per_sec"),
            "{err}"
        );
        // Another uid, and another class (unlimited here), are not affected.
        limits.take_request(8, QuotaClass::Cryptographic).unwrap();
        limits.take_request(7, QuotaClass::Management).unwrap();
    }
}
