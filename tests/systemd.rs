//! kmsd as a systemd service, without systemd as PID 1: `systemd-socket-activate` owns the
//! listening socket and execs kmsd on the first connection (so the child's pid is kmsd's),
//! and the test plays the service manager's side of `NOTIFY_SOCKET`.
//!
//! Checked here: READY=1 (with MAINPID) once the passed socket is served, WATCHDOG=1 pings,
//! RELOADING=1 with MONOTONIC_USEC then READY=1 on SIGHUP (a good reload changes the log
//! level and says so in STATUS=, a broken one keeps serving, a restart-only change is
//! named in STATUS=), STOPPING=1 and exit 0 on SIGTERM, and that SIGTERM
//! under load lets every accepted request finish.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// kmsd started by systemd-socket-activate, with a notify socket the test reads.
struct Activated {
    child: Option<Child>,
    notify: UnixDatagram,
    /// Every notification received so far, in order.
    messages: Vec<String>,
    socket: PathBuf,
    log: PathBuf,
    config: PathBuf,
}

impl Activated {
    /// Starts systemd-socket-activate (which execs kmsd on the first connection) with
    /// `config` (plus the TPM's TCTI) and the watchdog at `watchdog_usec`.
    fn start(tpm_tcti: &str, dir: &KmsdDir, config: &str, watchdog_usec: u64) -> Activated {
        Self::launch(tpm_tcti, dir, config, watchdog_usec, true)
    }

    /// kmsd alone (binding its own socket), with the same notify socket.
    fn start_unactivated(tpm_tcti: &str, dir: &KmsdDir) -> Activated {
        Self::launch(tpm_tcti, dir, "", 0, false)
    }

    fn launch(
        tpm_tcti: &str,
        dir: &KmsdDir,
        config: &str,
        watchdog_usec: u64,
        activate: bool,
    ) -> Activated {
        let notify_path = dir.root.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let config_path = dir.config_file();
        write_config(&config_path, config, tpm_tcti);
        let log = std::fs::File::create(dir.log()).unwrap();
        let env = |name: &str, value: &str| format!("--setenv={name}={value}");
        let mut command = if activate {
            let mut command = Command::new("systemd-socket-activate");
            command
                .arg("--listen")
                .arg(dir.socket())
                .arg("--fdname=kmsd")
                .arg(env("NOTIFY_SOCKET", notify_path.to_str().unwrap()))
                .arg(env("WATCHDOG_USEC", &watchdog_usec.to_string()))
                .arg(env("TSS2_LOG", "all+NONE"))
                .arg(KMSD);
            command
        } else {
            let mut command = Command::new(KMSD);
            command
                .env("NOTIFY_SOCKET", &notify_path)
                .env("TSS2_LOG", "all+NONE")
                .arg("--socket")
                .arg(dir.socket());
            command
        };
        let child = command
            .arg("--config")
            .arg(&config_path)
            .arg("--state-dir")
            .arg(dir.state_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn kmsd (systemd-socket-activate: apt-get install systemd)");
        let activated = Activated {
            child: Some(child),
            notify,
            messages: Vec::new(),
            socket: dir.socket(),
            log: dir.log(),
            config: config_path,
        };
        if activate {
            // systemd-socket-activate binds and listens, says so, then waits for the first
            // connection.
            poll("systemd-socket-activate to listen", WAIT, || {
                activated.log_text().contains("Listening on").then_some(())
            });
        }
        activated
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Receives notifications until one satisfies `pred`; returns its index in `messages`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        self.wait_for_after(what, 0, pred)
    }

    /// Like [`Activated::wait_for`], counting only messages from index `from` on.
    fn wait_for_after(&mut self, what: &str, from: usize, pred: impl Fn(&str) -> bool) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut checked = from;
        loop {
            while checked < self.messages.len() {
                if pred(&self.messages[checked]) {
                    return checked;
                }
                checked += 1;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.drain();
                    if let Some(i) = (from..self.messages.len()).find(|i| pred(&self.messages[*i]))
                    {
                        return i;
                    }
                    panic!(
                        "kmsd exited ({status}) before {what}; messages {:?}\n{}",
                        self.messages,
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; messages {:?}\n{}",
                self.messages,
                self.log_text()
            );
            self.receive_one();
        }
    }

    /// Receives one datagram if one arrives within the socket's read timeout.
    fn receive_one(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => {
                self.messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                true
            }
            Err(_) => false,
        }
    }

    /// Receives everything already queued.
    fn drain(&mut self) {
        self.notify.set_nonblocking(true).unwrap();
        while self.receive_one() {}
        self.notify.set_nonblocking(false).unwrap();
    }

    /// Waits for the exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("child running");
        poll("kmsd to exit", WAIT, || child.try_wait().ok().flatten())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self) -> Client {
        Client::new(&self.socket)
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write_config(path: &std::path::Path, config: &str, tcti: &str) {
    let text = format!("maintenance_interval_secs = 1\n{config}\n[tpm]\ntcti = \"{tcti}\"\n");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn field<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

fn has(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

/// One raw HTTP exchange on a fresh connection: Ok(status line) or the I/O error.
fn raw_list_keys(socket: &std::path::Path) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(WAIT))?;
    let body = "{}";
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_watchdog_reload_and_stop() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Activated::start(&tpm.tcti(), &dir, "log_level = \"info\"", 200_000);

    // The first connection starts kmsd; its request waits in the socket's queue.
    let socket = kmsd.socket.clone();
    let first = std::thread::spawn(move || raw_list_keys(&socket));
    let ready = kmsd.wait_for("READY=1", |m| has(m, "READY=1"));
    // READY=1 is the first message, it names kmsd (the exec'd child) as the main pid, and
    // by then kmsd has logged that its accept loop runs on the passed socket.
    assert_eq!(ready, 0, "messages before READY: {:?}", kmsd.messages);
    let message = kmsd.messages[ready].clone();
    assert_eq!(
        field(&message, "MAINPID"),
        Some(kmsd.pid().to_string().as_str())
    );
    assert_eq!(field(&message, "STATUS"), Some("serving 0 keys"));
    let log = kmsd.log_text();
    assert!(log.contains("kmsd serving"), "{log}");
    assert!(log.contains("socket activation"), "{log}");
    // Right after READY=1 a new connection is answered: no retry loop here.
    assert_eq!(raw_list_keys(&kmsd.socket).unwrap(), "HTTP/1.1 200 OK");
    assert_eq!(first.join().unwrap().unwrap(), "HTTP/1.1 200 OK");

    // Watchdog pings (WATCHDOG_USEC = 200 ms: a ping every 100 ms).
    let first_ping = kmsd.wait_for("WATCHDOG=1", |m| has(m, "WATCHDOG=1"));
    kmsd.wait_for_after("a second WATCHDOG=1", first_ping + 1, |m| {
        has(m, "WATCHDOG=1")
    });

    // A client error is logged at debug level only: not visible at "info".
    let client = kmsd.client();
    let missing = json!({"KeyId": "11111111-2222-3333-4444-555555555555"});
    fails(&client, "DescribeKey", missing.clone(), "NotFoundException").await;
    assert!(!kmsd.log_text().contains("request rejected"));

    // Good reload: RELOADING=1 with MONOTONIC_USEC, then READY=1; the new level applies.
    write_config(&kmsd.config, "log_level = \"info,kmsd=debug\"", &tpm.tcti());
    let before = kmsd.messages.len();
    kmsd.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = kmsd.wait_for_after("RELOADING=1", before, |m| has(m, "RELOADING=1"));
    let usec = field(&kmsd.messages[reloading], "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {:?}", kmsd.messages[reloading]));
    let usec: u64 = usec.parse().expect("MONOTONIC_USEC is a number");
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    let now_usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1000;
    assert!(
        usec > 0 && usec <= now_usec,
        "MONOTONIC_USEC {usec} vs now {now_usec}"
    );
    let ready = kmsd.wait_for_after("READY=1 after reload", reloading + 1, |m| has(m, "READY=1"));
    assert_eq!(
        field(&kmsd.messages[ready], "STATUS"),
        Some("serving 0 keys; configuration reloaded, applied: log_level")
    );
    let log = kmsd.log_text();
    assert!(log.contains("configuration reloaded"), "{log}");
    fails(&client, "DescribeKey", missing.clone(), "NotFoundException").await;
    poll("the debug line after the reload", WAIT, || {
        kmsd.log_text().contains("request rejected").then_some(())
    });

    // Broken reload: the old config stays, kmsd keeps serving, STATUS says so.
    std::fs::write(&kmsd.config, "this is [not toml").unwrap();
    let before = kmsd.messages.len();
    kmsd.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = kmsd.wait_for_after("RELOADING=1", before, |m| has(m, "RELOADING=1"));
    let ready = kmsd.wait_for_after("READY=1 after a failed reload", reloading + 1, |m| {
        has(m, "READY=1")
    });
    let status = field(&kmsd.messages[ready], "STATUS").unwrap_or_default();
    assert!(status.contains("reload failed"), "{status}");
    assert!(kmsd.log_text().contains("reload failed"));
    let key = create_key(&client).await;
    ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(raw_list_keys(&kmsd.socket).unwrap(), "HTTP/1.1 200 OK");

    // A restart-only change is reported, not applied.
    write_config(
        &kmsd.config,
        "log_level = \"info,kmsd=debug\"\naccount_id = \"111111111111\"",
        &tpm.tcti(),
    );
    let before = kmsd.messages.len();
    kmsd.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = kmsd.wait_for_after("RELOADING=1", before, |m| has(m, "RELOADING=1"));
    let ready = kmsd.wait_for_after("READY=1", reloading + 1, |m| has(m, "READY=1"));
    assert_eq!(
        field(&kmsd.messages[ready], "STATUS"),
        Some("serving 1 key; configuration reloaded, needs a restart: account_id")
    );
    assert!(kmsd.log_text().contains("need a restart"));
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    let arn = described["KeyMetadata"]["Arn"].as_str().unwrap();
    assert!(arn.contains(":000000000000:"), "{arn}");

    // SIGTERM: STOPPING=1, exit 0.
    let before = kmsd.messages.len();
    kmsd.signal(nix::sys::signal::Signal::SIGTERM);
    kmsd.wait_for_after("STOPPING=1", before, |m| has(m, "STOPPING=1"));
    let status = kmsd.wait_exit();
    assert!(status.success(), "{status}\n{}", kmsd.log_text());
    assert!(kmsd.log_text().contains("kmsd stopped"));
}

#[test]
fn ready_without_socket_activation_means_the_socket_answers() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Activated::start_unactivated(&tpm.tcti(), &dir);
    let ready = kmsd.wait_for("READY=1", |m| has(m, "READY=1"));
    assert_eq!(ready, 0, "{:?}", kmsd.messages);
    // kmsd binds the socket itself: at READY=1 the file exists and a request is answered at
    // the first attempt (before READY=1 there may be no socket file at all).
    assert_eq!(raw_list_keys(&kmsd.socket).unwrap(), "HTTP/1.1 200 OK");
    assert!(kmsd.log_text().contains("bound by kmsd"));
    kmsd.signal(nix::sys::signal::Signal::SIGTERM);
    kmsd.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));
    assert!(kmsd.wait_exit().success());
    // kmsd removes the socket file it created.
    assert!(!kmsd.socket.exists());
}

#[test]
fn failed_start_never_reports_ready() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    // A TCTI nobody answers on: kmsd cannot start.
    let tcti = format!("swtpm:host=127.0.0.1,port={}", tpm.port + 7);
    drop(tpm);
    let mut kmsd = Activated::start(&tcti, &dir, "", 0);
    let _ = UnixStream::connect(&kmsd.socket);
    let status = kmsd.wait_exit();
    assert!(!status.success());
    kmsd.drain();
    assert!(
        kmsd.messages.iter().all(|m| !has(m, "READY=1")),
        "{:?}",
        kmsd.messages
    );
}

/// Sends a request's headers with `Expect: 100-continue` and waits for the interim
/// `100 Continue`: from then on the request is in kmsd's handler, waiting for its body.
fn start_request(socket: &std::path::Path, body: &str) -> UnixStream {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: TrentService.Encrypt\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "connection closed");
        seen.push(byte[0]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 100 Continue"), "{seen}");
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_finishes_accepted_requests() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Activated::start(&tpm.tcti(), &dir, "", 0);
    let client = kmsd.client();
    let key = create_key(&client).await;
    kmsd.wait_for("READY=1", |m| has(m, "READY=1"));

    // Requests that are provably in flight: kmsd's handler is waiting for their bodies.
    let body = json!({"KeyId": key, "Plaintext": b64(b"in flight at SIGTERM")}).to_string();
    let in_flight: Vec<UnixStream> = (0..4).map(|_| start_request(&kmsd.socket, &body)).collect();

    // Load: clients issuing requests back to back on keep-alive connections until kmsd
    // goes away. Each returns (successes, the first failure).
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();
    for n in 0..16 {
        let client = kmsd.client();
        let key = key.clone();
        let answered = std::sync::Arc::clone(&answered);
        load.push(tokio::spawn(async move {
            let mut done = 0u64;
            loop {
                let plaintext = b64(format!("request {n}/{done}").as_bytes());
                match client
                    .call_json("Encrypt", &json!({"KeyId": key, "Plaintext": plaintext}))
                    .await
                {
                    Ok(reply) => {
                        assert!(reply["CiphertextBlob"].is_string());
                        if done == 0 {
                            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        done += 1;
                    }
                    Err(err) => return (done, err),
                }
            }
        }));
    }
    // Every load client has been answered before the signal.
    let deadline = Instant::now() + WAIT;
    while answered.load(std::sync::atomic::Ordering::SeqCst) < load.len() {
        assert!(Instant::now() < deadline, "load clients not answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    kmsd.signal(nix::sys::signal::Signal::SIGTERM);
    kmsd.wait_for("STOPPING=1", |m| has(m, "STOPPING=1"));

    // kmsd is stopping; the in-flight requests still complete.
    for mut stream in in_flight {
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains("CiphertextBlob"), "{response}");
    }

    let status = kmsd.wait_exit();
    assert!(status.success(), "{status}\n{}", kmsd.log_text());
    let mut total = 0;
    for task in load {
        let (done, failure) = task.await.unwrap();
        total += done;
        match failure {
            // kmsd never answers with an error: a failure is the connection going away
            // before a request was read (refused, reset, or closed with no response).
            ClientError::Service {
                status, exception, ..
            } => panic!("request failed during shutdown: {status} {exception}"),
            ClientError::Codec(err) => panic!("truncated or garbled response: {err}"),
            ClientError::Connect { .. } | ClientError::Http(_) => {}
            err @ ClientError::Timeout { .. } => panic!("request hung during shutdown: {err}"),
        }
    }
    assert!(total > 0);
    let log = kmsd.log_text();
    assert!(
        !log.contains("connections still open after the drain time"),
        "{log}"
    );
    assert!(log.contains("kmsd stopped"), "{log}");
}
