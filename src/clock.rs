//! The daemon's notion of "now". In production it is the system clock. For tests of
//! deletion windows and rotation, `kmsd --test-clock-file FILE` adds an offset in seconds
//! read from FILE (re-read on every call) — a test-only switch that kmsd warns about loudly.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// A source of the current time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_file: Option<PathBuf>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { offset_file: None }
    }

    /// The system clock shifted by the number of seconds written in `file` (0 if unreadable).
    pub fn with_offset_file(file: PathBuf) -> Self {
        Clock {
            offset_file: Some(file),
        }
    }

    /// Whether this clock may differ from the system clock.
    pub fn is_shifted(&self) -> bool {
        self.offset_file.is_some()
    }

    /// Current time in milliseconds since the epoch.
    pub fn now_ms(&self) -> UnixMillis {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        system + self.offset_secs() * 1000
    }

    fn offset_secs(&self) -> i64 {
        let Some(file) = &self.offset_file else {
            return 0;
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0)
    }
}

/// Milliseconds to AWS's epoch-seconds number.
pub fn to_epoch_seconds(ms: UnixMillis) -> f64 {
    ms as f64 / 1000.0
}

/// Milliseconds in `days` days.
pub fn days_ms(days: i64) -> i64 {
    days * 24 * 3600 * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_file_shifts_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("offset");
        let clock = Clock::with_offset_file(file.clone());
        let before = Clock::system().now_ms();
        std::fs::write(&file, "86400\n").unwrap();
        let shifted = clock.now_ms();
        assert!(shifted - before >= 86_400_000);
        assert!(shifted - before < 86_400_000 + 60_000);
        std::fs::write(&file, "garbage").unwrap();
        assert!(clock.now_ms() - before < 60_000);
    }
}
