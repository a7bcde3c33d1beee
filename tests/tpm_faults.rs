//! TPM faults end to end, with a real swtpm and a real kmsd: a hung TPM (SIGSTOP) is
//! marked down within two ping intervals while keys, the usage ledger and SIGTERM keep
//! working; a hung TPM that resumes, and a restarted TPM, are reconnected by themselves
//! with the SRK verified; a different TPM on the same port stays down with the SRK
//! mismatch logged; TPM errors are logged in words with their code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::future::Future;
use std::time::{Duration, Instant};

/// Health ping interval of these tests (`[tpm] health_interval_secs`).
const INTERVAL: Duration = Duration::from_secs(1);

fn options() -> KmsdOptions {
    KmsdOptions {
        tpm: format!("health_interval_secs = {}", INTERVAL.as_secs()),
        ..KmsdOptions::default()
    }
}

/// Polls the async `check` every 20 ms until it returns Some or `timeout` passes.
async fn poll_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /metrics` on the Unix socket (as root), then the value of `kmsd_tpm_up`.
async fn tpm_up(client: &Client) -> Option<f64> {
    let request = hyper::Request::get("/metrics")
        .header("host", "kmsd")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .ok()?;
    let raw = client.send(request).await.ok()?;
    assert_eq!(raw.status, 200);
    let text = String::from_utf8(raw.body.to_vec()).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("kmsd_tpm_up "))
        .and_then(|value| value.trim().parse().ok())
}

/// Waits until `kmsd_tpm_up` is `want`; returns how long it took.
async fn wait_tpm_up(client: &Client, want: f64, timeout: Duration) -> Duration {
    let start = Instant::now();
    poll_async(&format!("kmsd_tpm_up {want}"), timeout, || async {
        (tpm_up(client).await == Some(want)).then_some(())
    })
    .await;
    start.elapsed()
}

/// Encrypts and decrypts with `key`: unsealed keys serve without the TPM.
async fn round_trip(client: &Client, key: &str) {
    let plaintext = b"served without the TPM";
    let encrypted = ok(
        client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(plaintext)}),
    )
    .await;
    let decrypted = ok(
        client,
        "Decrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), plaintext);
}

/// The usage ledger's last key-state sample time (written by the background flush only).
fn last_sample_ms(dir: &KmsdDir) -> Option<i64> {
    let path = dir.state_dir().join(kmsd::metering::ledger::LEDGER_FILE);
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    db.query_row(
        "SELECT value FROM meta WHERE name = 'last_sample_ms'",
        [],
        |row| row.get(0),
    )
    .ok()
}

/// Waits until the log contains `needle`; returns the log.
fn wait_log(kmsd: &Kmsd, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let log = kmsd.log_text();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for the log to say {needle:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_tpm_is_down_keys_serve_ledger_flushes_and_sigterm_exits() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    round_trip(&client, &key).await;
    wait_tpm_up(&client, 1.0, Duration::from_secs(10)).await;

    fx.tpm.signal(Signal::SIGSTOP);
    let took = wait_tpm_up(&client, 0.0, Duration::from_secs(20)).await;
    // One interval to the next ping, plus its deadline (one interval), plus slack for a
    // loaded machine.
    assert!(
        took < INTERVAL * 2 + Duration::from_secs(3),
        "took {took:?}"
    );
    let log = wait_log(&fx.kmsd, "TPM health ping failed", Duration::from_secs(10));
    assert!(
        log.contains(
            "did not answer TPM2_GetCapability and TPM2_ReadPublic of the SRK (health ping) within its deadline of 1000 ms"
        ),
        "the error names the command and the deadline:\n{log}"
    );

    // Keys keep serving, and the usage ledger keeps flushing (its sample time advances).
    round_trip(&client, &key).await;
    let before = poll("a ledger sample", Duration::from_secs(10), || {
        last_sample_ms(&fx.dir)
    });
    poll("the ledger to flush again", Duration::from_secs(10), || {
        last_sample_ms(&fx.dir).filter(|now| *now > before)
    });
    let usage = ok(&client, "KmsdGetUsage", json!({})).await;
    assert!(usage.to_string().contains("Encrypt"), "{usage}");
    // Still down (the TPM is still stopped).
    assert_eq!(tpm_up(&client).await, Some(0.0));

    // SIGTERM exits promptly although the TPM thread is stuck.
    let start = Instant::now();
    let status = fx.kmsd.stop().expect("kmsd was running");
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(8), "SIGTERM took {took:?}");
    assert!(fx.kmsd.log_text().contains("kmsd stopped"));
    fx.tpm.signal(Signal::SIGCONT);
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_tpm_that_resumes_is_reconnected() {
    let fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    wait_tpm_up(&client, 1.0, Duration::from_secs(10)).await;
    fx.tpm.signal(Signal::SIGSTOP);
    wait_tpm_up(&client, 0.0, Duration::from_secs(20)).await;
    fx.tpm.signal(Signal::SIGCONT);
    wait_tpm_up(&client, 1.0, Duration::from_secs(40)).await;
    let log = wait_log(
        &fx.kmsd,
        "TPM reconnected and SRK verified",
        Duration::from_secs(5),
    );
    assert!(log.contains("abandoning TPM connection 1"), "{log}");
    round_trip(&client, &key).await;
}

/// The service manager's side of `NOTIFY_SOCKET`: collects kmsd's `STATUS=` lines.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// Waits for a `STATUS=` line containing `needle`.
    fn wait_status(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(status) = message
                    .lines()
                    .find_map(|line| line.strip_prefix("STATUS="))
                    .filter(|status| status.contains(needle))
                {
                    return status.to_string();
                }
                seen.push(message);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for STATUS= with {needle:?}; got {seen:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_tpm_is_reconnected_with_the_srk_verified() {
    let notify = NotifySocket::bind();
    let mut options = options();
    options.env.push((
        "NOTIFY_SOCKET".into(),
        notify.path.to_string_lossy().into_owned(),
    ));
    let mut fx = Fixture::start_with(options);
    let client = fx.client();
    let key = create_key(&client).await;
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"before the restart")}),
    )
    .await;
    wait_tpm_up(&client, 1.0, Duration::from_secs(10)).await;

    fx.tpm.kill();
    wait_tpm_up(&client, 0.0, Duration::from_secs(20)).await;
    let status = notify.wait_status("TPM down", Duration::from_secs(10));
    assert!(status.starts_with("serving 1 key; TPM down ("), "{status}");
    round_trip(&client, &key).await;
    fx.tpm.restart();
    wait_tpm_up(&client, 1.0, Duration::from_secs(40)).await;
    let log = wait_log(
        &fx.kmsd,
        "TPM reconnected and SRK verified",
        Duration::from_secs(5),
    );
    assert!(log.contains("pinned in the state dir's binding"), "{log}");
    let status = notify.wait_status("TPM reconnected", Duration::from_secs(10));
    assert_eq!(status, "serving 1 key; TPM reconnected, SRK verified");
    // Old ciphertexts still decrypt; new requests work.
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"before the restart");
    round_trip(&client, &key).await;
    // It stays up: the next pings go to the new connection.
    let pings = log.matches("TPM health ping failed").count();
    wait_tpm_up(&client, 1.0, Duration::from_secs(5)).await;
    assert_eq!(
        fx.kmsd.log_text().matches("TPM health ping failed").count(),
        pings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn different_tpm_on_the_same_port_stays_down() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    wait_tpm_up(&client, 1.0, Duration::from_secs(10)).await;

    fx.tpm.replace_with_other_tpm();
    let log = wait_log(
        &fx.kmsd,
        "TPM reconnect refused: SRK mismatch",
        Duration::from_secs(40),
    );
    assert!(log.contains("does not match"), "{log}");
    // Refused again at the next attempt, and never reported up in between.
    poll(
        "a second refused reconnect",
        Duration::from_secs(30),
        || {
            (fx.kmsd
                .log_text()
                .matches("TPM reconnect refused: SRK mismatch")
                .count()
                >= 2)
                .then_some(())
        },
    );
    assert_eq!(tpm_up(&client).await, Some(0.0));
    assert!(!fx.kmsd.log_text().contains("TPM reconnected"));
    round_trip(&client, &key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_errors_are_logged_in_words_with_their_code() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    wait_tpm_up(&client, 1.0, Duration::from_secs(10)).await;
    fx.tpm.kill();
    // The ping on the lost connection, then the refused reconnect: TCTI errors.
    let log = wait_log(&fx.kmsd, "TPM reconnect failed", Duration::from_secs(20));
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("TPM health ping failed") || line.contains("TPM reconnect failed")
        })
        .collect();
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        assert!(line.contains("TCTI: "), "layer named: {line}");
        assert!(line.contains("(0xa00"), "raw code in hex: {line}");
    }
    assert!(!log.contains("response code not recognized"), "{log}");
}

/// The TPM layer alone: a missed deadline names the command and the deadline and marks the
/// TPM down; nothing is sent while down; a reconnect after the TPM resumes works, and a
/// reconnect to another TPM is an SRK mismatch.
#[test]
fn handle_deadline_down_and_reconnect() {
    use kmsd::tpm::{TpmConfig, TpmError, TpmHandle};
    let mut tpm = Swtpm::start();
    let handle = TpmHandle::start(TpmConfig {
        tcti: tpm.tcti(),
        pcr_binding: None,
    })
    .expect("start the TPM layer");
    let (sealed, key) = handle.seal_new_root().expect("seal");
    handle.ping().expect("ping");
    assert!(handle.stats().up);

    tpm.signal(Signal::SIGSTOP);
    let start = Instant::now();
    let err = handle
        .ping_within(Duration::from_millis(500))
        .expect_err("a stopped TPM does not answer");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(err, TpmError::Deadline { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("(health ping) within its deadline of 500 ms"),
        "{message}"
    );
    assert!(!handle.stats().up);
    assert!(!handle.is_connected());
    // Nothing is sent while down; the error names the command.
    let err = handle.unseal_root(&sealed).expect_err("down");
    assert!(matches!(err, TpmError::Down { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("unsealing the root key was not sent"),
        "{err}"
    );

    tpm.signal(Signal::SIGCONT);
    let connection = handle.reconnect().expect("reconnect after the TPM resumed");
    assert_eq!(connection, 2);
    assert!(handle.stats().up);
    handle.ping().expect("ping on the new connection");
    assert_eq!(
        handle.unseal_root(&sealed).expect("unseal").as_bytes(),
        key.as_bytes()
    );

    // Another TPM on the same port: the ping finds another SRK, the reconnect refuses it.
    tpm.replace_with_other_tpm();
    let err = handle.ping().expect_err("another TPM");
    assert!(!handle.stats().up);
    assert!(!handle.is_connected(), "{err}");
    let err = handle.reconnect().expect_err("SRK mismatch");
    assert!(matches!(err, TpmError::SrkMismatch { .. }), "{err:?}");
    assert!(!handle.stats().up);
    assert!(!handle.is_connected());
}
