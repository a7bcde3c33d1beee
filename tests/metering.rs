//! Usage metering end to end: request counters by key, operation and outcome (including
//! denied and invalid requests), `promtool check metrics` on a real scrape, cost figures
//! under the test clock (hourly proration, rotation cap, pending deletion and its
//! cancellation, destroyed keys, month rollover), month-to-date kept across a restart, and
//! a real Prometheus server evaluating every expression of the shipped dashboard and rules.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use kmsd::metering::Month;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HOUR: i64 = 3_600_000;
/// Slack for figures that depend on when a sample ran relative to a state change (the
/// test's own calls take seconds at most); in hours.
const SLACK_HOURS: f64 = 0.05;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A plain HTTP/1.0 GET; returns (status, body).
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Series = BTreeMap<String, String>;

/// Parses the text format into (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, Series, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            (name.to_string(), labels, value.parse().expect("number"))
        })
        .collect()
}

fn value_of(metrics: &[(String, Series, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

/// `GET /metrics` on the Unix socket.
async fn scrape_socket(client: &Client) -> String {
    let request = hyper::Request::get("/metrics")
        .header("host", "kmsd")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let raw = client.send(request).await.expect("GET /metrics");
    assert_eq!(raw.status, 200);
    String::from_utf8(raw.body.to_vec()).unwrap()
}

async fn usage(client: &Client, month: Option<&str>) -> Value {
    let mut body = json!({});
    if let Some(month) = month {
        body["Month"] = json!(month);
    }
    ok(client, "KmsdGetUsage", body).await
}

fn key_of<'a>(report: &'a Value, key_id: &str) -> &'a Value {
    report["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["KeyId"] == key_id)
        .unwrap_or_else(|| panic!("{key_id} not in report {report:#}"))
}

fn assert_hours(actual: &Value, expected: f64, what: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual}"));
    assert!(
        (actual - expected).abs() <= SLACK_HOURS,
        "{what}: {actual} h, expected {expected} h"
    );
}

/// Helper process: when started with the env below (as another uid), calls DescribeKey and
/// prints the exception name.
#[test]
fn denied_request_helper() {
    let (Ok(socket), Ok(key)) = (
        std::env::var("KMSD_METERING_HELPER_SOCKET"),
        std::env::var("KMSD_METERING_HELPER_KEY"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::new(socket);
        match client
            .call_json("DescribeKey", &json!({"KeyId": key}))
            .await
        {
            Ok(_) => println!("RESULT ok"),
            Err(err) => println!("RESULT {}", err.exception().unwrap_or("transport")),
        }
    });
}

/// Runs [`denied_request_helper`] as `uid`; returns its RESULT line.
fn describe_key_as(uid: u32, socket: &Path, key: &str) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "denied_request_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KMSD_METERING_HELPER_SOCKET", socket)
        .env("KMSD_METERING_HELPER_KEY", key)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run helper");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.trim().to_string()))
        .unwrap_or_else(|| {
            format!(
                "no result ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_match_requests_and_promtool_accepts_the_scrape() {
    let port = free_port();
    let fx = Fixture::start_with(KmsdOptions {
        config: format!("metrics_listen = \"127.0.0.1:{port}\""),
        ..KmsdOptions::default()
    });
    let client = fx.client();
    let key = create_key(&client).await;
    for _ in 0..3 {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    // invalid: not base64 (client error, counted on the key it names)
    for _ in 0..2 {
        fails(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "!!"}),
            "ValidationException",
        )
        .await;
    }
    // a key that does not exist, a request without a key, an unknown operation
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": "00000000-0000-4000-8000-000000000000", "Plaintext": b64(b"x")}),
        "NotFoundException",
    )
    .await;
    ok(&client, "ListKeys", json!({})).await;
    fails(
        &client,
        "NoSuchOperation",
        json!({}),
        "UnknownOperationException",
    )
    .await;
    let denied = if is_root() {
        for _ in 0..2 {
            assert_eq!(
                describe_key_as(4242, &fx.kmsd.socket, &key),
                "AccessDeniedException"
            );
        }
        2.0
    } else {
        eprintln!("not root: skipping the denied requests");
        0.0
    };

    let addr = format!("127.0.0.1:{port}");
    let (status, text) = http_get(&addr, "/metrics").expect("scrape metrics_listen");
    assert_eq!(status, 200, "{text}");
    let metrics = parse_metrics(&text);
    let requests = |key_id: &str, op: &str, outcome: &str| {
        value_of(
            &metrics,
            "kmsd_requests_total",
            &[("key_id", key_id), ("operation", op), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(requests(&key, "CreateKey", "success"), 1.0, "{text}");
    assert_eq!(requests(&key, "Encrypt", "success"), 3.0);
    assert_eq!(requests(&key, "Encrypt", "client_error"), 2.0, "{text}");
    assert_eq!(requests(&key, "DescribeKey", "denied"), denied);
    assert_eq!(requests("", "Encrypt", "client_error"), 1.0);
    assert_eq!(requests("", "ListKeys", "success"), 1.0);
    assert_eq!(requests("", "unknown", "client_error"), 1.0);
    let total: f64 = metrics
        .iter()
        .filter(|(n, _, _)| n == "kmsd_requests_total")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(total, 9.0 + denied);
    assert_eq!(
        value_of(
            &metrics,
            "kmsd_key_info",
            &[("key_id", &key), ("state", "Enabled")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value_of(
            &metrics,
            "kmsd_keys",
            &[("state", "Enabled"), ("key_spec", "SYMMETRIC_DEFAULT")]
        ),
        Some(1.0)
    );
    assert_eq!(value_of(&metrics, "kmsd_tpm_up", &[]), Some(1.0));
    assert!(value_of(&metrics, "kmsd_tpm_commands_total", &[]).unwrap() >= 1.0);
    assert!(value_of(
        &metrics,
        "kmsd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))]
    )
    .is_some());
    assert!(value_of(&metrics, "process_resident_memory_bytes", &[]).is_some());
    assert!(
        value_of(
            &metrics,
            "kmsd_request_duration_seconds_count",
            &[("operation", "Encrypt")]
        )
        .unwrap()
            >= 5.0
    );
    for component in ["storage", "rotation", "requests"] {
        assert!(value_of(
            &metrics,
            "kmsd_cost_month_to_date_usd",
            &[("key_id", &key), ("component", component)]
        )
        .is_some());
    }

    // promtool's parser and linter accept the exposition
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The Unix socket serves the same families; the usage report agrees with the counters.
    let socket_text = scrape_socket(&client).await;
    assert!(socket_text.contains("kmsd_requests_total{"));
    let report = usage(&client, None).await;
    let k = key_of(&report, &key);
    assert_eq!(k["Requests"]["ByOperation"]["Encrypt"]["success"], 3);
    assert_eq!(k["Requests"]["ByOutcome"]["client_error"], 2);
    // billable: CreateKey + 3 Encrypt + ListKeys
    assert_eq!(report["Totals"]["Requests"]["Billable"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_month_to_date() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    const N: u64 = 7;
    for _ in 0..N {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    drop(client);
    fx.restart();
    let client = fx.client();
    for _ in 0..N {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    let report = usage(&client, None).await;
    assert_eq!(
        key_of(&report, &key)["Requests"]["ByOperation"]["Encrypt"]["success"],
        2 * N
    );
    let metrics = parse_metrics(&scrape_socket(&client).await);
    assert_eq!(
        value_of(
            &metrics,
            "kmsd_requests_total",
            &[
                ("key_id", &key),
                ("operation", "Encrypt"),
                ("outcome", "success")
            ]
        ),
        Some((2 * N) as f64)
    );
    assert_eq!(
        value_of(
            &metrics,
            "kmsd_requests_total",
            &[
                ("key_id", &key),
                ("operation", "CreateKey"),
                ("outcome", "success")
            ]
        ),
        Some(1.0),
        "counted once, not again after the restart"
    );

    // kmsctl usage shows the same figures, as a table and as JSON
    let kmsctl = |args: &[&str]| {
        let out = Command::new(KMSCTL)
            .arg("--socket")
            .arg(&fx.kmsd.socket)
            .arg("usage")
            .args(args)
            .output()
            .expect("run kmsctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let json_text = kmsctl(&["--output", "json", "--key-id", &key]);
    let shown: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(shown["Keys"].as_array().unwrap().len(), 1);
    assert_eq!(
        shown["Keys"][0]["Requests"]["ByOperation"]["Encrypt"]["success"],
        2 * N
    );
    let table = kmsctl(&[]);
    assert!(
        table.contains(&key) && table.contains("Month to date"),
        "{table}"
    );
    let bad = Command::new(KMSCTL)
        .arg("--socket")
        .arg(&fx.kmsd.socket)
        .args(["usage", "--month", "2025-13"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("2025-13"));
}

/// Shifts the service clock so that it reads `target_ms`.
fn set_time(dir: &KmsdDir, target_ms: i64) {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    dir.set_clock_offset_secs((target_ms - system) / 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn cost_follows_the_formula_under_the_test_clock() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let month = Month::containing(now).next().next();
    let hours_in_month = month.len_ms() as f64 / HOUR as f64;
    let t0 = month.start_ms() + 24 * HOUR;
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    set_time(&dir, t0);
    let kmsd = Kmsd::start(&tpm, &dir);
    let fx = Fixture { kmsd, dir, tpm };
    let client = fx.client();

    let k1 = create_key(&client).await;
    usage(&client, None).await; // sample
                                // hourly proration: 10 hours
    set_time(&fx.dir, t0 + 10 * HOUR);
    let report = usage(&client, None).await;
    assert_eq!(report["Month"], month.to_string());
    let k = key_of(&report, &k1);
    assert_hours(&k["KeyHours"], 10.0, "10 h enabled");
    let storage = k["MonthToDate"]["Storage"].as_f64().unwrap();
    let hours = k["KeyHours"].as_f64().unwrap();
    assert!((storage - hours / hours_in_month).abs() < 1e-9, "{storage}");

    // three rotations: only two are billed
    for _ in 0..3 {
        ok(&client, "RotateKeyOnDemand", json!({"KeyId": k1})).await;
    }
    usage(&client, None).await;
    set_time(&fx.dir, t0 + 15 * HOUR);
    let report = usage(&client, None).await;
    let k = key_of(&report, &k1);
    assert_hours(&k["KeyHours"], 15.0, "15 h enabled");
    assert_hours(&k["RotationHours"], 10.0, "2 billed rotations × 5 h");
    let rotation = k["MonthToDate"]["Rotation"].as_f64().unwrap();
    let rotation_hours = k["RotationHours"].as_f64().unwrap();
    assert!((rotation - rotation_hours / hours_in_month).abs() < 1e-9);

    // pending deletion is not billed...
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": k1, "PendingWindowInDays": 7}),
    )
    .await;
    usage(&client, None).await;
    set_time(&fx.dir, t0 + 39 * HOUR);
    let report = usage(&client, None).await;
    let k = key_of(&report, &k1);
    assert_hours(&k["KeyHours"], 15.0, "not billed while pending deletion");
    assert_hours(&k["PendingDeletionHours"], 24.0, "pending deletion");
    assert!(
        k["Projected"]["Storage"].as_f64().unwrap()
            < k["MonthToDate"]["Storage"].as_f64().unwrap() + 1e-6,
        "a key pending deletion projects no more storage: {k}"
    );
    // ...unless the deletion is cancelled: then billed as if never scheduled
    ok(&client, "CancelKeyDeletion", json!({"KeyId": k1})).await;
    let report = usage(&client, None).await;
    let k = key_of(&report, &k1);
    assert_hours(
        &k["KeyHours"],
        39.0,
        "cancelled: billed as if never scheduled",
    );
    assert_hours(&k["PendingDeletionHours"], 0.0, "nothing set aside");
    assert_hours(&k["RotationHours"], 58.0, "rotations too");

    // a key destroyed after its waiting period: billed only before the schedule
    let k2 = create_key(&client).await;
    usage(&client, None).await;
    set_time(&fx.dir, t0 + 40 * HOUR);
    // A sample sees the state of each key then and accrues the time since the previous one
    // to it, so sample before changing the state (kmsd samples every second on its own).
    usage(&client, None).await;
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": k2, "PendingWindowInDays": 7}),
    )
    .await;
    usage(&client, None).await;
    set_time(&fx.dir, t0 + 40 * HOUR + 8 * 24 * HOUR);
    poll(
        "maintenance to destroy the key",
        Duration::from_secs(30),
        || {
            futures_lite_block(client.call_json("DescribeKey", &json!({"KeyId": k2})))
                .err()
                .filter(|e| e.exception() == Some("NotFoundException"))
        },
    );
    let report = usage(&client, None).await;
    let k = key_of(&report, &k2);
    assert_hours(
        &k["KeyHours"],
        1.0,
        "destroyed key: hours before the schedule",
    );
    assert_hours(
        &k["PendingDeletionHours"],
        0.0,
        "destroyed: pending time dropped",
    );
    let metrics = parse_metrics(&scrape_socket(&client).await);
    assert!(
        value_of(&metrics, "kmsd_cost_month_to_date_usd", &[("key_id", &k2)]).is_some(),
        "a destroyed key keeps its cost series until the month ends"
    );
    assert!(value_of(&metrics, "kmsd_key_info", &[("key_id", &k2)]).is_none());

    // host totals: a handful of requests, all within the free tier
    let totals = &report["Totals"]["MonthToDate"];
    let gross = totals["RequestsGross"].as_f64().unwrap();
    assert!(gross > 0.0);
    assert!((totals["FreeTierCredit"].as_f64().unwrap() - gross).abs() < 1e-12);
    let net = totals["Net"].as_f64().unwrap();
    let storage_and_rotation =
        totals["Storage"].as_f64().unwrap() + totals["Rotation"].as_f64().unwrap();
    assert!((net - storage_and_rotation).abs() < 1e-9, "{totals}");

    // month rollover: the new month starts from zero, the old one is kept and complete
    let created = t0;
    set_time(&fx.dir, month.end_ms() + 2 * HOUR);
    let report = usage(&client, None).await;
    assert_eq!(report["Month"], month.next().to_string());
    assert_hours(&key_of(&report, &k1)["KeyHours"], 2.0, "new month");
    assert!(report["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["KeyId"] != k2));
    let old = usage(&client, Some(&month.to_string())).await;
    assert_eq!(old["MonthComplete"], true);
    assert_hours(
        &key_of(&old, &k1)["KeyHours"],
        (month.end_ms() - created) as f64 / HOUR as f64,
        "whole life of k1 in the old month",
    );
    assert!(key_of(&old, &k1)["Requests"]["ByOperation"]["RotateKeyOnDemand"]["success"] == 3);
    let metrics = parse_metrics(&scrape_socket(&client).await);
    assert!(value_of(&metrics, "kmsd_cost_month_to_date_usd", &[("key_id", &k2)]).is_none());
    assert!(
        value_of(
            &metrics,
            "kmsd_requests_total",
            &[("key_id", &k1), ("operation", "RotateKeyOnDemand")]
        )
        .is_none(),
        "request counters start again with the month"
    );
}

/// Runs a future to completion from synchronous code inside the multi-thread test runtime.
fn futures_lite_block<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// A Prometheus server as a child process; killed and waited for on drop.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\nscrape_configs:\n  - job_name: kmsd\n    static_configs:\n      - targets: ['{target}']\n",
                root.join("recording-rules.yml").display(),
                root.join("alert-rules.yml").display(),
            ),
        )
        .unwrap();
        // Rule groups have their own intervals (1m, 15s); for the test, evaluate every second.
        for file in ["recording-rules.yml", "alert-rules.yml"] {
            let text = std::fs::read_to_string(root.join(file))
                .unwrap()
                .replace("interval: 1m", "interval: 1s")
                .replace("interval: 15s", "interval: 1s");
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        let config_text = std::fs::read_to_string(&config).unwrap().replace(
            &root.display().to_string(),
            &dir.path().display().to_string(),
        );
        std::fs::write(&config, config_text).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (apt-get install prometheus)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Runs an instant query; Ok(number of results) or Err(error text).
    fn query(&self, expr: &str) -> Result<usize, String> {
        let (status, body) = http_get(
            &self.addr,
            &format!("/api/v1/query?query={}", urlencode(expr)),
        )
        .ok_or("no answer")?;
        let value: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || value["status"] != "success" {
            return Err(body);
        }
        Ok(match &value["data"]["result"] {
            Value::Array(items) => items.len(),
            Value::Null => 0,
            _ => 1, // scalar
        })
    }
}

/// Strips a top-level `<op> <number>` comparison from an alert expression (every shipped
/// alert has that shape), leaving the signal that should have data.
fn alert_signal(expr: &str) -> String {
    let expr = expr.trim();
    for op in [" > ", " < ", " >= ", " <= ", " == ", " != "] {
        if let Some((signal, threshold)) = expr.rsplit_once(op) {
            if threshold.trim().parse::<f64>().is_ok() {
                return signal.trim().to_string();
            }
        }
    }
    panic!("alert expression without a top-level threshold: {expr}");
}

fn rule_exprs(file: &str) -> Vec<(String, bool)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("monitoring")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap();
    let doc: serde_yaml_like::Doc = serde_yaml_like::parse(&text);
    doc.rules
}

/// The little YAML the rule files use, read with promtool's help: `promtool check rules`
/// validates them; here we only need each rule's expr and whether it is an alert.
mod serde_yaml_like {
    pub struct Doc {
        pub rules: Vec<(String, bool)>,
    }
    pub fn parse(text: &str) -> Doc {
        let mut rules = Vec::new();
        let mut lines = text.lines().peekable();
        let mut alert = false;
        while let Some(line) = lines.next() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("- record:") {
                alert = false;
            } else if trimmed.starts_with("- alert:") {
                alert = true;
            } else if let Some(rest) = trimmed.strip_prefix("expr:") {
                let rest = rest.trim();
                if rest == "|" {
                    let indent = line.len() - trimmed.len();
                    let mut expr = String::new();
                    while let Some(next) = lines.peek() {
                        let next_indent = next.len() - next.trim_start().len();
                        if next.trim().is_empty() || next_indent <= indent {
                            break;
                        }
                        expr.push_str(next.trim());
                        expr.push(' ');
                        lines.next();
                    }
                    rules.push((expr.trim().to_string(), alert));
                } else {
                    rules.push((rest.to_string(), alert));
                }
            }
        }
        Doc { rules }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_evaluates_every_dashboard_and_rule_expression() {
    let port = free_port();
    let options = KmsdOptions {
        config: format!("metrics_listen = \"127.0.0.1:{port}\""),
        ..KmsdOptions::default()
    };
    let mut fx = Fixture::start_with(options.clone());
    let key = create_key(&fx.client()).await;
    ok(
        &fx.client(),
        "CreateAlias",
        json!({"AliasName": "alias/dash", "TargetKeyId": key}),
    )
    .await;
    // Restart, so that the root key is unsealed (a new state dir seals one instead) and
    // kmsd_tpm_last_unseal_timestamp_seconds exists.
    fx.kmsd.stop();
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options);
    let client = fx.client();
    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"));

    // Keep traffic flowing (successes, errors and denials) until Prometheus has scraped
    // several times, so rates and ratios over the last minute have data.
    let socket = fx.kmsd.socket.clone();
    let mut rounds = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
        fails(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": "!!"}),
            "ValidationException",
        )
        .await;
        if is_root() && rounds % 5 == 0 {
            describe_key_as(4242, &socket, &key);
        }
        rounds += 1;
        let ready = prometheus
            .query("count_over_time(up{job=\"kmsd\"}[1m]) >= 5 and on() up{job=\"kmsd\"} == 1")
            .is_ok_and(|n| n > 0)
            && prometheus
                .query("kmsd:denied_ratio:rate5m")
                .is_ok_and(|n| n > 0)
            && prometheus
                .query("kmsd:host_bill_projected_usd")
                .is_ok_and(|n| n > 0);
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not scrape kmsd in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !is_root() {
        eprintln!("not root: no denied requests; denied ratios are 0 (still data)");
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("monitoring/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(vars.contains(&"datasource") && vars.contains(&"host"));
    let host_query = dashboard["templating"]["list"][1]["query"]["query"]
        .as_str()
        .unwrap();
    let metric = host_query
        .trim_start_matches("label_values(")
        .split(',')
        .next()
        .unwrap();
    assert_eq!(
        prometheus.query(metric),
        Ok(1),
        "host variable source {metric}"
    );

    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$host", ".+")
                .replace("$__rate_interval", "1m");
            let results = prometheus.query(&expr);
            assert!(
                matches!(results, Ok(n) if n > 0),
                "panel {:?}: {expr} gave {results:?}",
                panel["title"]
            );
            checked += 1;
        }
    }
    for file in ["recording-rules.yml", "alert-rules.yml"] {
        for (expr, alert) in rule_exprs(file) {
            // The full expression must run; an alert's threshold is not crossed on a
            // healthy test host, so its signal (the expression without the comparison)
            // is what must return data.
            let full = prometheus.query(&expr);
            assert!(full.is_ok(), "{file}: {expr}: {full:?}");
            let signal = if alert {
                alert_signal(&expr)
            } else {
                expr.clone()
            };
            let results = prometheus.query(&signal);
            assert!(
                matches!(results, Ok(n) if n > 0),
                "{file}: {signal} gave {results:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} expressions checked");
}

/// The ledger's crash bound: counts flushed before a SIGKILL survive it, exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_keeps_flushed_counts_exactly_once() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    const N: i64 = 9;
    for _ in 0..N {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    // The ledger flushes at least once a second: wait until the counts are on disk.
    let ledger = fx.dir.state_dir().join("usage.db");
    poll(
        "the usage ledger flush",
        std::time::Duration::from_secs(30),
        || {
            let conn = rusqlite::Connection::open_with_flags(
                &ledger,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok()?;
            let stored: i64 = conn
                .query_row(
                    "SELECT COALESCE(SUM(count), 0) FROM requests
                     WHERE key_id = ?1 AND operation = 'Encrypt' AND outcome = 'success'",
                    [&key],
                    |row| row.get(0),
                )
                .ok()?;
            (stored == N).then_some(())
        },
    );
    drop(client);
    fx.kmsd.kill();
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    let client = fx.client();
    for _ in 0..N {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    let report = usage(&client, None).await;
    assert_eq!(
        key_of(&report, &key)["Requests"]["ByOperation"]["Encrypt"]["success"],
        2 * N
    );
}
