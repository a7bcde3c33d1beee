//! kmsctl's deadlines against servers that never answer: `--cli-read-timeout` against a
//! socket that accepts and stays silent, `--cli-connect-timeout` against a socket whose
//! listen queue is full. kmsctl must exit 255 soon after the limit, naming what timed out
//! and after how long. No kmsd or TPM is involved.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nix::sys::socket::{
    bind, connect, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KMSCTL: &str = env!("CARGO_BIN_EXE_kmsctl");
/// kmsctl must be done this long after it started, or the test fails (and kills it).
const DEADLINE: Duration = Duration::from_secs(15);

fn spawn_kmsctl(socket: &Path, args: &[&str]) -> Child {
    Command::new(KMSCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("KMSD_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kmsctl")
}

/// Waits for kmsctl to exit, polling until DEADLINE; kills and reaps it past the deadline.
fn wait_with_deadline(mut child: Child, started: Instant) -> (Output, Duration) {
    loop {
        match child.try_wait() {
            Ok(Some(_)) => {
                let elapsed = started.elapsed();
                let output = child.wait_with_output().expect("collect kmsctl's output");
                return (output, elapsed);
            }
            Ok(None) if started.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let output = child.wait_with_output().expect("reap kmsctl");
                panic!(
                    "kmsctl still running after {DEADLINE:?}; stderr: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("waiting for kmsctl: {err}");
            }
        }
    }
}

fn check_timed_out(output: &Output, elapsed: Duration, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(255),
        "exit status {:?}, stderr: {stderr}",
        output.status
    );
    assert!(
        elapsed >= Duration::from_millis(950),
        "kmsctl gave up after {elapsed:?}, before its 1 s limit; stderr: {stderr}"
    );
    for part in expected {
        assert!(stderr.contains(part), "stderr lacks {part:?}: {stderr}");
    }
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
}

#[test]
fn read_timeout_against_a_server_that_never_answers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    // Accepts one connection and holds it, unanswered, until told to stop.
    let server = std::thread::spawn(move || {
        let held = listener.accept();
        let _ = stop_rx.recv();
        drop(held);
    });

    let started = Instant::now();
    let child = spawn_kmsctl(&socket, &["--cli-read-timeout", "1", "list-keys"]);
    let (output, elapsed) = wait_with_deadline(child, started);

    // Stop the server thread: it is either holding kmsctl's connection (the stop message
    // ends it) or still in accept (the connection below ends that).
    let _ = stop_tx.send(());
    let _ = UnixStream::connect(&socket);
    server.join().unwrap();

    check_timed_out(
        &output,
        elapsed,
        &[
            "timed out after 1 s waiting for kmsd's answer on",
            "silent.sock",
            "ListKeys",
            "--cli-read-timeout",
        ],
    );
}

/// A listening socket with a backlog of 0 that never accepts, its queue filled with
/// non-blocking connections until the kernel refuses more (EAGAIN). The returned
/// descriptors keep it full.
fn full_listener(path: &Path) -> (OwnedFd, Vec<OwnedFd>) {
    let addr = UnixAddr::new(path).unwrap();
    let listener = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&listener), &addr).unwrap();
    listen(&listener, Backlog::new(0).unwrap()).unwrap();
    let mut queued = Vec::new();
    for _ in 0..1000 {
        let client = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .unwrap();
        match connect(std::os::fd::AsRawFd::as_raw_fd(&client), &addr) {
            Ok(()) => queued.push(client),
            Err(nix::errno::Errno::EAGAIN) => return (listener, queued),
            Err(err) => panic!("filling the listen queue: {err}"),
        }
    }
    panic!("the listen queue of {} never filled", path.display());
}

#[test]
fn connect_timeout_against_a_full_listen_queue() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("full.sock");
    let (_listener, _queued) = full_listener(&socket);

    let started = Instant::now();
    let child = spawn_kmsctl(&socket, &["--cli-connect-timeout", "1", "list-keys"]);
    let (output, elapsed) = wait_with_deadline(child, started);
    check_timed_out(
        &output,
        elapsed,
        &[
            "timed out after 1 s connecting to kmsd at",
            "full.sock",
            "--cli-connect-timeout",
        ],
    );
}

#[test]
fn a_missing_socket_fails_at_once_not_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("absent.sock");
    let started = Instant::now();
    let child = spawn_kmsctl(&socket, &["--cli-connect-timeout", "30", "list-keys"]);
    let (output, elapsed) = wait_with_deadline(child, started);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "stderr: {stderr}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        stderr.contains("Could not connect to kmsd"),
        "stderr: {stderr}"
    );
}

#[test]
fn timeouts_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("unused.sock");
    let started = Instant::now();
    let child = spawn_kmsctl(&socket, &["--cli-read-timeout=-1", "list-keys"]);
    let (output, _) = wait_with_deadline(child, started);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("--cli-read-timeout"), "stderr: {stderr}");
}
