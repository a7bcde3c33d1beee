//! Test harness: a real swtpm child process on free loopback ports, and a real kmsd child
//! process on a temporary Unix socket. Everything started is killed and waited for on drop.
//! Waits poll with a deadline; there are no fixed sleeps.

#![allow(dead_code)]
// A harness that cannot start swtpm or kmsd fails the test: unwrap and expect are the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use kmsd::client::{Client, ClientError};
pub use serde_json::{json, Value};

static USED_PORTS: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

pub const KMSD: &str = env!("CARGO_BIN_EXE_kmsd");
pub const KMSCTL: &str = env!("CARGO_BIN_EXE_kmsctl");

/// Polls `check` every 10 ms until it returns Some or the deadline passes.
pub fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// P such that P and P+1 are free (the swtpm TCTI uses P+1 for the control channel).
pub fn pick_ports() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind port 0")
            .port();
        if port == u16::MAX || !port_free(port + 1) {
            continue;
        }
        let mut used = USED_PORTS.lock().unwrap();
        let used = used.get_or_insert_with(HashSet::new);
        if used.contains(&port) || used.contains(&(port + 1)) {
            continue;
        }
        used.insert(port);
        used.insert(port + 1);
        return port;
    }
}

fn wait_for_port(child: &mut Child, port: u16, deadline: Instant) -> bool {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A software TPM as a child process.
pub struct Swtpm {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Starts swtpm on `dir` and `port` (and `port + 1`); None if it does not listen in time.
fn spawn_swtpm(dir: &Path, port: u16) -> Option<Child> {
    let mut child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.display()))
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
        .arg("--flags")
        .arg("not-need-init,startup-clear")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn swtpm (apt-get install swtpm)");
    let deadline = Instant::now() + Duration::from_secs(10);
    if wait_for_port(&mut child, port + 1, deadline) && wait_for_port(&mut child, port, deadline) {
        return Some(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Swtpm {
    pub fn start() -> Swtpm {
        // libtss2 in this process (tests that use the TPM layer directly) stays quiet.
        if std::env::var_os("TSS2_LOG").is_none() {
            std::env::set_var("TSS2_LOG", "all+NONE");
        }
        for _attempt in 0..10 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = pick_ports();
            if let Some(child) = spawn_swtpm(dir.path(), port) {
                return Swtpm { child, port, dir };
            }
        }
        panic!("could not start swtpm");
    }

    /// Pid of the swtpm process (to SIGSTOP/SIGCONT it).
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Sends `signal` to swtpm (SIGSTOP: a hung TPM; SIGCONT: it resumes).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), signal).expect("signal swtpm");
    }

    /// SIGKILL and wait: the TPM disappears (its state dir stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills swtpm and starts it again on the same state dir and ports (a TPM restart).
    pub fn restart(&mut self) {
        self.kill();
        self.child = poll(
            "swtpm to restart on its ports",
            Duration::from_secs(30),
            || spawn_swtpm(self.dir.path(), self.port),
        );
    }

    /// Kills swtpm and starts a fresh one (new, empty state: another TPM) on the same ports.
    pub fn replace_with_other_tpm(&mut self) {
        self.kill();
        self.dir = tempfile::tempdir().expect("tempdir");
        self.child = poll(
            "a new swtpm on the same ports",
            Duration::from_secs(30),
            || spawn_swtpm(self.dir.path(), self.port),
        );
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Runs a tpm2-tools command against this TPM.
    pub fn tpm2(&self, args: &[&str]) -> std::process::Output {
        Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TSS2_LOG", "all+NONE")
            .output()
            .expect("run tpm2-tools")
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Options for starting kmsd.
#[derive(Clone, Debug, Default)]
pub struct KmsdOptions {
    /// Extra TOML for the config file.
    pub config: String,
    /// Extra lines for the `[tpm]` table.
    pub tpm: String,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, String)>,
}

/// A directory for one kmsd: state dir, socket, config, clock file, log.
pub struct KmsdDir {
    pub root: tempfile::TempDir,
}

impl KmsdDir {
    pub fn new() -> KmsdDir {
        let root = tempfile::tempdir().expect("tempdir");
        // Other uids must reach the socket inside (access tests).
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        KmsdDir { root }
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.path().join("kmsd.sock")
    }
    pub fn clock_file(&self) -> PathBuf {
        self.root.path().join("clock-offset")
    }
    pub fn log(&self) -> PathBuf {
        self.root.path().join("kmsd.log")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.path().join("kmsd.toml")
    }
    /// Shifts the daemon's clock (test builds only honour this through --test-clock-file).
    pub fn set_clock_offset_secs(&self, secs: i64) {
        let tmp = self.root.path().join("clock-offset.tmp");
        std::fs::write(&tmp, secs.to_string()).unwrap();
        std::fs::rename(&tmp, self.clock_file()).unwrap();
    }
}

/// The config file the harness gives kmsd: the test's options on top of its defaults.
pub fn config_text(tpm: &Swtpm, options: &KmsdOptions) -> String {
    format!(
        "socket_mode = \"0666\"\nmaintenance_interval_secs = 1\nlog_level = \"info,kmsd=debug\"\n{}\n[tpm]\ntcti = \"{}\"\n{}\n",
        options.config,
        tpm.tcti(),
        options.tpm
    )
}

/// (Re)writes the config file of `dir` atomically (a reload never reads half a file).
pub fn write_config(tpm: &Swtpm, dir: &KmsdDir, options: &KmsdOptions) {
    let tmp = dir.root.path().join("kmsd.toml.tmp");
    std::fs::write(&tmp, config_text(tpm, options)).unwrap();
    std::fs::rename(&tmp, dir.config_file()).unwrap();
}

/// A running kmsd child process.
pub struct Kmsd {
    child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Kmsd {
    /// Starts kmsd and waits until its socket answers; panics with the log if it fails.
    pub fn start(tpm: &Swtpm, dir: &KmsdDir) -> Kmsd {
        Self::start_with(tpm, dir, KmsdOptions::default())
    }

    pub fn start_with(tpm: &Swtpm, dir: &KmsdDir, options: KmsdOptions) -> Kmsd {
        match Self::try_start(tpm, dir, options) {
            Ok(kmsd) => kmsd,
            Err(log) => panic!("kmsd did not start:\n{log}"),
        }
    }

    /// Starts kmsd; Err(log) when it exits before serving.
    pub fn try_start(tpm: &Swtpm, dir: &KmsdDir, options: KmsdOptions) -> Result<Kmsd, String> {
        write_config(tpm, dir, &options);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.log())
            .unwrap();
        let child = Command::new(KMSD)
            .arg("--config")
            .arg(dir.config_file())
            .arg("--state-dir")
            .arg(dir.state_dir())
            .arg("--socket")
            .arg(dir.socket())
            .arg("--test-clock-file")
            .arg(dir.clock_file())
            .args(&options.args)
            .env("TSS2_LOG", "all+NONE")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn kmsd");
        let mut kmsd = Kmsd {
            child: Some(child),
            socket: dir.socket(),
            log: dir.log(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = kmsd.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    kmsd.child = None;
                    return Err(format!(
                        "exit status {status}\n{}",
                        std::fs::read_to_string(dir.log()).unwrap_or_default()
                    ));
                }
            }
            if std::os::unix::net::UnixStream::connect(&kmsd.socket).is_ok() {
                return Ok(kmsd);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out\n{}",
                    std::fs::read_to_string(dir.log()).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// Sends SIGHUP (reload the config) and waits until kmsd logged the outcome (a
    /// "configuration reloaded" or "reload failed" line more than before); returns the log
    /// from that reload on.
    pub fn reload(&self) -> String {
        let outcomes = |log: &str| {
            log.matches("configuration reloaded").count() + log.matches("reload failed").count()
        };
        let before = self.log_text();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        poll("kmsd to log the reload", Duration::from_secs(30), || {
            let log = self.log_text();
            (outcomes(&log) > outcomes(&before)).then(|| log[before.len()..].to_string())
        })
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let status = poll(
            "kmsd to exit after SIGTERM",
            Duration::from_secs(30),
            || child.try_wait().ok().flatten(),
        );
        Some(status)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kmsd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// swtpm + kmsd + its dir, for tests that need one of each.
pub struct Fixture {
    pub kmsd: Kmsd,
    pub dir: KmsdDir,
    pub tpm: Swtpm,
}

impl Fixture {
    pub fn start() -> Fixture {
        Self::start_with(KmsdOptions::default())
    }

    pub fn start_with(options: KmsdOptions) -> Fixture {
        let tpm = Swtpm::start();
        let dir = KmsdDir::new();
        let kmsd = Kmsd::start_with(&tpm, &dir, options);
        Fixture { kmsd, dir, tpm }
    }

    pub fn client(&self) -> Client {
        self.kmsd.client()
    }

    /// Restarts kmsd on the same TPM and state dir.
    pub fn restart(&mut self) {
        self.kmsd.stop();
        self.kmsd = Kmsd::start(&self.tpm, &self.dir);
    }
}

/// Calls and expects success.
pub async fn ok(client: &Client, op: &str, body: Value) -> Value {
    match client.call_json(op, &body).await {
        Ok(value) => value,
        Err(err) => panic!("{op} {body} failed: {err}"),
    }
}

/// Calls and expects the named exception; returns the message.
pub async fn fails(client: &Client, op: &str, body: Value, exception: &str) -> String {
    match client.call_json(op, &body).await {
        Ok(value) => panic!("{op} {body} succeeded with {value}, expected {exception}"),
        Err(ClientError::Service {
            exception: got,
            message,
            ..
        }) => {
            assert_eq!(got, exception, "{op}: {message}");
            message
        }
        Err(err) => panic!("{op}: transport error {err}"),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(value: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().expect("base64 string"))
        .expect("valid base64")
}

/// Creates a key and returns its id.
pub async fn create_key(client: &Client) -> String {
    let created = ok(client, "CreateKey", json!({"Description": "test key"})).await;
    created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The contents of every file in a directory and its subdirectories (the audit trail
/// included), with paths relative to it, to prove it was left untouched.
pub fn dir_fingerprint(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, entries: &mut Vec<(String, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            let path = entry.path();
            if kind.is_dir() {
                walk(base, &path, entries);
            } else if kind.is_file() {
                let name = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                entries.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut entries = Vec::new();
    walk(dir, dir, &mut entries);
    entries.sort();
    entries
}
