//! Limits no local caller can exhaust: a stalled body gets 408 and the connection closes, a
//! stalled header closes the connection, one uid cannot take more than its share of
//! connection slots, and a uid over its request quota gets ThrottlingException — while
//! another uid keeps being served (p99 < 10 ms, no errors).

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn fixture(limits: &str) -> Fixture {
    Fixture::start_with(KmsdOptions {
        config: format!("[limits]\n{limits}\n"),
        ..KmsdOptions::default()
    })
}

/// Everything the server sends until it closes the connection (or `deadline` passes).
fn read_until_closed(stream: &mut UnixStream, deadline: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_stalled_body_gets_408_and_the_connection_closes() {
    let fx = fixture("body_timeout_secs = 1");
    let mut stream = UnixStream::connect(&fx.kmsd.socket).unwrap();
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.ListKeys\r\n\
              Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{\"Li",
        )
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("RequestTimeoutException"), "{answer}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_stalled_header_closes_the_connection() {
    let fx = fixture("header_timeout_secs = 1");
    let mut stream = UnixStream::connect(&fx.kmsd.socket).unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: kmsd\r\n")
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(5),
        "the connection stayed open {took:?}"
    );
    // A request was started: 408 in AWS's shape, and the connection closes.
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("x-amzn-errortype: requesttimeoutexception"),
        "{answer}"
    );
    assert!(lower.contains("connection: close"), "{answer}");
    assert!(
        answer.contains(r#""__type":"RequestTimeoutException""#),
        "{answer}"
    );
    assert!(answer.contains("header_timeout_secs"), "{answer}");
    // An idle keep-alive connection is closed after the same time, without a word.
    let mut idle = UnixStream::connect(&fx.kmsd.socket).unwrap();
    let (answer, took) = read_until_closed(&mut idle, Duration::from_secs(10));
    assert!(
        took < Duration::from_secs(5),
        "the idle connection stayed open {took:?}"
    );
    assert_eq!(answer, "", "an idle connection gets no answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_uid_over_its_quota_is_throttled_and_recorded() {
    let fx = fixture("cryptographic_requests_per_sec = 20\nmanagement_requests_per_sec = 0");
    let client = fx.client();
    let key = create_key(&client).await;
    let mut throttled = 0;
    for _ in 0..60 {
        match client
            .call_json("Encrypt", &json!({"KeyId": key, "Plaintext": b64(b"x")}))
            .await
        {
            Ok(_) => {}
            Err(err) => {
                assert_eq!(err.exception(), Some("ThrottlingException"), "{err}");
                throttled += 1;
            }
        }
    }
    assert!(
        throttled > 0,
        "60 requests at once never hit a quota of 20/s"
    );
    // Management requests draw from their own (here unlimited) quota.
    ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    // Throttled requests are in the trail.
    let trail: String = std::fs::read_dir(fx.dir.state_dir().join("audit"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(trail.contains("\"errorCode\":\"ThrottlingException\""));
}

/// A child process that is killed and waited for when dropped (also when a test panics).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process running as `uid` that holds `stalled` connections with half-sent headers and,
/// once it printed READY, floods the socket with new connections until it is killed.
fn hog(uid: u32, socket: &Path, stalled: usize) -> Reaped {
    let script = r#"
import socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"POST / HTTP/1.1\r\nHost: kmsd\r\n")
    held.append(s)
print("READY", flush=True)
refused = 0
while True:
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect(path)
        s.sendall(b"POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Length: 2\r\n\r\n{}")
        data = s.recv(4096)
        if b"ThrottlingException" in data:
            refused += 1
        s.close()
    except OSError:
        pass
"#;
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(socket)
        .arg(stalled.to_string())
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(Reaped)
        .expect("python3")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_uid_cannot_take_every_slot_and_another_keeps_being_served() {
    if !is_root() {
        eprintln!("not root: cannot run a caller as another uid; skipped");
        return;
    }
    const PER_UID: usize = 24;
    let fx = fixture(&format!(
        "max_connections = 64\nmax_connections_per_uid = {PER_UID}\nheader_timeout_secs = 60"
    ));
    let client = fx.client();
    let key = create_key(&client).await;
    // Root alone first: the ceiling the flooded figure is read against.
    let alone = encrypt_p99(&client, &key).await;
    let mut hog = hog(4711, &fx.kmsd.socket, PER_UID);
    let mut ready = String::new();
    let mut stdout = hog.0.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.contains("READY") {
        assert!(Instant::now() < deadline, "the hog did not get ready");
        if stdout.read(&mut byte).unwrap_or(0) == 0 {
            panic!("the hog exited: {ready}");
        }
        ready.push(byte[0] as char);
    }
    // The hog's next connection is refused with ThrottlingException.
    let output = Command::new("python3")
        .arg("-c")
        .arg(
            // A probe accepted before the hog's last held connection took its slot is
            // admitted and waits for a request: it times out, closes, and tries again.
            "import socket,sys\nfor _ in range(20):\n    s=socket.socket(socket.AF_UNIX)\n    s.settimeout(2)\n    s.connect(sys.argv[1])\n    try:\n        data=s.recv(4096)\n    except TimeoutError:\n        s.close()\n        continue\n    if data:\n        print(data)\n        break",
        )
        .arg(&fx.kmsd.socket)
        .uid(4711)
        .gid(4711)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("ThrottlingException") && text.contains("max_connections_per_uid"),
        "{text}"
    );
    // Root keeps being served while the hog floods.
    let flooded = encrypt_p99(&client, &key).await;
    drop(hog);
    // The issue's 10 ms p99 is a timing goal and is measured in BENCHMARKS.md ("Fairness
    // under a flood"); this test proves the other uid gets no error and is not starved (a
    // starved caller would wait for header_timeout_secs = 60 s, far above this bound).
    println!("root's Encrypt p99: {alone:?} alone, {flooded:?} while uid 4711 floods");
    assert!(
        flooded < Duration::from_millis(250),
        "p99 {flooded:?} while another uid floods: starved"
    );
}

/// The p99 of 300 audited Encrypts in a row; every one must succeed.
async fn encrypt_p99(client: &Client, key: &str) -> Duration {
    let mut latencies = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        ok(
            client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"served")}),
        )
        .await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies[latencies.len() * 99 / 100]
}
