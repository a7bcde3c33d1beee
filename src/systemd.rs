//! Talking to the service manager: the listening socket systemd passes in (socket
//! activation: `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) and `sd_notify` messages
//! (`READY=1`, `RELOADING=1` with `MONOTONIC_USEC`, `STOPPING=1`, `STATUS=`, `WATCHDOG=1`).
//!
//! Everything here is a no-op when kmsd is not run by systemd: without `NOTIFY_SOCKET` no
//! message is sent, and without `LISTEN_FDS` for this pid kmsd binds its own socket.

use sd_notify::NotifyState;
use std::os::unix::net::UnixListener;
use std::time::Duration;

/// The name kmsd's socket unit gives its descriptor (`FileDescriptorName=kmsd`).
pub const FD_NAME: &str = "kmsd";

/// Errors while taking the socket systemd passed in.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS = {value:?} is not a number")]
    BadCount {
        /// Its value.
        value: String,
    },
    /// A passed descriptor is not a listening Unix stream socket.
    #[error("socket-activated descriptor {index} ({name}) is not a listening Unix stream socket: {source}")]
    NotUnixStream {
        /// Index among the passed descriptors, from 0.
        index: usize,
        /// Its name from `LISTEN_FDNAMES`.
        name: String,
        /// What the check returned.
        source: std::io::Error,
    },
}

/// Takes the listening socket systemd passed to this process, if any.
///
/// Passed descriptors are used only when `LISTEN_PID` names this process (a variable
/// inherited from a parent is ignored). With several descriptors, the one named
/// [`FD_NAME`] (or `kmsd.socket`, systemd's default name) is taken, else the first.
/// The activation variables are removed from the environment afterwards.
///
/// Call this before any thread starts (it edits the environment); it logs nothing, as
/// logging is not set up yet.
pub fn take_activated_listener() -> Result<Option<UnixListener>, ActivationError> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    if !ours {
        // Not for us (or no activation at all): forget the variables so no child inherits them.
        clear_env();
        return Ok(None);
    }
    let count = match std::env::var("LISTEN_FDS") {
        Ok(value) => value
            .trim()
            .parse::<usize>()
            .map_err(|_| ActivationError::BadCount { value })?,
        Err(_) => 0,
    };
    // listenfd re-checks LISTEN_PID, validates the descriptor type and removes
    // LISTEN_PID/LISTEN_FDS itself.
    let mut fds = listenfd::ListenFd::from_env();
    clear_env();
    if count == 0 {
        return Ok(None);
    }
    let names: Vec<&str> = names.split(':').collect();
    let index = names
        .iter()
        .position(|name| *name == FD_NAME || *name == "kmsd.socket")
        .filter(|index| *index < count)
        .unwrap_or(0);
    let name = names.get(index).copied().unwrap_or("unnamed").to_string();
    match fds.take_unix_listener(index) {
        Ok(Some(listener)) => Ok(Some(listener)),
        Ok(None) => Ok(None),
        Err(source) => Err(ActivationError::NotUnixStream {
            index,
            name,
            source,
        }),
    }
}

fn clear_env() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` when the watchdog is enabled
/// for this process (`WATCHDOG_PID` unset or equal to our pid).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|timeout| !timeout.is_zero())
        .map(|timeout| timeout / 2)
}

/// Sends `sd_notify` messages; failures are logged, never fatal.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    /// `READY=1` with `MAINPID` and a status line. Send only once the socket is served.
    pub fn ready(&self, status: &str) {
        send(&[
            NotifyState::Ready,
            NotifyState::MainPid(std::process::id()),
            NotifyState::Status(status),
        ]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd requires it for `Type=notify-reload`
    /// and uses it to match the reload to the request).
    pub fn reloading(&self) {
        let mut states = vec![NotifyState::Reloading, NotifyState::Status("reloading")];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(err) => tracing::warn!(error = %err, "cannot read CLOCK_MONOTONIC"),
        }
        send(&states);
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// `STATUS=` alone.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify the service manager");
    }
}

/// The status line while serving.
pub fn serving_status(keys: usize) -> String {
    match keys {
        1 => "serving 1 key".to_string(),
        n => format!("serving {n} keys"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let cases = [
            (0, "serving 0 keys"),
            (1, "serving 1 key"),
            (7, "serving 7 keys"),
        ];
        for (keys, want) in cases {
            assert_eq!(serving_status(keys), want);
        }
    }
}
