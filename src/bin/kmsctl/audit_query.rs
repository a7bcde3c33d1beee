//! `kmsctl audit query`: reads audit files and keeps the request records that match a
//! filter (time range, key, uid, event name, failures only); renders them as a table or JSON.
//! Reading needs no key; it does not verify (that is `kmsctl audit verify`).

use kmsd::audit::record::API_CALL;
use serde_json::Value;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Errors of a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{field} '{value}' is not a time: use RFC 3339 (2025-01-31T00:00:00Z) or an age such as 30m, 12h, 7d, 2w")]
    BadTime { field: &'static str, value: String },
}

/// Which records to keep. Every set condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Milliseconds since the epoch, inclusive.
    pub start_ms: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    pub end_ms: Option<i64>,
    /// Key id, key ARN or alias name (alias/...).
    pub key: Option<String>,
    pub uid: Option<u32>,
    /// Operation name, e.g. Decrypt.
    pub event_name: Option<String>,
    /// Only requests that failed (any errorCode).
    pub errors_only: bool,
    /// Also the trail's own records (start, checkpoints).
    pub include_service_events: bool,
}

/// Parses `--start-time`/`--end-time`: RFC 3339, `now`, or an age before `now_ms`
/// (`<n>s|m|h|d|w`).
pub fn parse_time(field: &'static str, text: &str, now_ms: i64) -> Result<i64, QueryError> {
    let bad = || QueryError::BadTime {
        field,
        value: text.to_string(),
    };
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms);
    }
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok((time.unix_timestamp_nanos() / 1_000_000) as i64);
    }
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(unit_ms)
        .filter(|age| *age >= 0)
        .map(|age| now_ms - age)
        .ok_or_else(bad)
}

/// Milliseconds since the epoch of a record's `eventTime`.
pub fn event_time_ms(record: &Value) -> Option<i64> {
    let text = record.get("eventTime")?.as_str()?;
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((time.unix_timestamp_nanos() / 1_000_000) as i64)
}

impl Filter {
    /// Whether a record matches.
    pub fn matches(&self, record: &Value) -> bool {
        if !self.include_service_events && record["eventType"] != API_CALL {
            return false;
        }
        if self.start_ms.is_some() || self.end_ms.is_some() {
            let Some(time) = event_time_ms(record) else {
                return false;
            };
            if self.start_ms.is_some_and(|start| time < start)
                || self.end_ms.is_some_and(|end| time >= end)
            {
                return false;
            }
        }
        if let Some(uid) = self.uid {
            if record["userIdentity"]["uid"].as_u64() != Some(u64::from(uid)) {
                return false;
            }
        }
        if let Some(name) = &self.event_name {
            if record["eventName"].as_str() != Some(name.as_str()) {
                return false;
            }
        }
        if self.errors_only && record.get("errorCode").is_none_or(Value::is_null) {
            return false;
        }
        if let Some(key) = &self.key {
            if !mentions_key(record, key) {
                return false;
            }
        }
        true
    }
}

fn mentions_key(record: &Value, key: &str) -> bool {
    let by_resource = record["resources"].as_array().is_some_and(|resources| {
        resources
            .iter()
            .filter_map(|r| r["ARN"].as_str())
            .any(|arn| {
                arn == key
                    || arn.ends_with(&format!(":key/{key}"))
                    || arn.ends_with(&format!(":{key}"))
            })
    });
    by_resource
        || [
            "keyId",
            "targetKeyId",
            "aliasName",
            "destinationKeyId",
            "sourceKeyId",
        ]
        .iter()
        .any(|field| record["requestParameters"][*field].as_str() == Some(key))
}

/// Matching records of `files`, in trail order, plus the number of unreadable lines
/// skipped (a torn tail, or damage that `verify` reports).
pub fn run(files: &[PathBuf], filter: &Filter) -> Result<(Vec<Value>, u64), QueryError> {
    let mut records = Vec::new();
    let mut skipped = 0;
    for path in files {
        let mut data = std::fs::read(path).map_err(|source| QueryError::Io {
            path: path.clone(),
            source,
        })?;
        data.truncate(kmsd::audit::verify::content_len(&data));
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(record) if record.is_object() => {
                    if filter.matches(&record) {
                        records.push(record);
                    }
                }
                _ => skipped += 1,
            }
        }
    }
    Ok((records, skipped))
}

/// Every audit file of `dir`, oldest first.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>, QueryError> {
    kmsd::audit::verify::list_files(dir).map_err(|source| QueryError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// A fixed-width table, one row per record.
pub fn render_table(records: &[Value]) -> String {
    let header = [
        "TIME",
        "EVENT",
        "UID",
        "PID",
        "KEY",
        "ALIAS",
        "RESULT",
        "REQUEST ID",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|record| {
            let resources = record["resources"].as_array();
            let arn_of = |kind: &str| {
                resources
                    .and_then(|rs| rs.iter().find(|r| r["type"] == kind))
                    .and_then(|r| r["ARN"].as_str())
                    .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_string())
                    .unwrap_or_else(|| "-".into())
            };
            let text = |value: &Value| match value {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            [
                text(&record["eventTime"]),
                text(&record["eventName"]),
                text(&record["userIdentity"]["uid"]),
                text(&record["userIdentity"]["pid"]),
                arn_of("AWS::KMS::Key")
                    .trim_start_matches("key/")
                    .to_string(),
                arn_of("AWS::KMS::Alias"),
                record["errorCode"]
                    .as_str()
                    .map_or_else(|| "OK".to_string(), str::to_string),
                text(&record["requestID"]),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn times_parse() {
        let cases = [
            ("now", Some(NOW)),
            ("7d", Some(NOW - 7 * 86_400_000)),
            ("12h", Some(NOW - 12 * 3_600_000)),
            ("30m", Some(NOW - 30 * 60_000)),
            ("2w", Some(NOW - 14 * 86_400_000)),
            ("1970-01-01T00:00:01Z", Some(1000)),
            ("2023-11-14T22:13:20.123+00:00", Some(1_700_000_000_123)),
            ("7x", None),
            ("d", None),
            ("", None),
            ("-3d", None),
            ("yesterday", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_time("--start-time", text, NOW).ok(),
                expected,
                "{text}"
            );
        }
        let err = parse_time("--end-time", "soon", NOW)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--end-time") && err.contains("soon"), "{err}");
    }

    #[test]
    fn filters_match() {
        let record = json!({
            "eventTime": "2023-11-14T22:13:20.123Z",
            "eventName": "Decrypt",
            "eventType": "AwsApiCall",
            "userIdentity": {"uid": 1000, "gid": 1000},
            "requestParameters": {"keyId": "alias/app"},
            "errorCode": "AccessDeniedException",
            "resources": [
                {"ARN": "arn:kmsd:kms:local:000000000000:key/k1", "type": "AWS::KMS::Key"},
                {"ARN": "arn:kmsd:kms:local:000000000000:alias/app", "type": "AWS::KMS::Alias"}
            ]
        });
        let yes = [
            Filter::default(),
            Filter {
                uid: Some(1000),
                ..Filter::default()
            },
            Filter {
                key: Some("k1".into()),
                ..Filter::default()
            },
            Filter {
                key: Some("alias/app".into()),
                ..Filter::default()
            },
            Filter {
                key: Some("arn:kmsd:kms:local:000000000000:key/k1".into()),
                ..Filter::default()
            },
            Filter {
                event_name: Some("Decrypt".into()),
                errors_only: true,
                ..Filter::default()
            },
            Filter {
                start_ms: Some(1_700_000_000_123),
                end_ms: Some(1_700_000_000_124),
                ..Filter::default()
            },
        ];
        for filter in yes {
            assert!(filter.matches(&record), "{filter:?}");
        }
        let no = [
            Filter {
                uid: Some(0),
                ..Filter::default()
            },
            Filter {
                key: Some("k2".into()),
                ..Filter::default()
            },
            Filter {
                event_name: Some("Encrypt".into()),
                ..Filter::default()
            },
            Filter {
                start_ms: Some(1_700_000_000_124),
                ..Filter::default()
            },
            Filter {
                end_ms: Some(1_700_000_000_123),
                ..Filter::default()
            },
        ];
        for filter in no {
            assert!(!filter.matches(&record), "{filter:?}");
        }
        let mut ok = record;
        ok.as_object_mut().unwrap().remove("errorCode");
        assert!(!Filter {
            errors_only: true,
            ..Filter::default()
        }
        .matches(&ok));
        let service = json!({"eventType": "AwsServiceEvent", "eventName": "AuditTrailStart"});
        assert!(!Filter::default().matches(&service));
        assert!(Filter {
            include_service_events: true,
            ..Filter::default()
        }
        .matches(&service));
    }

    #[test]
    fn table_has_one_row_per_record() {
        let records = vec![
            json!({"eventTime": "t", "eventName": "Encrypt", "userIdentity": {"uid": 5}, "requestID": "r1",
            "resources": [{"ARN": "arn:kmsd:kms:local:000000000000:key/k1", "type": "AWS::KMS::Key"}]}),
        ];
        let table = render_table(&records);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("TIME"));
        assert!(
            lines[1].contains("Encrypt") && lines[1].contains(" k1 ") && lines[1].contains("OK"),
            "{table}"
        );
    }
}
