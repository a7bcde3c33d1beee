//! The TPM health monitor: a thread of its own that pings the TPM every interval (with a
//! deadline), marks it down when it does not answer, and reconnects with back-off once it
//! is down, trusting a new connection only when the SRK has the pinned name.
//!
//! It shares nothing with the usage ledger, the request path or shutdown: a hung TPM
//! stalls at most this thread, for at most one deadline at a time, and shutdown only tells
//! it to stop (it never waits for it). `kmsd_tpm_up` reads [`TpmHandle::stats`], which this
//! monitor keeps true within one interval plus the ping deadline.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{TpmError, TpmHandle, PING_DEADLINE};

/// Longest wait between two reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How often the monitor pings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between two pings (and the first back-off step of reconnects).
    pub interval: Duration,
}

impl HealthSettings {
    /// Deadline of one ping: [`PING_DEADLINE`], or the interval if shorter, so that a hung
    /// TPM shows as down within one interval of the ping that hung.
    pub fn ping_deadline(&self) -> Duration {
        PING_DEADLINE.min(self.interval)
    }
}

/// A change of the TPM's health, reported to the daemon (for `sd_notify` `STATUS=`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthChange {
    /// The TPM stopped answering, or answered the ping with an error.
    Down {
        /// The error, in words.
        error: String,
    },
    /// A new connection found the pinned SRK: the TPM is trusted again.
    Reconnected {
        /// Number of the new connection (1 was the start-up one).
        connection: u64,
    },
    /// A TPM answers, but its SRK is not the pinned one: it stays down.
    SrkMismatch {
        /// The error, naming both SRK names.
        error: String,
    },
}

impl HealthChange {
    /// The status line for the service manager.
    pub fn status(&self) -> String {
        match self {
            HealthChange::Down { error } => {
                format!("TPM down ({error}); unsealed keys keep serving, reconnecting")
            }
            HealthChange::Reconnected { .. } => "TPM reconnected, SRK verified".to_string(),
            HealthChange::SrkMismatch { .. } => "TPM down: SRK mismatch, a different or cleared \
                 TPM answers; unsealed keys keep serving"
                .to_string(),
        }
    }
}

/// The running monitor; dropping it (or [`HealthMonitor::stop`]) tells the thread to stop.
#[derive(Debug)]
pub struct HealthMonitor {
    stop: mpsc::Sender<()>,
}

impl HealthMonitor {
    /// Starts the monitor thread. `on_change` runs on that thread at each change of health.
    pub fn spawn(
        tpm: TpmHandle,
        settings: HealthSettings,
        on_change: impl Fn(&HealthChange) + Send + 'static,
    ) -> Result<HealthMonitor, TpmError> {
        let (stop, stop_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kmsd-tpm-health".into())
            .spawn(move || run(&tpm, settings, &stop_rx, &on_change))
            .map_err(TpmError::Spawn)?;
        tracing::info!(
            interval_ms = settings.interval.as_millis() as u64,
            ping_deadline_ms = settings.ping_deadline().as_millis() as u64,
            "TPM health monitor started"
        );
        Ok(HealthMonitor { stop })
    }

    /// Tells the thread to stop, without waiting for it: it may be inside a TPM command
    /// (for at most that command's deadline) and ends when it returns.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

fn run(
    tpm: &TpmHandle,
    settings: HealthSettings,
    stop: &mpsc::Receiver<()>,
    on_change: &dyn Fn(&HealthChange),
) {
    let interval = settings.interval;
    let deadline = settings.ping_deadline();
    let mut backoff = interval;
    let mut next_attempt = Instant::now();
    let mut mismatch_reported = false;
    loop {
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if tpm.is_connected() {
            if let Err(err) = tpm.ping_within(deadline) {
                tracing::error!(
                    error = %err,
                    "TPM health ping failed: TPM marked down (kmsd_tpm_up 0); unsealed keys \
                     keep serving; reconnecting with back-off"
                );
                on_change(&HealthChange::Down {
                    error: err.to_string(),
                });
                backoff = interval;
                next_attempt = Instant::now();
                mismatch_reported = false;
            }
            continue;
        }
        if Instant::now() < next_attempt {
            continue;
        }
        match tpm.reconnect() {
            Ok(connection) => {
                tracing::info!(
                    connection,
                    "TPM reconnected and SRK verified: its name matches the one pinned in the \
                     state dir's binding (kmsd_tpm_up 1)"
                );
                on_change(&HealthChange::Reconnected { connection });
                backoff = interval;
                mismatch_reported = false;
                continue;
            }
            Err(err @ TpmError::SrkMismatch { .. }) => {
                tracing::error!(
                    error = %err,
                    retry_in_ms = backoff.as_millis() as u64,
                    "TPM reconnect refused: SRK mismatch, the TPM that answers is not the one \
                     the root key is bound to; the TPM stays down (kmsd_tpm_up 0)"
                );
                if !mismatch_reported {
                    on_change(&HealthChange::SrkMismatch {
                        error: err.to_string(),
                    });
                    mismatch_reported = true;
                }
            }
            Err(err) => tracing::warn!(
                error = %err,
                retry_in_ms = backoff.as_millis() as u64,
                "TPM reconnect failed; the TPM stays down (kmsd_tpm_up 0)"
            ),
        }
        next_attempt = Instant::now() + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF.max(interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_deadline_is_at_most_the_interval() {
        let short = HealthSettings {
            interval: Duration::from_secs(1),
        };
        assert_eq!(short.ping_deadline(), Duration::from_secs(1));
        let default = HealthSettings {
            interval: Duration::from_secs(15),
        };
        assert_eq!(default.ping_deadline(), PING_DEADLINE);
    }

    #[test]
    fn status_lines_say_what_happened() {
        let down = HealthChange::Down {
            error: "TCTI: I/O error (0xa000a)".into(),
        };
        assert!(
            down.status().contains("TPM down (TCTI"),
            "{}",
            down.status()
        );
        let back = HealthChange::Reconnected { connection: 2 };
        assert_eq!(back.status(), "TPM reconnected, SRK verified");
        let other = HealthChange::SrkMismatch { error: "x".into() };
        assert!(
            other.status().contains("SRK mismatch"),
            "{}",
            other.status()
        );
    }
}
