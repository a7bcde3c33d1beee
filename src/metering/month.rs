//! Billing months: calendar months in UTC, written `YYYY-MM`, and the split of a time
//! interval at month boundaries.

use crate::clock::UnixMillis;
use std::fmt;
use time::{Date, Month as CalMonth, OffsetDateTime, Time};

/// A calendar month in UTC (the billing period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    /// The year, e.g. 2026.
    pub year: i32,
    /// 1 to 12.
    pub month: u8,
}

impl Month {
    /// The month containing `ms` (milliseconds since the epoch).
    pub fn containing(ms: UnixMillis) -> Month {
        let date = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Month {
            year: date.year(),
            month: u8::from(date.month()),
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Month> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let year: i32 = year.parse().ok()?;
        let month: u8 = month.parse().ok()?;
        ((1970..=9999).contains(&year) && (1..=12).contains(&month))
            .then_some(Month { year, month })
    }

    /// First millisecond of the month.
    pub fn start_ms(self) -> UnixMillis {
        let month = CalMonth::try_from(self.month).unwrap_or(CalMonth::January);
        Date::from_calendar_date(self.year, month, 1)
            .map(|date| date.with_time(Time::MIDNIGHT).assume_utc())
            .map(|t| t.unix_timestamp() * 1000)
            .unwrap_or(0)
    }

    /// The following month.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The month before.
    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// First millisecond after the month.
    pub fn end_ms(self) -> UnixMillis {
        self.next().start_ms()
    }

    /// Length of the month in milliseconds (28 to 31 days).
    pub fn len_ms(self) -> i64 {
        self.end_ms() - self.start_ms()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// Splits `[from, to)` at month boundaries: `(month, start, end)` pieces, in order.
pub fn split_by_month(from: UnixMillis, to: UnixMillis) -> Vec<(Month, UnixMillis, UnixMillis)> {
    let mut pieces = Vec::new();
    let mut start = from;
    while start < to {
        let month = Month::containing(start);
        let end = month.end_ms().min(to);
        pieces.push((month, start, end));
        start = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn months_and_boundaries() {
        // 2024-02-29T12:00:00Z
        let leap = 1_709_208_000_000;
        let feb = Month::containing(leap);
        assert_eq!(feb.to_string(), "2024-02");
        assert_eq!(feb.len_ms(), 29 * 24 * HOUR);
        assert_eq!(feb.next().to_string(), "2024-03");
        assert_eq!(
            Month::parse("2024-12").unwrap().next().to_string(),
            "2025-01"
        );
        assert_eq!(
            Month::parse("2025-01").unwrap().previous().to_string(),
            "2024-12"
        );
        assert_eq!(Month::containing(feb.end_ms() - 1), feb);
        assert_eq!(Month::containing(feb.end_ms()), feb.next());
        for bad in ["2024-13", "2024-1", "24-01", "2024/01", "", "2024-00"] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn intervals_split_at_month_ends() {
        let march = Month::parse("2024-03").unwrap();
        let from = march.start_ms() - 2 * HOUR;
        let to = march.start_ms() + 3 * HOUR;
        let pieces = split_by_month(from, to);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0], (march.previous(), from, march.start_ms()));
        assert_eq!(pieces[1], (march, march.start_ms(), to));
        assert!(split_by_month(to, to).is_empty());
        assert!(split_by_month(to, from).is_empty());
    }
}
