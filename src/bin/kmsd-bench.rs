//! `kmsd-bench`: the benchmark suite of kmsd (see BENCHMARKS.md and `scripts/bench.sh`).
//!
//! It starts its own kmsd processes against a given TPM (swtpm), and measures:
//! throughput and latency of Encrypt (32 B, 4 KiB), Decrypt and GenerateDataKey at several
//! concurrencies over keep-alive Unix-socket connections, side by side with `GET /ping` (the
//! same server stack without JSON, crypto, audit or metering: the transport ceiling); the
//! CPU time of kmsd and of the load generator; start-up time with 0, 1,000 and 10,000 keys;
//! resident memory once every key has been used; the durable CreateKey rate; the time and
//! size of a `/metrics` scrape; and the alternatives (`systemd-creds`, `tpm2_create` +
//! `tpm2_unseal`) on the same machine and TPM; Sign and Verify (ECC_NIST_P256, RSA_2048,
//! Ed25519, ML-DSA-65) and GenerateMac beside the library's own single-thread rate (aws-lc-rs
//! in process, and `openssl speed` where OpenSSL has the primitive); and fairness: root's Encrypt latency alone and
//! while another uid holds all its connection slots with stalled requests and floods the
//! socket with new connections; the loopback TCP endpoint beside the Unix socket (the same
//! operations over keep-alive connections, each beside its own transport's `GET /ping`), the
//! rate of new connections of each transport, and the in-process cost of the TCP caller
//! lookup (`tcp_peer_owner`, `Caller::resolve_tcp`); and `kmsctl encrypt-file` and
//! `decrypt-file` throughput and peak memory beside `openssl speed` of the same primitives
//! (and the Python `aws-encryption-cli`, when installed). It writes JSON and a Markdown table.
//!
//! Every kmsd it starts is stopped (SIGTERM, then SIGKILL) and waited for, also on errors
//! and on SIGINT/SIGTERM.

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::BodyExt as _;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use kmsd::client::Client;
use serde::Serialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the kmsd benchmark suite and writes JSON and Markdown results.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The kmsd binary (default: `kmsd` next to this program).
    #[arg(long)]
    kmsd: Option<PathBuf>,
    /// TCTI of the TPM to use, e.g. swtpm:host=127.0.0.1,port=2321.
    #[arg(long)]
    tcti: String,
    /// Scratch directory for state dirs, sockets and logs (created; left for inspection).
    #[arg(long)]
    work_dir: PathBuf,
    /// Directory for results.json and results.md.
    #[arg(long, default_value = "bench-results")]
    out_dir: PathBuf,
    /// Short runs and small key counts: checks that everything works, measures little.
    #[arg(long)]
    smoke: bool,
    /// Duration of each throughput run in milliseconds (default 3000, smoke 300).
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Concurrencies (connections) of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64,256")]
    concurrency: Vec<usize>,
    /// Keys for the scale measurements (default 10000, smoke 200).
    #[arg(long)]
    keys: Option<usize>,
    /// Keys for the middle start-up measurement (default 1000, smoke 50).
    #[arg(long)]
    keys_mid: Option<usize>,
    /// Worker threads of the load generator (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Extra top-level TOML lines for every kmsd config (e.g. "[audit]\nenabled = false").
    #[arg(long, default_value = "")]
    kmsd_config: String,
    /// Commit being measured (recorded in the results).
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// Sections to run: disk (append + fdatasync in the work dir), throughput, asymmetric,
    /// scale, alternatives, fairness (fairness needs root: the flooding caller runs as
    /// another uid), tcp (the TCP endpoint beside the Unix socket, connection rates, the
    /// caller lookup), files (kmsctl encrypt-file and decrypt-file).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "disk,throughput,asymmetric,scale,alternatives,fairness,tcp,files"
    )]
    sections: Vec<String>,
    /// Appends (600 bytes + fdatasync) of each file of the disk section (default 2000,
    /// smoke 200).
    #[arg(long)]
    disk_calls: Option<usize>,
    /// The kmsctl binary of the files section (default: `kmsctl` next to the kmsd binary).
    #[arg(long)]
    kmsctl: Option<PathBuf>,
    /// Where the files section writes its files (default: /dev/shm, a tmpfs, when it exists;
    /// else the work dir). It needs about three times --file-mib free.
    #[arg(long)]
    files_dir: Option<PathBuf>,
    /// Size of the big file of the files section in MiB (default 1024, smoke 2).
    #[arg(long)]
    file_mib: Option<u64>,
    /// Uid of the flooding caller of the fairness section.
    #[arg(long, default_value_t = 65534)]
    flood_uid: u32,
    /// Internal: run as the flooding caller against this socket (the fairness section starts
    /// this program so, as `--flood-uid`).
    #[arg(long, hide = true)]
    flood_socket: Option<PathBuf>,
    /// Internal: connections the flooding caller holds with half-sent requests.
    #[arg(long, hide = true, default_value_t = 0)]
    flood_stalled: usize,
    /// Only the throughput operations whose name contains one of these (e.g. "Ping,4 KiB").
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// The audit modes of the throughput section's kmsd runs: fsync (`[audit] durability =
    /// "fsync"`, a reply waits for the record's fdatasync), write (`durability = "write"`,
    /// it waits until the record was written to the kernel), off (`[audit] enabled = false`).
    /// The tcp section repeats its keep-alive runs with the audit off when off is listed.
    #[arg(long, value_delimiter = ',', default_value = "fsync")]
    audit_modes: Vec<String>,
    /// The same as adding `off` to `--audit-modes`.
    #[arg(long)]
    audit_off_too: bool,
    /// Internal: run as the echo server of the throughput section (the transport ceiling) on
    /// this Unix socket.
    #[arg(long, hide = true)]
    echo_socket: Option<PathBuf>,
}

/// An audit mode of `--audit-modes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditMode {
    Fsync,
    Write,
    Off,
}

impl AuditMode {
    /// The modes of `--audit-modes` (and `--audit-off-too`), each once, in the given order.
    fn list(args: &Args) -> Result<Vec<AuditMode>, String> {
        let mut modes = Vec::new();
        let off_too = args.audit_off_too.then_some("off");
        for name in args.audit_modes.iter().map(String::as_str).chain(off_too) {
            let mode = match name.trim() {
                "fsync" => AuditMode::Fsync,
                "write" => AuditMode::Write,
                "off" => AuditMode::Off,
                other => {
                    return Err(format!(
                        "--audit-modes: unknown mode {other:?} (fsync, write, off)"
                    ))
                }
            };
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        Ok(modes)
    }

    /// The config label of the rows.
    fn label(self) -> &'static str {
        match self {
            AuditMode::Fsync => "audit fsync",
            AuditMode::Write => "audit write",
            AuditMode::Off => "audit off",
        }
    }

    /// The kmsd config of the mode.
    fn config(self) -> &'static str {
        match self {
            AuditMode::Fsync => "[audit]\ndurability = \"fsync\"\n",
            AuditMode::Write => "[audit]\ndurability = \"write\"\n",
            AuditMode::Off => "[audit]\nenabled = false\n",
        }
    }
}

/// Everything measured, as written to results.json.
#[derive(Debug, Default, Serialize)]
struct Results {
    meta: Value,
    /// The disk section: append + fdatasync of a plain and of a preallocated file in the
    /// work dir (its filesystem is `meta.work_dir_filesystem`).
    disk: Vec<CallCost>,
    throughput: Vec<LoadResult>,
    startup: Vec<Startup>,
    create_key: Vec<CreateKeyResult>,
    memory: Option<Memory>,
    scrape: Option<Scrape>,
    alternatives: Vec<Alternative>,
    fairness: Vec<LoadResult>,
    asymmetric: Vec<LoadResult>,
    library_ceilings: Vec<LibraryCeiling>,
    /// The tcp section: the same operations over the Unix socket and the TCP endpoint of one
    /// kmsd, keep-alive, each beside `GET /ping` of its own transport.
    tcp: Vec<LoadResult>,
    /// The tcp section: a new connection for every request, per transport.
    connections: Vec<LoadResult>,
    /// The tcp section: the per-connection caller lookups called in this process.
    caller_lookup: Vec<CallCost>,
    /// The files section.
    files: Option<FileSection>,
    targets: Vec<Target>,
}

/// The cost of one call made in this process, many times.
#[derive(Debug, Serialize)]
struct CallCost {
    name: String,
    calls: u64,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    /// Why it was not measured, when it was not.
    note: String,
}

/// `kmsctl encrypt-file` / `decrypt-file` (and `aws-encryption-cli`) beside the primitives.
#[derive(Debug, Default, Serialize)]
struct FileSection {
    /// Where the files were written.
    dir: String,
    /// Its filesystem ("tmpfs", "ext4", ...).
    filesystem: String,
    rows: Vec<FileRun>,
    ceilings: Vec<FileCeiling>,
}

/// One tool run over one file.
#[derive(Debug, Serialize)]
struct FileRun {
    tool: String,
    /// "encrypt" or "decrypt".
    operation: String,
    /// The algorithm suite of the message.
    suite: String,
    /// Plaintext bytes.
    bytes: u64,
    /// Wall time of the process, spawn to exit.
    seconds: f64,
    /// Plaintext MB (10^6 bytes) per second of wall time.
    mb_per_second: f64,
    /// User + system CPU seconds of the process.
    cpu_seconds: Option<f64>,
    /// Plaintext MB per CPU second of the process (comparable with `openssl speed`, which
    /// counts CPU time, on a loaded machine).
    mb_per_cpu_second: Option<f64>,
    /// Peak resident memory of the process (`/usr/bin/time` %M).
    max_rss_kib: Option<u64>,
    /// mb_per_cpu_second / `openssl speed -evp aes-256-gcm` at 16384-byte blocks (both per
    /// CPU second).
    ratio_to_ceiling: Option<f64>,
    /// The output decrypted (or, for decrypt, was) the plaintext, byte for byte.
    ok: bool,
    note: String,
}

/// A primitive alone, one thread, in MB/s.
#[derive(Debug, Serialize)]
struct FileCeiling {
    name: String,
    mb_per_second: Option<f64>,
}

/// What the cryptography library does alone, on one thread, for one kmsd operation.
#[derive(Debug, Serialize)]
struct LibraryCeiling {
    operation: String,
    /// aws-lc-rs (the library kmsd uses), in this process, operations per second.
    aws_lc_per_second: f64,
    /// `openssl speed` for the same primitive, where OpenSSL 3.0 has it.
    openssl_per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct LoadResult {
    /// The kmsd configuration: "default", "audit fsync", "audit write", "audit off", or
    /// "echo ceiling" (the echo server, no kmsd).
    config: String,
    /// "unix" (the Unix socket) or "tcp" (the loopback TCP endpoint).
    transport: String,
    /// Whether every request opened a connection of its own (otherwise: keep-alive).
    new_connection_per_request: bool,
    operation: String,
    concurrency: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    requests_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    max_us: f64,
    /// CPU seconds (user + system) of kmsd during the run.
    kmsd_cpu_seconds: f64,
    /// CPU seconds (user + system) of this load generator during the run.
    client_cpu_seconds: f64,
    kmsd_cpu_us_per_request: f64,
    client_cpu_us_per_request: f64,
    /// requests_per_second / the transport ceiling's at the same concurrency: in the
    /// throughput section the echo server's row of the same request, elsewhere `GET /ping`.
    ratio_to_ceiling: Option<f64>,
    /// requests_per_second / the same server's `GET /ping` at the same concurrency.
    ratio_to_ping: Option<f64>,
    /// Voluntary + involuntary context switches of all threads of the server process
    /// during the run, per request (threads that exit during the run are not counted).
    kmsd_context_switches_per_request: Option<f64>,
    /// Audited rows at concurrency 1 with durability fsync: p50 minus the disk section's
    /// append + fdatasync p50 of a plain file.
    p50_minus_disk_p50_us: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Startup {
    keys: usize,
    /// Spawn to first successful ListKeys, each run.
    runs_ms: Vec<f64>,
    median_ms: f64,
    /// Resident memory right after start-up.
    vm_rss_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
struct CreateKeyResult {
    concurrency: usize,
    keys: usize,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Memory {
    keys: usize,
    keys_used: usize,
    vm_rss_kib: u64,
    vm_hwm_kib: u64,
}

#[derive(Debug, Serialize)]
struct Scrape {
    available: bool,
    note: String,
    keys: usize,
    bytes: usize,
    series: usize,
    runs_ms: Vec<f64>,
    median_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Alternative {
    name: String,
    /// What one operation is.
    operation: String,
    available: bool,
    note: String,
    iterations: usize,
    median_ms: f64,
    p99_ms: f64,
    per_second: f64,
}

#[derive(Debug, Serialize)]
struct Target {
    name: String,
    goal: String,
    measured: String,
    met: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(socket) = &args.flood_socket {
        flood(socket, args.flood_stalled);
    }
    if let Some(socket) = &args.echo_socket {
        return match echo_server(socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("kmsd-bench echo server: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kmsd-bench: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(&args) => result,
            _ = stop_signal() => Err("interrupted".to_string()),
        }
    });
    // Dropping the runtime drops any still-running kmsd guards (kill + wait).
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kmsd-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Settings derived from the arguments.
struct Plan {
    kmsd: PathBuf,
    duration: Duration,
    keys: usize,
    keys_mid: usize,
    startup_runs: usize,
    scrapes: usize,
    alternative_time: Duration,
}

async fn run(args: &Args) -> Result<(), String> {
    let kmsd = match &args.kmsd {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}"))?
            .with_file_name("kmsd"),
    };
    let plan = Plan {
        kmsd,
        duration: Duration::from_millis(args.duration_ms.unwrap_or(if args.smoke {
            300
        } else {
            3000
        })),
        keys: args.keys.unwrap_or(if args.smoke { 200 } else { 10_000 }),
        keys_mid: args.keys_mid.unwrap_or(if args.smoke { 50 } else { 1000 }),
        startup_runs: if args.smoke { 1 } else { 3 },
        scrapes: if args.smoke { 3 } else { 20 },
        alternative_time: Duration::from_millis(if args.smoke { 300 } else { 3000 }),
    };
    if plan.keys_mid > plan.keys {
        return Err("--keys-mid must not exceed --keys".into());
    }
    let modes = AuditMode::list(args)?;
    std::fs::create_dir_all(&args.work_dir).map_err(|e| format!("work dir: {e}"))?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| format!("out dir: {e}"))?;
    let mut results = Results {
        meta: json!({
            "date": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "commit": args.commit,
            "mode": if args.smoke { "smoke" } else { "full" },
            "duration_ms": plan.duration.as_millis() as u64,
            "client_threads": args.client_threads,
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "load_average_before": loadavg(),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "cpu_model": cpu_model(),
            "kmsd_config": args.kmsd_config,
            "sections": args.sections,
            "audit_modes": modes.iter().map(|m| m.label()).collect::<Vec<_>>(),
            "work_dir_filesystem": filesystem_of(&args.work_dir),
        }),
        ..Default::default()
    };

    let section = |name: &str| args.sections.iter().any(|s| s == name);
    if section("disk") {
        eprintln!("== the disk: append + fdatasync in the work dir");
        let calls = args
            .disk_calls
            .unwrap_or(if args.smoke { 200 } else { 2000 });
        results.disk = disk(&args.work_dir, calls);
        for cost in &results.disk {
            print_call_cost(cost);
        }
    }
    if section("throughput") {
        let echo_dir = args.work_dir.join("echo");
        std::fs::create_dir_all(&echo_dir).map_err(|e| format!("{}: {e}", echo_dir.display()))?;
        let echo = EchoServer::start(&echo_dir.join("echo.sock"))?;
        for &mode in &modes {
            eprintln!("== throughput and latency, {}", mode.label());
            throughput(args, &plan, &mut results, mode, &echo).await?;
        }
        drop(echo);
        disk_differences(&mut results);
    }
    if section("asymmetric") {
        eprintln!("== asymmetric and HMAC keys");
        asymmetric(args, &plan, &mut results).await?;
    }
    if section("scale") {
        eprintln!("== start-up, CreateKey, memory, scrape");
        scale(args, &plan, &mut results).await?;
    }
    if section("alternatives") {
        eprintln!("== alternatives");
        results.alternatives = alternatives(args, &plan);
    }
    if section("fairness") {
        eprintln!("== fairness under a flood");
        fairness(args, &plan, &mut results).await?;
    }
    if section("tcp") {
        eprintln!("== the TCP endpoint beside the Unix socket");
        tcp(args, &plan, &mut results).await?;
    }
    if section("files") {
        eprintln!("== file encryption (kmsctl encrypt-file, decrypt-file)");
        files(args, &plan, &mut results).await?;
    }
    if let Value::Object(meta) = &mut results.meta {
        meta.insert("load_average_after".into(), json!(loadavg()));
    }
    results.targets = targets(&results);

    let json_text =
        serde_json::to_string_pretty(&results).map_err(|e| format!("encoding results: {e}"))?;
    let json_path = args.out_dir.join("results.json");
    std::fs::write(&json_path, json_text + "\n")
        .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let md_path = args.out_dir.join("results.md");
    std::fs::write(&md_path, markdown(&results))
        .map_err(|e| format!("{}: {e}", md_path.display()))?;
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// kmsd processes

/// A kmsd child process; stopped and waited for on drop.
struct Kmsd {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Kmsd {
    /// Spawns kmsd on `dir` (state in dir/state) and waits until a ListKeys succeeds.
    /// Returns the process and the time from spawn to that first answer.
    async fn start(
        plan: &Plan,
        args: &Args,
        dir: &Path,
        name: &str,
        extra_config: &str,
    ) -> Result<(Kmsd, Duration), String> {
        Kmsd::start_with_tcp(plan, args, dir, name, extra_config, None).await
    }

    /// [`Kmsd::start`], with the loopback TCP endpoint on `tcp` when given (kmsd binds it
    /// before the Unix socket, so it is up once ListKeys answers).
    async fn start_with_tcp(
        plan: &Plan,
        args: &Args,
        dir: &Path,
        name: &str,
        extra_config: &str,
        tcp: Option<SocketAddr>,
    ) -> Result<(Kmsd, Duration), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("kmsd.sock");
        let config = dir.join("kmsd.toml");
        let text = kmsd_config(args, dir, &socket, tcp, extra_config)?;
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let log = dir.join(format!("{name}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let started = Instant::now();
        let child = Command::new(&plan.kmsd)
            .arg("--config")
            .arg(&config)
            .env("TSS2_LOG", "all+NONE")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", plan.kmsd.display()))?;
        let mut kmsd = Kmsd {
            child: Some(child),
            socket,
            log,
        };
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Some(status) = kmsd
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!(
                    "kmsd exited during start-up ({status}); log {}:\n{}",
                    kmsd.log.display(),
                    std::fs::read_to_string(&kmsd.log).unwrap_or_default()
                ));
            }
            if kmsd.socket.exists() {
                let client = Client::new(&kmsd.socket);
                if client
                    .call_json("ListKeys", &json!({"Limit": 1}))
                    .await
                    .is_ok()
                {
                    return Ok((kmsd, started.elapsed()));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "kmsd did not answer within 120 s; log {}",
                    kmsd.log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM, wait up to 15 s, then SIGKILL; always waits.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("kmsd {pid} did not stop on SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Kmsd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The config of a kmsd of this program: socket, state dir, log level, TCP endpoint and
/// TPM, then `--kmsd-config`, then the section's `extra_config` (each TOML, merged table by
/// table, later keys winning, so that both may name the same table, e.g. `[audit]`).
fn kmsd_config(
    args: &Args,
    dir: &Path,
    socket: &Path,
    tcp: Option<SocketAddr>,
    extra_config: &str,
) -> Result<String, String> {
    let mut config = toml::Table::new();
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    config.insert("socket".into(), path(socket));
    config.insert("state_dir".into(), path(&dir.join("state")));
    config.insert("log_level".into(), "warn".into());
    if let Some(addr) = tcp {
        config.insert("listen_tcp".into(), addr.to_string().into());
    }
    let mut tpm = toml::Table::new();
    tpm.insert("tcti".into(), args.tcti.clone().into());
    config.insert("tpm".into(), tpm.into());
    for (what, text) in [
        ("--kmsd-config", args.kmsd_config.as_str()),
        ("the section's kmsd config", extra_config),
    ] {
        let table: toml::Table = text
            .parse()
            .map_err(|e| format!("{what} {text:?} is not TOML: {e}"))?;
        merge_toml(&mut config, table);
    }
    toml::to_string(&config).map_err(|e| format!("encoding the kmsd config: {e}"))
}

/// Merges `from` into `into`: tables key by key (recursively), other values replaced.
fn merge_toml(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
                merge_toml(mine, theirs);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// utime + stime of a process, in seconds.
fn process_cpu(pid: i32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks as f64 / hz
}

/// CPU seconds (user + system) of this process, all threads.
fn own_cpu() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(usage.user_time()) + t(usage.system_time())
        }
        Err(_) => 0.0,
    }
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    status_field(Path::new(&format!("/proc/{pid}/status")), field)
}

/// The number of a field of a /proc status file (`/proc/<pid>/status`,
/// `/proc/<pid>/task/<tid>/status`), without its unit.
fn status_field(path: &Path, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Voluntary + involuntary context switches of all threads of a process, so far (of the
/// threads alive now); `None` when its /proc entry cannot be read.
fn context_switches(pid: i32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let status = task.path().join("status");
        for field in ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"] {
            total += status_field(&status, field).unwrap_or(0);
        }
    }
    Some(total)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Throughput and latency

/// One kind of request of the load runs.
#[derive(Clone)]
enum Op {
    /// `GET /ping`: the transport ceiling.
    Ping,
    /// A KMS operation with a fixed JSON body.
    Kms { target: &'static str, body: Bytes },
}

impl Op {
    /// The request, with the headers `endpoint` requires.
    fn request(&self, endpoint: &Endpoint) -> Request<Full<Bytes>> {
        let mut builder = match self {
            Op::Ping => Request::get("/ping"),
            Op::Kms { target, .. } => Request::post("/")
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", *target),
        };
        builder = match endpoint {
            Endpoint::Unix(_) => builder.header("host", "kmsd"),
            Endpoint::Tcp(tcp) => {
                let builder = builder.header("host", tcp.host.clone());
                match self {
                    Op::Ping => builder,
                    Op::Kms { .. } => builder
                        .header("x-amz-date", tcp.date.clone())
                        .header("authorization", tcp.authorization.clone()),
                }
            }
        };
        let body = match self {
            Op::Ping => Bytes::new(),
            Op::Kms { body, .. } => body.clone(),
        };
        // The parts above are all valid, so building cannot fail.
        builder
            .body(Full::new(body))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }
}

/// Where the load generator connects.
#[derive(Debug, Clone)]
enum Endpoint {
    /// kmsd's Unix socket.
    Unix(PathBuf),
    /// kmsd's loopback TCP endpoint.
    Tcp(TcpEndpoint),
}

/// A loopback TCP endpoint and the headers its operations need. The `Authorization` header
/// has the SigV4 shape with an access key id kmsd does not know, so kmsd checks only its
/// shape (the kernel names the caller); the generator spends no time signing.
#[derive(Debug, Clone)]
struct TcpEndpoint {
    addr: SocketAddr,
    host: HeaderValue,
    date: HeaderValue,
    authorization: HeaderValue,
}

impl Endpoint {
    fn tcp(addr: SocketAddr) -> Result<Endpoint, String> {
        let now = time::OffsetDateTime::now_utc();
        let day = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let date = format!(
            "{day}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=kmsd/{day}/local/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            "0".repeat(64)
        );
        let value = |text: String| {
            HeaderValue::from_str(&text).map_err(|e| format!("header value {text:?}: {e}"))
        };
        Ok(Endpoint::Tcp(TcpEndpoint {
            addr,
            host: value(addr.to_string())?,
            date: value(date)?,
            authorization: value(authorization)?,
        }))
    }

    /// "unix" or "tcp", as in the results.
    fn transport(&self) -> &'static str {
        match self {
            Endpoint::Unix(_) => "unix",
            Endpoint::Tcp(_) => "tcp",
        }
    }

    /// Opens one HTTP/1.1 connection.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        match self {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("connect {}: {e}", path.display()))?;
                handshake(stream).await
            }
            Endpoint::Tcp(tcp) => {
                let stream = tokio::net::TcpStream::connect(tcp.addr)
                    .await
                    .map_err(|e| format!("connect {}: {e}", tcp.addr))?;
                // As the AWS SDKs do: requests are small, Nagle's algorithm would only delay.
                let _ = stream.set_nodelay(true);
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// The deadline of one request of the load generator (connect, send, whole answer).
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);

/// One connection of the load generator: opened on first use, reopened after an error or
/// [`LoadClient::close`]. The same code serves both transports, so that their figures differ
/// only by the transport.
struct LoadClient {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl LoadClient {
    fn new(endpoint: Endpoint) -> LoadClient {
        LoadClient {
            endpoint,
            sender: None,
        }
    }

    /// Sends `op` and reads the whole answer; returns its status and body.
    async fn send(&mut self, op: &Op) -> Result<(StatusCode, Bytes), String> {
        let request = op.request(&self.endpoint);
        match tokio::time::timeout(REQUEST_DEADLINE, self.exchange(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => {
                self.sender = None;
                Err(err)
            }
            Err(_) => {
                self.sender = None;
                Err(format!("no answer within {} s", REQUEST_DEADLINE.as_secs()))
            }
        }
    }

    /// Sends `op`; true when kmsd answered 200.
    async fn ok(&mut self, op: &Op) -> bool {
        matches!(self.send(op).await, Ok((StatusCode::OK, _)))
    }

    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.endpoint.connect().await?);
        }
        let sender = self.sender.as_mut().ok_or("no connection")?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// Closes the connection (dropping the sender ends its connection task).
    fn close(&mut self) {
        self.sender = None;
    }
}

/// How the connections of a load run are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connections {
    /// One connection per client, kept alive for every request.
    KeepAlive,
    /// A new connection for each request, closed after its answer.
    NewPerRequest,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A new symmetric key of `kmsd` and the symmetric operations of the throughput section
/// (after `GET /ping`, the transport ceiling), as filtered by `--ops`.
async fn symmetric_ops(args: &Args, client: &Client) -> Result<Vec<(String, Op)>, String> {
    let created = client
        .call_json("CreateKey", &json!({"Description": "kmsd-bench"}))
        .await
        .map_err(|e| format!("CreateKey: {e}"))?;
    let key_id = created["KeyMetadata"]["KeyId"]
        .as_str()
        .ok_or("CreateKey returned no KeyId")?
        .to_string();
    let small = b64(&[7u8; 32]);
    let encrypted = client
        .call_json("Encrypt", &json!({"KeyId": key_id, "Plaintext": small}))
        .await
        .map_err(|e| format!("Encrypt: {e}"))?;
    let blob = encrypted["CiphertextBlob"]
        .as_str()
        .ok_or("Encrypt returned no CiphertextBlob")?
        .to_string();
    let body = |value: Value| Bytes::from(value.to_string());
    let ops = vec![
        ("Ping (transport ceiling)".to_string(), Op::Ping),
        (
            "Encrypt 32 B".to_string(),
            Op::Kms {
                target: "TrentService.Encrypt",
                body: body(json!({"KeyId": key_id, "Plaintext": small})),
            },
        ),
        (
            "Encrypt 4 KiB".to_string(),
            Op::Kms {
                target: "TrentService.Encrypt",
                body: body(json!({"KeyId": key_id, "Plaintext": b64(&[9u8; 4096])})),
            },
        ),
        (
            "Decrypt 32 B".to_string(),
            Op::Kms {
                target: "TrentService.Decrypt",
                body: body(json!({"CiphertextBlob": blob})),
            },
        ),
        (
            "GenerateDataKey AES_256".to_string(),
            Op::Kms {
                target: "TrentService.GenerateDataKey",
                body: body(json!({"KeyId": key_id, "KeySpec": "AES_256"})),
            },
        ),
    ];
    Ok(filter_ops(args, ops))
}

/// The operations whose name contains one of `--ops` (all without it).
fn filter_ops(args: &Args, ops: Vec<(String, Op)>) -> Vec<(String, Op)> {
    ops.into_iter()
        .filter(|(name, _)| {
            args.ops.is_empty() || args.ops.iter().any(|o| name.contains(o.as_str()))
        })
        .collect()
}

/// Each request must work before it is timed: sends each op once over each endpoint.
async fn check_ops(endpoints: &[Endpoint], ops: &[(String, Op)]) -> Result<(), String> {
    for endpoint in endpoints {
        let mut client = LoadClient::new(endpoint.clone());
        for (name, op) in ops {
            let (status, body) = client
                .send(op)
                .await
                .map_err(|e| format!("{name} over {}: {e}", endpoint.transport()))?;
            if status != StatusCode::OK {
                return Err(format!(
                    "{name} over {}: HTTP {status}: {}",
                    endpoint.transport(),
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    Ok(())
}

/// Where the ceiling of a row of [`Measure`] is.
#[derive(Clone, Copy)]
enum Ceilings<'a> {
    /// Each Ping row is the ceiling of the rows after it of the same endpoint and
    /// concurrency.
    OwnPing,
    /// The Ping row of these rows of the same transport and concurrency.
    PingOf(&'a [LoadResult]),
    /// The row of these rows (the echo server's) of the same operation and concurrency;
    /// `ratio_to_ping` is against the own Ping row.
    Echo(&'a [LoadResult]),
    /// The rows are the ceiling themselves (the echo server's): ratio 1; `ratio_to_ping`
    /// is against the own Ping row.
    Itself,
}

/// The timed runs of a section: `ops` over each endpoint at each concurrency.
struct Measure<'a> {
    /// The server process (kmsd, or the echo server), for its CPU time and context switches.
    pid: i32,
    endpoints: &'a [Endpoint],
    ops: &'a [(String, Op)],
    concurrencies: &'a [usize],
    /// Each op over each endpoint at 8 connections for this long first (caches, allocator,
    /// page cache of the audit file); zero for none.
    warm_up: Duration,
    duration: Duration,
    connections: Connections,
    /// The kmsd configuration recorded in each row.
    config: &'a str,
    /// Where the ceilings are.
    ceilings: Ceilings<'a>,
}

impl Measure<'_> {
    /// Runs everything, concurrency by concurrency, op by op, each op over every endpoint in
    /// turn (so that the transports' rows of one op are measured next to each other); a Ping
    /// row is the ceiling of the rows of the same endpoint and concurrency after it. Prints
    /// each row.
    async fn run(&self) -> Vec<LoadResult> {
        if !self.warm_up.is_zero() {
            for endpoint in self.endpoints {
                for (_, op) in self.ops {
                    load(self.pid, endpoint, op, 8, self.warm_up, self.connections).await;
                }
            }
        }
        let mut rows = Vec::new();
        for &concurrency in self.concurrencies {
            let mut own_ceilings = std::collections::HashMap::new();
            for (name, op) in self.ops {
                for endpoint in self.endpoints {
                    let mut result = load(
                        self.pid,
                        endpoint,
                        op,
                        concurrency,
                        self.duration,
                        self.connections,
                    )
                    .await;
                    result.operation = name.clone();
                    result.config = self.config.to_string();
                    if matches!(op, Op::Ping) {
                        own_ceilings.insert(endpoint.transport(), result.requests_per_second);
                    }
                    let own_ping = own_ceilings.get(endpoint.transport()).copied();
                    let row_of = |rows: &[LoadResult], ping: bool| {
                        rows.iter()
                            .find(|r| {
                                r.transport == result.transport
                                    && r.concurrency == concurrency
                                    && if ping {
                                        r.operation.starts_with("Ping")
                                    } else {
                                        r.operation == result.operation
                                    }
                            })
                            .map(|r| r.requests_per_second)
                    };
                    let (ceiling, ping) = match self.ceilings {
                        Ceilings::OwnPing => (own_ping, own_ping),
                        Ceilings::PingOf(rows) => {
                            let ping = row_of(rows, true);
                            (ping, ping)
                        }
                        Ceilings::Echo(rows) => (row_of(rows, false), own_ping),
                        Ceilings::Itself => (Some(result.requests_per_second), own_ping),
                    };
                    let ratio = |c: Option<f64>| {
                        c.filter(|c| *c > 0.0)
                            .map(|c| result.requests_per_second / c)
                    };
                    result.ratio_to_ceiling = ratio(ceiling);
                    result.ratio_to_ping = ratio(ping);
                    print_row(&result);
                    rows.push(result);
                }
            }
        }
        rows
    }
}

fn print_row(result: &LoadResult) {
    eprintln!(
        "{:<12} {:<4}{} {:<26} c={:<4} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  p99.9 {:>7.0} µs  ratio {}  errors {}",
        result.config,
        result.transport,
        if result.new_connection_per_request { " new" } else { "" },
        result.operation,
        result.concurrency,
        result.requests_per_second,
        result.p50_us,
        result.p99_us,
        result.p999_us,
        result
            .ratio_to_ceiling
            .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
        result.errors
    );
}

/// The config label of the echo server's rows.
const ECHO_CONFIG: &str = "echo ceiling";

/// One kmsd of the throughput section, in audit mode `mode`: the symmetric operations at
/// each concurrency, each beside the echo server's row of the same request (measured first,
/// with the first mode's requests) and kmsd's own `GET /ping`.
async fn throughput(
    args: &Args,
    plan: &Plan,
    results: &mut Results,
    mode: AuditMode,
    echo: &EchoServer,
) -> Result<(), String> {
    let config = mode.label();
    let dir = args
        .work_dir
        .join(format!("throughput-{}", config.replace(' ', "-")));
    let kmsd = match Kmsd::start(plan, args, &dir, "kmsd", mode.config()).await {
        Ok((kmsd, _)) => kmsd,
        // A kmsd from before `[audit] durability`: fsync is what it always does, and write
        // it cannot do.
        Err(err) if mode != AuditMode::Off && err.contains("durability") => {
            let note = format!(
                "{config}: this kmsd rejects `[audit] durability`: {}",
                err.lines()
                    .rev()
                    .find(|l| l.contains("durability"))
                    .unwrap_or_default()
                    .trim()
            );
            eprintln!("{note}");
            if let Value::Object(meta) = &mut results.meta {
                if let Value::Array(notes) = meta.entry("notes").or_insert(json!([])) {
                    notes.push(json!(if mode == AuditMode::Fsync {
                        format!("{note}; measured without the key (fsync is its only mode)")
                    } else {
                        format!("{note}; not measured")
                    }));
                }
            }
            if mode == AuditMode::Write {
                eprintln!("{config}: skipped");
                return Ok(());
            }
            eprintln!("{config}: measured without the key (fsync is its only mode)");
            Kmsd::start(plan, args, &dir, "kmsd", "").await?.0
        }
        Err(err) => return Err(err),
    };
    let ops = symmetric_ops(args, &Client::new(&kmsd.socket)).await?;
    if !results.throughput.iter().any(|r| r.config == ECHO_CONFIG) {
        let endpoints = [Endpoint::Unix(echo.socket.clone())];
        check_ops(&endpoints, &ops).await?;
        let rows = Measure {
            pid: echo.pid(),
            endpoints: &endpoints,
            ops: &ops,
            concurrencies: &args.concurrency,
            warm_up: plan.duration / 4,
            duration: plan.duration,
            connections: Connections::KeepAlive,
            config: ECHO_CONFIG,
            ceilings: Ceilings::Itself,
        }
        .run()
        .await;
        results.throughput.extend(rows);
    }
    let endpoints = [Endpoint::Unix(kmsd.socket.clone())];
    check_ops(&endpoints, &ops).await?;
    let echo_rows: Vec<LoadResult> = results
        .throughput
        .iter()
        .filter(|r| r.config == ECHO_CONFIG)
        .cloned()
        .collect();
    let rows = Measure {
        pid: kmsd.pid(),
        endpoints: &endpoints,
        ops: &ops,
        concurrencies: &args.concurrency,
        warm_up: plan.duration / 4,
        duration: plan.duration,
        connections: Connections::KeepAlive,
        config,
        ceilings: Ceilings::Echo(&echo_rows),
    }
    .run()
    .await;
    results.throughput.extend(rows);
    drop(kmsd);
    Ok(())
}

/// Sets `p50_minus_disk_p50_us` of the audited fsync rows at concurrency 1.
fn disk_differences(results: &mut Results) {
    let Some(disk_p50) = results
        .disk
        .iter()
        .find(|c| c.name == DISK_PLAIN && c.note.is_empty())
        .map(|c| c.p50_us)
    else {
        return;
    };
    for row in &mut results.throughput {
        if row.config == AuditMode::Fsync.label()
            && row.concurrency == 1
            && symmetric(&row.operation)
        {
            row.p50_minus_disk_p50_us = Some(row.p50_us - disk_p50);
        }
    }
}

/// Runs `concurrency` clients, each sending `op` over `endpoint` back to back, for
/// `duration`: over one kept-alive connection each, or a new connection per request.
async fn load(
    pid: i32,
    endpoint: &Endpoint,
    op: &Op,
    concurrency: usize,
    duration: Duration,
    connections: Connections,
) -> LoadResult {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let barrier = Arc::clone(&barrier);
        let mut client = LoadClient::new(endpoint.clone());
        tasks.spawn(async move {
            let mut histogram = latency_histogram();
            let mut errors = 0u64;
            // Open the connection before the clock starts (and check the request works).
            if !client.ok(&op).await {
                errors += 1;
            }
            if connections == Connections::NewPerRequest {
                client.close();
            }
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                if client.ok(&op).await {
                    let _ = histogram.record(sent.elapsed().as_nanos().max(1) as u64);
                } else {
                    errors += 1;
                }
                if connections == Connections::NewPerRequest {
                    client.close();
                }
            }
            (histogram, errors)
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let switches = context_switches(pid);
    let kmsd_cpu = process_cpu(pid);
    let client_cpu = own_cpu();
    let mut histogram = latency_histogram();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((h, e)) => {
                let _ = histogram.add(&h);
                errors += e;
            }
            Err(_) => errors += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let kmsd_cpu = process_cpu(pid) - kmsd_cpu;
    let client_cpu = own_cpu() - client_cpu;
    let switches = switches
        .zip(context_switches(pid))
        .map(|(before, after)| after.saturating_sub(before));
    let requests = histogram.len();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let per_request = |cpu: f64| {
        if requests == 0 {
            0.0
        } else {
            cpu * 1e6 / requests as f64
        }
    };
    LoadResult {
        config: String::new(),
        transport: endpoint.transport().to_string(),
        new_connection_per_request: connections == Connections::NewPerRequest,
        operation: String::new(),
        concurrency,
        requests,
        errors,
        seconds,
        requests_per_second: requests as f64 / seconds,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        max_us: histogram.max() as f64 / 1000.0,
        kmsd_cpu_seconds: kmsd_cpu,
        client_cpu_seconds: client_cpu,
        kmsd_cpu_us_per_request: per_request(kmsd_cpu),
        client_cpu_us_per_request: per_request(client_cpu),
        ratio_to_ceiling: None,
        ratio_to_ping: None,
        kmsd_context_switches_per_request: switches
            .filter(|_| requests > 0)
            .map(|n| n as f64 / requests as f64),
        p50_minus_disk_p50_us: None,
    }
}

// ---------------------------------------------------------------------------------------
// Asymmetric and HMAC keys

/// The keys of the asymmetric section: (name, KeySpec, KeyUsage, algorithm).
const ASYMMETRIC_KEYS: &[(&str, &str, &str, &str)] = &[
    (
        "ECC_NIST_P256",
        "ECC_NIST_P256",
        "SIGN_VERIFY",
        "ECDSA_SHA_256",
    ),
    ("RSA_2048", "RSA_2048", "SIGN_VERIFY", "RSASSA_PSS_SHA_256"),
    (
        "Ed25519",
        "ECC_NIST_EDWARDS25519",
        "SIGN_VERIFY",
        "ED25519_SHA_512",
    ),
    ("ML_DSA_65", "ML_DSA_65", "SIGN_VERIFY", "ML_DSA_SHAKE_256"),
];

/// Sign and Verify of a 32-byte message with each key of [`ASYMMETRIC_KEYS`], Sign with
/// TPM-resident P-256 and RSA 2048 keys, and GenerateMac with an HMAC_256 key, at 1, 8 and
/// 64 connections, beside `GET /ping` of the same kmsd; then each primitive alone in this
/// process (aws-lc-rs) and in `openssl speed`.
async fn asymmetric(args: &Args, plan: &Plan, results: &mut Results) -> Result<(), String> {
    let dir = args.work_dir.join("asymmetric");
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "kmsd", "").await?;
    let client = Client::new(&kmsd.socket);
    let message = b64(&[7u8; 32]);
    let body = |value: Value| Bytes::from(value.to_string());
    let mut ops: Vec<(String, Op)> = vec![("Ping (transport ceiling)".into(), Op::Ping)];
    for (name, spec, usage, algorithm) in ASYMMETRIC_KEYS {
        let created = client
            .call_json("CreateKey", &json!({"KeySpec": spec, "KeyUsage": usage}))
            .await
            .map_err(|e| format!("CreateKey {spec}: {e}"))?;
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .ok_or("CreateKey returned no KeyId")?
            .to_string();
        let signed = client
            .call_json(
                "Sign",
                &json!({"KeyId": key_id, "Message": message, "SigningAlgorithm": algorithm}),
            )
            .await
            .map_err(|e| format!("Sign {spec}: {e}"))?;
        let signature = signed["Signature"]
            .as_str()
            .ok_or("Sign returned no Signature")?;
        ops.push((
            format!("Sign {name}"),
            Op::Kms {
                target: "TrentService.Sign",
                body: body(
                    json!({"KeyId": key_id, "Message": message, "SigningAlgorithm": algorithm}),
                ),
            },
        ));
        ops.push((
            format!("Verify {name}"),
            Op::Kms {
                target: "TrentService.Verify",
                body: body(
                    json!({"KeyId": key_id, "Message": message, "Signature": signature,
                                  "SigningAlgorithm": algorithm}),
                ),
            },
        ));
    }
    // The same signatures from keys held in the TPM (custom key store cks-tpm).
    for (name, spec, algorithm) in [
        ("ECC_NIST_P256 (TPM)", "ECC_NIST_P256", "ECDSA_SHA_256"),
        ("RSA_2048 (TPM)", "RSA_2048", "RSASSA_PSS_SHA_256"),
    ] {
        let created = client
            .call_json(
                "CreateKey",
                &json!({"KeySpec": spec, "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-tpm"}),
            )
            .await
            .map_err(|e| format!("CreateKey {name}: {e}"))?;
        let key_id = created["KeyMetadata"]["KeyId"]
            .as_str()
            .ok_or("CreateKey returned no KeyId")?
            .to_string();
        ops.push((
            format!("Sign {name}"),
            Op::Kms {
                target: "TrentService.Sign",
                body: body(
                    json!({"KeyId": key_id, "Message": message, "SigningAlgorithm": algorithm}),
                ),
            },
        ));
    }
    let created = client
        .call_json(
            "CreateKey",
            &json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
        )
        .await
        .map_err(|e| format!("CreateKey HMAC_256: {e}"))?;
    let hmac_key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .ok_or("CreateKey returned no KeyId")?
        .to_string();
    ops.push((
        "GenerateMac HMAC_256".into(),
        Op::Kms {
            target: "TrentService.GenerateMac",
            body: body(
                json!({"KeyId": hmac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
            ),
        },
    ));
    let ops = filter_ops(args, ops);
    let endpoints = [Endpoint::Unix(kmsd.socket.clone())];
    check_ops(&endpoints, &ops).await?;
    let concurrencies: Vec<usize> = args
        .concurrency
        .iter()
        .copied()
        .filter(|c| *c <= 64)
        .collect();
    let rows = Measure {
        pid: kmsd.pid(),
        endpoints: &endpoints,
        ops: &ops,
        concurrencies: &concurrencies,
        warm_up: plan.duration / 8,
        duration: plan.duration,
        connections: Connections::KeepAlive,
        config: "default",
        ceilings: Ceilings::OwnPing,
    }
    .run()
    .await;
    results.asymmetric.extend(rows);
    drop(kmsd);
    results.library_ceilings = library_ceilings(plan.duration.min(Duration::from_secs(1)));
    for ceiling in &results.library_ceilings {
        eprintln!(
            "library {:<26} aws-lc-rs {:>9.0}/s  openssl speed {}",
            ceiling.operation,
            ceiling.aws_lc_per_second,
            ceiling
                .openssl_per_second
                .map_or("-".into(), |v| format!("{v:.0}/s"))
        );
    }
    Ok(())
}

/// Operations per second of `work` on this thread for about `time`.
fn rate(time: Duration, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < time {
        for _ in 0..8 {
            work();
        }
        done += 8;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// This thread's CPU time in seconds (0 when the clock cannot be read).
fn thread_cpu() -> f64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// Operations per CPU second of this thread of `work`, for about `time` of CPU: what
/// `openssl speed` reports (user CPU time), so both hold on a loaded machine.
fn rate_per_cpu_second(time: Duration, mut work: impl FnMut()) -> f64 {
    let started = thread_cpu();
    let mut done = 0u64;
    let mut spent = 0.0;
    while spent < time.as_secs_f64() {
        for _ in 0..8 {
            work();
        }
        done += 8;
        spent = thread_cpu() - started;
    }
    done as f64 / spent
}

/// The library ceilings of the asymmetric section's operations.
fn library_ceilings(time: Duration) -> Vec<LibraryCeiling> {
    use kmsd::crypto::asymmetric::{generate_hmac_key, generate_private_key, HmacKey, PrivateKey};
    use kmsd::crypto::keyspec::{KeySpec, KeyUsage, MessageType, SigningAlgorithm};
    let openssl = openssl_speed();
    let message = [7u8; 32];
    let mut ceilings = Vec::new();
    for (name, spec, _, algorithm) in ASYMMETRIC_KEYS {
        let (Some(spec), Some(algorithm)) =
            (KeySpec::parse(spec), SigningAlgorithm::parse(algorithm))
        else {
            continue;
        };
        let Ok(der) = generate_private_key(spec) else {
            continue;
        };
        let Ok(key) = PrivateKey::from_pkcs8(spec, KeyUsage::SignVerify, &der) else {
            continue;
        };
        let Ok(signature) = key.sign(spec, algorithm, MessageType::Raw, &message) else {
            continue;
        };
        let sign = rate(time, || {
            let _ = key.sign(spec, algorithm, MessageType::Raw, &message);
        });
        let verify = rate(time, || {
            let _ = key.verify(spec, algorithm, MessageType::Raw, &message, &signature);
        });
        let (openssl_sign, openssl_verify) = openssl
            .get(*name)
            .map_or((None, None), |(s, v)| (Some(*s), Some(*v)));
        ceilings.push(LibraryCeiling {
            operation: format!("Sign {name}"),
            aws_lc_per_second: sign,
            openssl_per_second: openssl_sign,
        });
        ceilings.push(LibraryCeiling {
            operation: format!("Verify {name}"),
            aws_lc_per_second: verify,
            openssl_per_second: openssl_verify,
        });
    }
    // The symmetric path's primitive in both libraries (should kmsd move Encrypt to AWS-LC?):
    // AES-256-GCM of a 32-byte plaintext, and kmsd's whole per-message work (HKDF-SHA256 of
    // the message key, then AES-256-GCM, RustCrypto).
    {
        use aes_gcm::aead::{Aead, KeyInit};
        let key = [3u8; 32];
        let nonce = [4u8; 12];
        let rust = aes_gcm::Aes256Gcm::new(&key.into());
        ceilings.push(LibraryCeiling {
            operation: "AES-256-GCM seal 32 B, RustCrypto aes-gcm (kmsd's)".into(),
            aws_lc_per_second: rate(time, || {
                let _ = rust.encrypt((&nonce).into(), &message[..]);
            }),
            openssl_per_second: None,
        });
        if let Ok(unbound) = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key) {
            let sealing = aws_lc_rs::aead::LessSafeKey::new(unbound);
            ceilings.push(LibraryCeiling {
                operation: "AES-256-GCM seal 32 B, aws-lc-rs".into(),
                aws_lc_per_second: rate(time, || {
                    let mut in_out = message.to_vec();
                    let _ = sealing.seal_in_place_append_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                        aws_lc_rs::aead::Aad::empty(),
                        &mut in_out,
                    );
                }),
                openssl_per_second: None,
            });
        }
        let material = kmsd::crypto::KeyMaterial::from_bytes(&key);
        let context = kmsd::crypto::EncryptionContext::default();
        let header = kmsd::crypto::CiphertextHeader {
            key_id: [1u8; 16],
            material_version: 1,
        };
        ceilings.push(LibraryCeiling {
            operation: "kmsd Encrypt 32 B crypto (HKDF + AES-256-GCM + nonce)".into(),
            aws_lc_per_second: rate(time, || {
                let _ = kmsd::crypto::encrypt(&material, header, &context, &message);
            }),
            openssl_per_second: None,
        });
    }
    if let Ok(bytes) = generate_hmac_key(KeySpec::Hmac256) {
        if let Ok(key) = HmacKey::from_bytes(KeySpec::Hmac256, &bytes) {
            ceilings.push(LibraryCeiling {
                operation: "GenerateMac HMAC_256".into(),
                aws_lc_per_second: rate(time, || {
                    let _ = key.mac(&message);
                }),
                openssl_per_second: openssl.get("HMAC_256").map(|(mac, _)| *mac),
            });
        }
    }
    ceilings
}

/// `openssl speed` single-process rates: name → (sign or MAC per second, verify per second).
fn openssl_speed() -> std::collections::HashMap<&'static str, (f64, f64)> {
    let mut rates = std::collections::HashMap::new();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .arg("speed")
            .args(["-seconds", "1", "-mr"])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let number = |text: &str| text.trim().parse::<f64>().ok();
    for line in run(&["ecdsap256", "rsa2048", "ed25519"]).lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            ["+F2", _, "2048", sign, verify] => {
                if let (Some(s), Some(v)) = (number(sign), number(verify)) {
                    rates.insert("RSA_2048", (s, v));
                }
            }
            ["+F4", _, "256", sign, verify] => {
                if let (Some(s), Some(v)) = (number(sign), number(verify)) {
                    rates.insert("ECC_NIST_P256", (s, v));
                }
            }
            ["+F6", _, _, "Ed25519", sign, verify] => {
                if let (Some(s), Some(v)) = (number(sign), number(verify)) {
                    rates.insert("Ed25519", (s, v));
                }
            }
            _ => {}
        }
    }
    // HMAC-SHA256 over 16-byte blocks (the smallest OpenSSL times): bytes/s ÷ 16 = MACs/s of
    // messages at most that long, an upper bound for kmsd's 32-byte messages.
    for line in run(&["-hmac", "sha256"]).lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if let ["+F", _, _, sixteen, ..] = fields.as_slice() {
            if let Some(bytes) = number(sixteen) {
                rates.insert("HMAC_256", (bytes / 16.0, 0.0));
            }
        }
    }
    rates
}

// ---------------------------------------------------------------------------------------
// Fairness

/// Connection slots per uid in the fairness section; the flooding uid holds all of them.
const FAIRNESS_SLOTS_PER_UID: usize = 24;

/// Root's Encrypt 32 B at concurrency 1 and 8, alone and then while `--flood-uid` holds all
/// its connection slots with half-sent requests and opens new connections without pause
/// (each refused with ThrottlingException). Needs root; skipped otherwise.
async fn fairness(args: &Args, plan: &Plan, results: &mut Results) -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("fairness: not root (the flooding caller runs as another uid); skipped");
        return Ok(());
    }
    // The flooding uid must reach the socket: a directory of its own under the system's
    // temporary directory (the work dir may sit in a private one), removed afterwards.
    let dir = std::env::temp_dir().join(format!("kmsd-bench-fairness-{}", std::process::id()));
    let _remove = RemoveOnDrop(dir.clone());
    let limits = format!(
        "[limits]\nmax_connections = 64\nmax_connections_per_uid = {FAIRNESS_SLOTS_PER_UID}\nheader_timeout_secs = 60\n"
    );
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "kmsd", &limits).await?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&kmsd.socket, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| format!("{}: {e}", kmsd.socket.display()))?;
    let client = Client::new(&kmsd.socket);
    let created = client
        .call_json("CreateKey", &json!({"Description": "kmsd-bench fairness"}))
        .await
        .map_err(|e| format!("CreateKey: {e}"))?;
    let key_id = created["KeyMetadata"]["KeyId"]
        .as_str()
        .ok_or("CreateKey returned no KeyId")?
        .to_string();
    let op = Op::Kms {
        target: "TrentService.Encrypt",
        body: Bytes::from(json!({"KeyId": key_id, "Plaintext": b64(&[7u8; 32])}).to_string()),
    };
    let endpoint = Endpoint::Unix(kmsd.socket.clone());
    load(
        kmsd.pid(),
        &endpoint,
        &op,
        8,
        plan.duration / 4,
        Connections::KeepAlive,
    )
    .await;
    let flooded_config = format!(
        "uid {} floods ({FAIRNESS_SLOTS_PER_UID} stalled)",
        args.flood_uid
    );
    for concurrency in [1, 8] {
        let mut alone = load(
            kmsd.pid(),
            &endpoint,
            &op,
            concurrency,
            plan.duration,
            Connections::KeepAlive,
        )
        .await;
        alone.config = "alone".into();
        alone.operation = "Encrypt 32 B".into();
        let flooder = Flooder::start(args.flood_uid, &kmsd.socket, FAIRNESS_SLOTS_PER_UID)?;
        let mut flooded = load(
            kmsd.pid(),
            &endpoint,
            &op,
            concurrency,
            plan.duration,
            Connections::KeepAlive,
        )
        .await;
        let flood_connections = flooder.stop();
        flooded.config = flooded_config.clone();
        flooded.operation = "Encrypt 32 B".into();
        flooded.ratio_to_ceiling = Some(flooded.p99_us / alone.p99_us.max(1.0));
        for result in [&alone, &flooded] {
            eprintln!(
                "{:<32} c={:<3} {:>7.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                result.config,
                concurrency,
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.errors
            );
        }
        eprintln!("  the flooding uid opened {flood_connections} connections meanwhile");
        results.fairness.push(alone);
        results.fairness.push(flooded);
    }
    drop(kmsd);
    Ok(())
}

/// A directory removed (with what it holds) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed (SIGKILL) and waited for on drop.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> i32 {
        self.0.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// This program running as the flooding caller; killed and waited for on drop.
struct Flooder {
    child: ChildGuard,
    /// The connection count the flooder last reported.
    opened: Arc<std::sync::atomic::AtomicU64>,
}

impl Flooder {
    fn start(uid: u32, socket: &Path, stalled: usize) -> Result<Flooder, String> {
        use std::io::BufRead as _;
        use std::os::unix::process::CommandExt as _;
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut child = Command::new(program)
            .arg("--tcti=unused")
            .arg("--work-dir=/nonexistent")
            .arg("--flood-socket")
            .arg(socket)
            .arg(format!("--flood-stalled={stalled}"))
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the flooding caller: {e}"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout of the flooding caller")?;
        let opened = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let flooder = Flooder {
            child: ChildGuard(Some(child)),
            opened: Arc::clone(&opened),
        };
        // READY once every stalled connection is open (EOF if it died), then its counts.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = ready_tx.send(first);
            for line in lines.map_while(Result::ok) {
                if let Some(count) = line.strip_prefix("opened ").and_then(|n| n.parse().ok()) {
                    opened.store(count, Ordering::Relaxed);
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("READY") => Ok(flooder),
            Ok(line) => {
                flooder.stop();
                Err(format!("the flooding caller did not get ready: {line:?}"))
            }
            Err(_) => {
                flooder.stop();
                Err("the flooding caller did not get ready within 30 s".into())
            }
        }
    }

    /// Stops the flooder; returns how many connections it opened (from its last report).
    fn stop(mut self) -> u64 {
        self.child.kill();
        self.opened.load(Ordering::Relaxed)
    }
}

/// The flooding caller (`--flood-socket`): holds `stalled` connections with half-sent
/// request heads, prints READY, then opens connections and sends ListKeys without pause
/// until it is killed, printing its connection count every 10.
fn flood(socket: &Path, stalled: usize) -> ! {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;
    let mut held = Vec::new();
    for _ in 0..stalled {
        match UnixStream::connect(socket) {
            Ok(mut stream) => {
                let _ = stream.write_all(b"POST / HTTP/1.1\r\nHost: kmsd\r\n");
                held.push(stream);
            }
            Err(err) => {
                eprintln!("flood: cannot connect to {}: {err}", socket.display());
                std::process::exit(1);
            }
        }
    }
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "READY").and_then(|()| stdout.flush());
    let mut opened = 0u64;
    let mut answer = [0u8; 4096];
    loop {
        if let Ok(mut stream) = UnixStream::connect(socket) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.write_all(
                b"POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}",
            );
            let _ = stream.read(&mut answer);
        }
        opened += 1;
        if opened.is_multiple_of(10) {
            let _ = writeln!(stdout, "opened {opened}").and_then(|()| stdout.flush());
        }
    }
}

// ---------------------------------------------------------------------------------------
// The echo server: the transport ceiling of the throughput section

/// The body of every answer of the echo server.
const ECHO_BODY: &[u8] = br#"{"KeyId":"echo"}"#;

/// This program running as the echo server (`--echo-socket`); killed and waited for on drop.
struct EchoServer {
    child: ChildGuard,
    socket: PathBuf,
}

impl EchoServer {
    /// Starts it on `socket` and waits until it accepts connections.
    fn start(socket: &Path) -> Result<EchoServer, String> {
        let program =
            std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let child = Command::new(program)
            .arg("--tcti=unused")
            .arg("--work-dir=/nonexistent")
            .arg("--echo-socket")
            .arg(socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the echo server: {e}"))?;
        let mut server = EchoServer {
            child: ChildGuard(Some(child)),
            socket: socket.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.exited() {
                return Err(format!("the echo server exited during start-up ({status})"));
            }
            // It binds the socket anew (removing a stale one first), so a connect that
            // works is to this server.
            if std::os::unix::net::UnixStream::connect(&server.socket).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("the echo server did not listen within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn pid(&self) -> i32 {
        self.child.pid()
    }
}

/// The echo server (`--echo-socket`): hyper HTTP/1.1 with keep-alive on a Unix socket, on
/// a 2-worker runtime; answers every request, once its body is read, with 200 and
/// [`ECHO_BODY`]. No JSON parsing, crypto, audit or metering: what the transport alone costs.
/// Runs until it is killed.
fn echo_server(socket: &Path) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)
            .map_err(|e| format!("bind {}: {e}", socket.display()))?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors and the like: wait for connections to close.
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(stream),
                        hyper::service::service_fn(echo_answer),
                    )
                    .await;
            });
        }
    })
}

async fn echo_answer(
    request: Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    request.into_body().collect().await?;
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(ECHO_BODY)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// The disk: append + fdatasync in the work dir

/// The disk row of a plain file.
const DISK_PLAIN: &str = "append 600 B + fdatasync, plain file";
/// The disk row of a preallocated file.
const DISK_PREALLOCATED: &str =
    "append 600 B + fdatasync, file preallocated to 64 MiB (FALLOC_FL_KEEP_SIZE)";
/// The disk row of a file whose zeros are overwritten (what kmsd's trail does).
const DISK_ZEROS: &str =
    "write 600 B over zeros written ahead + fdatasync (kmsd's audit trail, preallocate_bytes)";

/// How the file of a disk row is prepared.
#[derive(Clone, Copy, PartialEq)]
enum DiskFile {
    Plain,
    KeepSize,
    Zeros,
}

/// The disk's own append + fdatasync latency in `dir` (the filesystem of kmsd's state and
/// audit dirs): a new file, `calls` appends of a 600-byte line, each followed by
/// fdatasync; for a plain file, for a file preallocated with
/// `fallocate(FALLOC_FL_KEEP_SIZE)` to 64 MiB first, and for a file holding 64 MiB of
/// zeros that the lines overwrite (its size never changes).
fn disk(dir: &Path, calls: usize) -> Vec<CallCost> {
    vec![
        disk_appends(dir, DISK_PLAIN, calls, DiskFile::Plain),
        disk_appends(dir, DISK_PREALLOCATED, calls, DiskFile::KeepSize),
        disk_appends(dir, DISK_ZEROS, calls, DiskFile::Zeros),
    ]
}

fn disk_appends(dir: &Path, name: &str, calls: usize, kind: DiskFile) -> CallCost {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join(match kind {
        DiskFile::Plain => "disk-plain.log",
        DiskFile::KeepSize => "disk-preallocated.log",
        DiskFile::Zeros => "disk-zeros.log",
    });
    let _ = std::fs::remove_file(&path);
    let mut histogram = latency_histogram();
    let mut appends = || -> Result<(), String> {
        let at = |e: std::io::Error| format!("{}: {e}", path.display());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(at)?;
        match kind {
            DiskFile::Plain => {}
            DiskFile::KeepSize => {
                use nix::fcntl::{fallocate, FallocateFlags};
                fallocate(&file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, 64 << 20)
                    .map_err(|e| format!("fallocate {}: {e}", path.display()))?;
            }
            DiskFile::Zeros => {
                let zeros = vec![0u8; 1 << 20];
                for mib in 0..64u64 {
                    file.write_all_at(&zeros, mib << 20).map_err(at)?;
                }
            }
        }
        // The new inode (and its extents, and the zeros) on disk before the clock starts.
        file.sync_all().map_err(at)?;
        let mut line = vec![b'x'; 599];
        line.push(b'\n');
        let mut offset = 0u64;
        for _ in 0..calls {
            let began = Instant::now();
            file.write_all_at(&line, offset).map_err(at)?;
            file.sync_data().map_err(at)?;
            let _ = histogram.record(began.elapsed().as_nanos().max(1) as u64);
            offset += line.len() as u64;
        }
        Ok(())
    };
    let note = appends().err().unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    call_cost_of(name, &histogram, note)
}

// ---------------------------------------------------------------------------------------
// Start-up, CreateKey, memory, scrape

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

async fn measure_startup(
    plan: &Plan,
    args: &Args,
    dir: &Path,
    keys: usize,
) -> Result<Startup, String> {
    let mut runs = Vec::new();
    let mut rss = None;
    for run in 0..plan.startup_runs {
        let (kmsd, took) = Kmsd::start(plan, args, dir, &format!("start-{keys}-{run}"), "").await?;
        runs.push(took.as_secs_f64() * 1000.0);
        rss = proc_status_kib(kmsd.pid(), "VmRSS");
        drop(kmsd);
    }
    let result = Startup {
        keys,
        median_ms: median(&runs),
        runs_ms: runs,
        vm_rss_kib: rss,
    };
    eprintln!(
        "start-up with {keys} keys: {:.1} ms (runs {:?})",
        result.median_ms, result.runs_ms
    );
    Ok(result)
}

/// Creates `count` keys over `concurrency` connections; returns their ids and the rate.
async fn create_keys(
    kmsd: &Kmsd,
    count: usize,
    concurrency: usize,
) -> (Vec<String>, CreateKeyResult) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..concurrency.max(1) {
        let socket = kmsd.socket.clone();
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let client = Client::new(socket);
            let mut histogram = latency_histogram();
            let mut ids = Vec::new();
            let mut errors = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let sent = Instant::now();
                match client
                    .call_json("CreateKey", &json!({"Description": "kmsd-bench scale"}))
                    .await
                {
                    Ok(value) => match value["KeyMetadata"]["KeyId"].as_str() {
                        Some(id) => {
                            let _ = histogram.record(sent.elapsed().as_nanos().max(1) as u64);
                            ids.push(id.to_string());
                        }
                        None => errors += 1,
                    },
                    Err(_) => errors += 1,
                }
            }
            (ids, histogram, errors)
        });
    }
    let mut ids = Vec::new();
    let mut histogram = latency_histogram();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, h, e)) = joined {
            ids.extend(i);
            let _ = histogram.add(&h);
            errors += e;
        } else {
            errors += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
    let result = CreateKeyResult {
        concurrency,
        keys: ids.len(),
        seconds,
        per_second: ids.len() as f64 / seconds,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        errors,
    };
    eprintln!(
        "CreateKey c={concurrency}: {} keys in {seconds:.2} s = {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, errors {errors})",
        result.keys, result.per_second, result.p50_ms, result.p99_ms
    );
    (ids, result)
}

async fn scale(args: &Args, plan: &Plan, results: &mut Results) -> Result<(), String> {
    let dir = args.work_dir.join("scale");
    // A new state dir: the first start creates and seals the root key.
    let (kmsd, first) = Kmsd::start(plan, args, &dir, "init", "").await?;
    drop(kmsd);
    if let Value::Object(meta) = &mut results.meta {
        meta.insert(
            "first_start_new_state_dir_ms".into(),
            json!(first.as_secs_f64() * 1000.0),
        );
    }
    results
        .startup
        .push(measure_startup(plan, args, &dir, 0).await?);

    // CreateKey one at a time up to keys_mid.
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "create-1", "").await?;
    let (mut ids, rate) = create_keys(&kmsd, plan.keys_mid, 1).await;
    results.create_key.push(rate);
    drop(kmsd);
    results
        .startup
        .push(measure_startup(plan, args, &dir, ids.len()).await?);

    // The rest with 8 connections.
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "create-8", "").await?;
    let (more, rate) = create_keys(&kmsd, plan.keys - ids.len(), 8).await;
    ids.extend(more);
    results.create_key.push(rate);
    drop(kmsd);
    results
        .startup
        .push(measure_startup(plan, args, &dir, ids.len()).await?);

    // Use every key once, then read the resident memory.
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "use-all", "").await?;
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let socket = kmsd.socket.clone();
        let (ids, next) = (Arc::clone(&ids), Arc::clone(&next));
        tasks.spawn(async move {
            let client = Client::new(socket);
            let mut used = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let request = json!({"KeyId": id, "Plaintext": b64(&[1u8; 32])});
                if client.call_json("Encrypt", &request).await.is_ok() {
                    used += 1;
                }
            }
            used
        });
    }
    let mut used = 0;
    while let Some(joined) = tasks.join_next().await {
        used += joined.unwrap_or(0);
    }
    let memory = Memory {
        keys: ids.len(),
        keys_used: used,
        vm_rss_kib: proc_status_kib(kmsd.pid(), "VmRSS").unwrap_or(0),
        vm_hwm_kib: proc_status_kib(kmsd.pid(), "VmHWM").unwrap_or(0),
    };
    eprintln!(
        "memory with {} keys ({} used): VmRSS {} KiB, VmHWM {} KiB",
        memory.keys, memory.keys_used, memory.vm_rss_kib, memory.vm_hwm_kib
    );
    results.memory = Some(memory);
    results.scrape = Some(scrape(&kmsd, plan, ids.len()).await);
    drop(kmsd);
    Ok(())
}

async fn scrape(kmsd: &Kmsd, plan: &Plan, keys: usize) -> Scrape {
    let client = Client::new(&kmsd.socket);
    let mut runs = Vec::new();
    let mut bytes = 0;
    let mut series = 0;
    let mut note = String::new();
    for _ in 0..plan.scrapes {
        let request = Request::get("/metrics")
            .header("host", "kmsd")
            .body(Full::new(Bytes::new()));
        let Ok(request) = request else { break };
        let started = Instant::now();
        match client.send(request).await {
            Ok(raw) if raw.status == StatusCode::OK => {
                runs.push(started.elapsed().as_secs_f64() * 1000.0);
                bytes = raw.body.len();
                series = raw
                    .body
                    .split(|b| *b == b'\n')
                    .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
                    .count();
            }
            Ok(raw) => {
                note = format!(
                    "GET /metrics answered HTTP {}: {}",
                    raw.status,
                    String::from_utf8_lossy(&raw.body).trim()
                );
                break;
            }
            Err(err) => {
                note = format!("GET /metrics failed: {err}");
                break;
            }
        }
    }
    let available = !runs.is_empty();
    if available {
        eprintln!(
            "scrape with {keys} keys: {bytes} bytes, {series} series, median {:.1} ms",
            median(&runs)
        );
    } else {
        eprintln!("scrape: {note}");
    }
    Scrape {
        available,
        note,
        keys,
        bytes,
        series,
        median_ms: median(&runs),
        max_ms: runs.iter().copied().fold(0.0, f64::max),
        runs_ms: runs,
    }
}

// ---------------------------------------------------------------------------------------
// The alternatives: a process (or several) per operation.

/// Runs `op` (a list of commands making one operation) repeatedly for about `time`, and
/// after each, untimed, `cleanup` (without a resource manager between the tools and swtpm,
/// nothing flushes the sessions and objects a tool leaves in the TPM; the kernel's
/// /dev/tpmrm0 does that on a real host).
fn time_commands(
    name: &str,
    operation: &str,
    time: Duration,
    mut op: impl FnMut() -> Vec<Command>,
    cleanup: &dyn Fn() -> Vec<Command>,
) -> Alternative {
    let mut samples = Vec::new();
    let started = Instant::now();
    let mut note = String::new();
    while started.elapsed() < time || samples.len() < 3 {
        let began = Instant::now();
        for mut command in op() {
            match command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    note = format!(
                        "{:?} failed ({}): {}",
                        command.get_program(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Err(err) => note = format!("cannot run {:?}: {err}", command.get_program()),
            }
            if !note.is_empty() {
                break;
            }
        }
        if !note.is_empty() {
            break;
        }
        samples.push(began.elapsed().as_secs_f64() * 1000.0);
        for mut command in cleanup() {
            let _ = command.stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        if samples.len() >= 10_000 {
            break;
        }
    }
    let available = note.is_empty();
    let mut sorted = samples.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get(((sorted.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    let total: f64 = samples.iter().sum();
    let result = Alternative {
        name: name.to_string(),
        operation: operation.to_string(),
        available,
        note,
        iterations: samples.len(),
        median_ms: median(&samples),
        p99_ms: p99,
        per_second: if total > 0.0 {
            samples.len() as f64 * 1000.0 / total
        } else {
            0.0
        },
    };
    if result.available {
        eprintln!(
            "{name}: {:.2} ms per op ({:.0}/s, {} runs)",
            result.median_ms, result.per_second, result.iterations
        );
    } else {
        eprintln!("{name}: unavailable: {}", result.note);
    }
    result
}

fn alternatives(args: &Args, plan: &Plan) -> Vec<Alternative> {
    let dir = args.work_dir.join("alternatives");
    let mut rows = Vec::new();
    if let Err(err) = std::fs::create_dir_all(&dir) {
        eprintln!("alternatives: {err}");
        return rows;
    }
    let input = dir.join("plain");
    if let Err(err) = std::fs::write(&input, [5u8; 32]) {
        eprintln!("alternatives: {err}");
        return rows;
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let cmd = |program: &str, arguments: &[String]| {
        let mut command = Command::new(program);
        command
            .args(arguments)
            .env("TSS2_LOG", "all+NONE")
            .env("TPM2TOOLS_TCTI", &args.tcti)
            .stdin(Stdio::null());
        command
    };
    let s = |v: &str| v.to_string();
    let time = plan.alternative_time;
    let nothing = || Vec::new();
    let flush = || {
        ["-t", "-l", "-s"]
            .iter()
            .map(|flag| cmd("tpm2_flushcontext", &[s(flag)]))
            .collect::<Vec<_>>()
    };

    // systemd-creds with the host key (/var/lib/systemd/credential.secret).
    let host_encrypt = [
        s("encrypt"),
        s("--with-key=host"),
        s("--name=bench"),
        path("plain"),
        path("host.cred"),
    ];
    rows.push(time_commands(
        "systemd-creds encrypt (host key)",
        "encrypt 32 B",
        time,
        || vec![cmd("systemd-creds", &host_encrypt)],
        &nothing,
    ));
    let host_decrypt = [
        s("decrypt"),
        s("--name=bench"),
        path("host.cred"),
        path("host.out"),
    ];
    if rows.last().is_some_and(|r| r.available) {
        rows.push(time_commands(
            "systemd-creds decrypt (host key)",
            "decrypt 32 B",
            time,
            || vec![cmd("systemd-creds", &host_decrypt)],
            &nothing,
        ));
    }
    // systemd-creds sealed to the same swtpm (TCTI device string), no PCR binding.
    let device = format!("--tpm2-device={}", args.tcti);
    let tpm_encrypt = [
        s("encrypt"),
        s("--with-key=tpm2"),
        device.clone(),
        s("--name=bench"),
        path("plain"),
        path("tpm.cred"),
    ];
    rows.push(time_commands(
        "systemd-creds encrypt (TPM, PCR 7 default)",
        "encrypt 32 B",
        time,
        || vec![cmd("systemd-creds", &tpm_encrypt)],
        &flush,
    ));
    let tpm_decrypt = [
        s("decrypt"),
        device,
        s("--name=bench"),
        path("tpm.cred"),
        path("tpm.out"),
    ];
    if rows.last().is_some_and(|r| r.available) {
        rows.push(time_commands(
            "systemd-creds decrypt (TPM, PCR 7 default)",
            "decrypt 32 B",
            time,
            || vec![cmd("systemd-creds", &tpm_decrypt)],
            &flush,
        ));
    }

    // tpm2-tools: seal under a persistent primary made once, unseal; flush transients.
    const PARENT: &str = "0x81010099";
    let setup = [
        flush(),
        vec![cmd(
            "tpm2_evictcontrol",
            &[s("-Q"), s("-C"), s("o"), s("-c"), s(PARENT)],
        )],
        vec![cmd(
            "tpm2_createprimary",
            &[
                s("-Q"),
                s("-C"),
                s("o"),
                s("-G"),
                s("ecc"),
                s("-c"),
                path("primary.ctx"),
            ],
        )],
        vec![cmd(
            "tpm2_evictcontrol",
            &[
                s("-Q"),
                s("-C"),
                s("o"),
                s("-c"),
                path("primary.ctx"),
                s(PARENT),
            ],
        )],
        vec![cmd("tpm2_flushcontext", &[s("-t")])],
    ];
    let mut setup_note = String::new();
    for (i, mut commands) in setup.into_iter().enumerate() {
        for command in &mut commands {
            match command
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
            {
                // Steps 0 and 1 flush what earlier runs left and may find nothing.
                Ok(out) if out.status.success() || i <= 1 => {}
                Ok(out) => {
                    setup_note = format!(
                        "{:?}: {}",
                        command.get_program(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Err(err) => setup_note = format!("cannot run {:?}: {err}", command.get_program()),
            }
        }
    }
    if setup_note.is_empty() {
        let create = [
            s("-Q"),
            s("-C"),
            s(PARENT),
            s("-i"),
            path("plain"),
            s("-u"),
            path("seal.pub"),
            s("-r"),
            path("seal.priv"),
        ];
        rows.push(time_commands(
            "tpm2_create (seal)",
            "seal 32 B",
            time,
            || vec![cmd("tpm2_create", &create)],
            &flush,
        ));
        let load = [
            s("-Q"),
            s("-C"),
            s(PARENT),
            s("-u"),
            path("seal.pub"),
            s("-r"),
            path("seal.priv"),
            s("-c"),
            path("seal.ctx"),
        ];
        let unseal = [s("-c"), path("seal.ctx"), s("-o"), path("seal.out")];
        if rows.last().is_some_and(|r| r.available) {
            rows.push(time_commands(
                "tpm2_load + tpm2_unseal",
                "unseal 32 B",
                time,
                || vec![cmd("tpm2_load", &load), cmd("tpm2_unseal", &unseal)],
                &flush,
            ));
        }
        let mut cleanup = cmd(
            "tpm2_evictcontrol",
            &[s("-Q"), s("-C"), s("o"), s("-c"), s(PARENT)],
        );
        let _ = cleanup.stdout(Stdio::null()).stderr(Stdio::null()).status();
    } else {
        rows.push(Alternative {
            name: "tpm2_create + tpm2_unseal".into(),
            operation: "seal/unseal 32 B".into(),
            available: false,
            note: setup_note,
            iterations: 0,
            median_ms: 0.0,
            p99_ms: 0.0,
            per_second: 0.0,
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------
// The loopback TCP endpoint beside the Unix socket

/// A loopback port that was free a moment ago (kmsd binds it right after).
fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the port: {e}"))
}

/// One kmsd with its Unix socket and its TCP endpoint: the symmetric operations over both at
/// 1, 8 and 64 keep-alive connections (each beside `GET /ping` of its own transport); then
/// `GET /ping` and Encrypt 32 B with a new connection per request over each; then the
/// caller lookups of a connection, called in this process.
///
/// With `off` in `--audit-modes` (or `--audit-off-too`), the keep-alive runs are repeated by a kmsd with the audit trail
/// off (where the audit fsync does not hide the transport's cost).
async fn tcp(args: &Args, plan: &Plan, results: &mut Results) -> Result<(), String> {
    tcp_pass(args, plan, results, "default", "").await?;
    if AuditMode::list(args)?.contains(&AuditMode::Off) {
        eprintln!("== the TCP endpoint beside the Unix socket, audit off");
        tcp_pass(
            args,
            plan,
            results,
            AuditMode::Off.label(),
            AuditMode::Off.config(),
        )
        .await?;
    }
    Ok(())
}

/// One kmsd of the tcp section; the new-connection runs and the in-process lookups only
/// with the default config.
async fn tcp_pass(
    args: &Args,
    plan: &Plan,
    results: &mut Results,
    config: &str,
    extra_config: &str,
) -> Result<(), String> {
    let dir = args
        .work_dir
        .join(format!("tcp-{}", config.replace(' ', "-")));
    let addr = free_port()?;
    let (kmsd, _) =
        Kmsd::start_with_tcp(plan, args, &dir, "kmsd", extra_config, Some(addr)).await?;
    let ops = symmetric_ops(args, &Client::new(&kmsd.socket)).await?;
    let endpoints = [Endpoint::Unix(kmsd.socket.clone()), Endpoint::tcp(addr)?];
    check_ops(&endpoints, &ops).await?;
    let concurrencies: Vec<usize> = args
        .concurrency
        .iter()
        .copied()
        .filter(|c| *c <= 64)
        .collect();
    // Smoke mode: a third of the usual smoke duration, to stay within a few seconds.
    let duration = if args.smoke {
        plan.duration / 3
    } else {
        plan.duration
    };
    let rows = Measure {
        pid: kmsd.pid(),
        endpoints: &endpoints,
        ops: &ops,
        concurrencies: &concurrencies,
        warm_up: duration / 4,
        duration,
        connections: Connections::KeepAlive,
        config,
        ceilings: Ceilings::OwnPing,
    }
    .run()
    .await;
    results.tcp.extend(rows);
    if config != "default" {
        return Ok(());
    }

    // A new connection per request: what the caller lookup adds to each TCP connection.
    let fresh_ops: Vec<(String, Op)> = ops
        .iter()
        .filter(|(name, _)| name.starts_with("Ping") || name == "Encrypt 32 B")
        .map(|(name, op)| {
            let name = match op {
                Op::Ping => "Ping, new connection each".to_string(),
                Op::Kms { .. } => format!("{name}, new connection each"),
            };
            (name, op.clone())
        })
        .collect();
    let rows = Measure {
        pid: kmsd.pid(),
        endpoints: &endpoints,
        ops: &fresh_ops,
        concurrencies: &[1, 8],
        warm_up: duration / 8,
        duration,
        connections: Connections::NewPerRequest,
        config: "default",
        // Beside the keep-alive ping of the same transport and concurrency.
        ceilings: Ceilings::PingOf(&results.tcp[..]),
    }
    .run()
    .await;
    results.connections.extend(rows);
    drop(kmsd);

    let time = if args.smoke {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(2)
    };
    results.caller_lookup = caller_lookup_costs(time).await;
    for cost in &results.caller_lookup {
        print_call_cost(cost);
    }
    Ok(())
}

/// Calls `call` back to back for about `time` (at least 10 times); the latency of each call.
fn call_cost(name: &str, time: Duration, mut call: impl FnMut() -> Result<(), String>) -> CallCost {
    let mut histogram = latency_histogram();
    let started = Instant::now();
    let mut note = String::new();
    while started.elapsed() < time || histogram.len() < 10 {
        let began = Instant::now();
        if let Err(err) = call() {
            note = err;
            break;
        }
        let _ = histogram.record(began.elapsed().as_nanos().max(1) as u64);
        if histogram.len() >= 1_000_000 {
            break;
        }
    }
    call_cost_of(name, &histogram, note)
}

/// The [`CallCost`] of the calls recorded in `histogram` (nanoseconds).
fn call_cost_of(name: &str, histogram: &Histogram<u64>, note: String) -> CallCost {
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    CallCost {
        name: name.to_string(),
        calls: histogram.len(),
        p50_us: us(0.5),
        p99_us: us(0.99),
        mean_us: histogram.mean() / 1000.0,
        note,
    }
}

/// Prints one [`CallCost`] row.
fn print_call_cost(cost: &CallCost) {
    if cost.note.is_empty() {
        eprintln!(
            "{:<58} p50 {:>7.1} µs  p99 {:>7.1} µs  mean {:>7.1} µs  ({} calls)",
            cost.name, cost.p50_us, cost.p99_us, cost.mean_us, cost.calls
        );
    } else {
        eprintln!("{:<58} not measured: {}", cost.name, cost.note);
    }
}

/// What a TCP connection costs kmsd at accept time, called here against a local listener
/// (kmsd runs each on its blocking pool): `tcp_peer_owner` (one inet_diag netlink exchange),
/// `Caller::resolve_tcp` (NSS: passwd entry and group list), both (`Caller::from_tcp`); the
/// Unix socket's counterpart `Caller::resolve` (`/proc` through a pidfd, NSS); and, for
/// scale, a loopback TCP and a Unix connect + accept.
async fn caller_lookup_costs(time: Duration) -> Vec<CallCost> {
    use kmsd::identity::{tcp_peer_owner, Caller};
    let mut costs = Vec::new();
    let listener = match std::net::TcpListener::bind(("127.0.0.1", 0)) {
        Ok(listener) => listener,
        Err(err) => {
            costs.push(CallCost {
                name: "tcp_peer_owner".into(),
                calls: 0,
                p50_us: 0.0,
                p99_us: 0.0,
                mean_us: 0.0,
                note: format!("cannot bind a loopback port: {err}"),
            });
            return costs;
        }
    };
    let pair = listener.local_addr().and_then(|addr| {
        let client = std::net::TcpStream::connect(addr)?;
        let (server, peer) = listener.accept()?;
        Ok((client, server.local_addr()?, peer, server))
    });
    let fail = |e: String| CallCost {
        name: "tcp_peer_owner".into(),
        calls: 0,
        p50_us: 0.0,
        p99_us: 0.0,
        mean_us: 0.0,
        note: e,
    };
    let (client, local, peer, server) = match pair {
        Ok(pair) => pair,
        Err(err) => {
            costs.push(fail(format!("loopback connection: {err}")));
            return costs;
        }
    };
    let owner = match tcp_peer_owner(local, peer) {
        Ok(owner) => owner,
        Err(err) => {
            costs.push(fail(err.to_string()));
            return costs;
        }
    };
    costs.push(call_cost("tcp_peer_owner (inet_diag lookup)", time, || {
        tcp_peer_owner(local, peer)
            .map(drop)
            .map_err(|e| e.to_string())
    }));
    costs.push(call_cost(
        "Caller::resolve_tcp (NSS: user, groups)",
        time,
        || {
            drop(Caller::resolve_tcp(&owner));
            Ok(())
        },
    ));
    costs.push(call_cost(
        "Caller::from_tcp (both: a TCP connection's lookup)",
        time,
        || {
            Caller::from_tcp(local, peer)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    ));
    drop((client, server));
    // The Unix socket's per-connection lookup, for the same caller (this process).
    match tokio::net::UnixStream::pair().and_then(|(a, b)| Ok((a.peer_cred()?, b))) {
        Ok((cred, _held)) => {
            let (pid, uid, gid) = (cred.pid(), cred.uid(), cred.gid());
            costs.push(call_cost(
                "Caller::resolve (Unix socket: /proc via pidfd, NSS)",
                time,
                || {
                    drop(Caller::resolve(pid, uid, gid));
                    Ok(())
                },
            ));
        }
        Err(err) => costs.push(CallCost {
            name: "Caller::resolve (Unix socket: /proc via pidfd, NSS)".into(),
            calls: 0,
            p50_us: 0.0,
            p99_us: 0.0,
            mean_us: 0.0,
            note: format!("socket pair: {err}"),
        }),
    }
    // The connection itself, for scale.
    if let Ok(addr) = listener.local_addr() {
        costs.push(call_cost(
            "loopback TCP connect + accept + close (no lookup)",
            time,
            || {
                let client = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
                let (server, _) = listener.accept().map_err(|e| e.to_string())?;
                drop((client, server));
                Ok(())
            },
        ));
    }
    let dir = std::env::temp_dir().join(format!("kmsd-bench-unix-{}", std::process::id()));
    let _remove = RemoveOnDrop(dir.clone());
    let path = dir.join("s");
    match std::fs::create_dir_all(&dir).and_then(|()| std::os::unix::net::UnixListener::bind(&path))
    {
        Ok(unix) => costs.push(call_cost(
            "Unix connect + accept + close (no lookup)",
            time,
            || {
                let client =
                    std::os::unix::net::UnixStream::connect(&path).map_err(|e| e.to_string())?;
                let (server, _) = unix.accept().map_err(|e| e.to_string())?;
                drop((client, server));
                Ok(())
            },
        )),
        Err(err) => costs.push(CallCost {
            name: "Unix connect + accept + close (no lookup)".into(),
            calls: 0,
            p50_us: 0.0,
            p99_us: 0.0,
            mean_us: 0.0,
            note: format!("{}: {err}", path.display()),
        }),
    }
    costs
}

// ---------------------------------------------------------------------------------------
// File encryption: kmsctl encrypt-file / decrypt-file

/// Deadline of one file tool run.
const FILE_TOOL_DEADLINE: Duration = Duration::from_secs(900);

/// What one process run took.
struct ToolRun {
    seconds: f64,
    cpu_seconds: Option<f64>,
    max_rss_kib: Option<u64>,
}

/// Runs `program args` under `/usr/bin/time` (for its CPU time and peak RSS, when that is
/// installed), within [`FILE_TOOL_DEADLINE`]; killed and waited for when it overruns.
fn run_tool(
    program: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, String)],
    report: &Path,
) -> Result<ToolRun, String> {
    let gnu_time = Path::new("/usr/bin/time");
    let mut command = if gnu_time.exists() {
        let mut command = Command::new(gnu_time);
        command
            .arg("-o")
            .arg(report)
            .arg("-f")
            .arg("%U %S %M")
            .arg(program);
        command
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let _ = std::fs::remove_file(report);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(child.wait_with_output());
    });
    let Ok(output) = done_rx.recv_timeout(FILE_TOOL_DEADLINE) else {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = done_rx.recv();
        let _ = waiter.join();
        return Err(format!(
            "{} did not finish within {} s; killed",
            program.display(),
            FILE_TOOL_DEADLINE.as_secs()
        ));
    };
    let seconds = started.elapsed().as_secs_f64();
    let _ = waiter.join();
    let output = output.map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let fields: Vec<String> = std::fs::read_to_string(report)
        .unwrap_or_default()
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Ok(ToolRun {
        seconds,
        cpu_seconds: number(0).zip(number(1)).map(|(u, s)| u + s),
        max_rss_kib: fields.get(2).and_then(|f| f.parse().ok()),
    })
}

/// Whether two files hold the same bytes.
fn same_contents(a: &Path, b: &Path) -> Result<bool, String> {
    use std::io::Read as _;
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut a, mut b) = (open(a)?, open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a, &mut x).map_err(|e| e.to_string())?;
        let m = read_full(&mut b, &mut y).map_err(|e| e.to_string())?;
        if n != m || x[..n] != y[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
    fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}

/// Writes `bytes` of incompressible-looking data to `path` (not timed).
fn write_plaintext(path: &Path, bytes: u64) -> Result<(), String> {
    use std::io::Write as _;
    let mut block = vec![0u8; 1 << 20];
    // A xorshift stream: cheap, and not a pattern anything could shortcut.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut left = bytes;
    let mut round = 0u8;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        block[0] = round;
        round = round.wrapping_add(1);
        writer
            .write_all(&block[..n])
            .map_err(|e| format!("{}: {e}", path.display()))?;
        left -= n as u64;
    }
    writer
        .flush()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The filesystem type of `path`, by its magic number.
fn filesystem_of(path: &Path) -> String {
    use nix::sys::statfs::{statfs, EXT4_SUPER_MAGIC, TMPFS_MAGIC};
    match statfs(path) {
        Ok(fs) if fs.filesystem_type() == TMPFS_MAGIC => "tmpfs".into(),
        Ok(fs) if fs.filesystem_type() == EXT4_SUPER_MAGIC => "ext4".into(),
        Ok(fs) => format!("magic {:#x}", fs.filesystem_type().0),
        Err(err) => format!("unknown ({err})"),
    }
}

/// `openssl speed -evp ALGORITHM` at 16384-byte blocks, in MB (10^6 bytes) per second of
/// user CPU time (what `openssl speed` measures unless given `-elapsed`).
fn openssl_block_speed(algorithm: &str, seconds: u64) -> Option<f64> {
    let output = Command::new("openssl")
        .args(["speed", "-mr", "-bytes", "16384", "-seconds"])
        .arg(seconds.to_string())
        .args(["-evp", algorithm])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with("+F:"))
        .find_map(|line| line.rsplit(':').next()?.trim().parse::<f64>().ok())
        .map(|bytes_per_second| bytes_per_second / 1e6)
}

/// The primitives of the message format, one thread, per CPU second: `openssl speed` at
/// 16384-byte blocks, and AES-256-GCM at kmsctl's frame size and SHA-384 in this process
/// (RustCrypto's AES-GCM, which kmsctl uses, and aws-lc-rs's).
fn file_ceilings(time: Duration) -> Vec<FileCeiling> {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    let seconds = time.as_secs().max(1);
    let mut ceilings = vec![
        FileCeiling {
            name: "openssl speed -evp aes-256-gcm, 16384-byte blocks".into(),
            mb_per_second: openssl_block_speed("aes-256-gcm", seconds),
        },
        FileCeiling {
            name: "openssl speed -evp sha384, 16384-byte blocks".into(),
            mb_per_second: openssl_block_speed("sha384", seconds),
        },
    ];
    let frame = kmsd::envelope::DEFAULT_FRAME_LENGTH as usize;
    let cipher = aes_gcm::Aes256Gcm::new(&[3u8; 32].into());
    let nonce = [4u8; 12];
    let mut buffer = vec![5u8; frame];
    let frames = rate_per_cpu_second(time, || {
        let _ = cipher.encrypt_in_place_detached((&nonce).into(), b"aad", &mut buffer);
    });
    ceilings.push(FileCeiling {
        name: format!("RustCrypto aes-gcm (kmsctl's) AES-256-GCM, {frame}-byte frames"),
        mb_per_second: Some(frames * frame as f64 / 1e6),
    });
    if let Ok(unbound) = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[3u8; 32])
    {
        let sealing = aws_lc_rs::aead::LessSafeKey::new(unbound);
        let frames = rate_per_cpu_second(time, || {
            let _ = sealing.seal_in_place_separate_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(b"aad"),
                &mut buffer,
            );
        });
        ceilings.push(FileCeiling {
            name: format!("aws-lc-rs AES-256-GCM, {frame}-byte frames"),
            mb_per_second: Some(frames * frame as f64 / 1e6),
        });
    }
    let block = vec![6u8; 16384];
    let hashes = rate_per_cpu_second(time, || {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
        context.update(&block);
        let _ = context.finish();
    });
    ceilings.push(FileCeiling {
        name: "aws-lc-rs (kmsctl's) SHA-384, 16384-byte blocks".into(),
        mb_per_second: Some(hashes * block.len() as f64 / 1e6),
    });
    ceilings
}

/// The Python AWS Encryption CLI's entry point (what its `aws-encryption-cli` script runs).
const PYTHON_CLI: &str = "import sys\nfrom aws_encryption_sdk_cli import cli\nsys.exit(cli())";
/// Where `scripts/install-deps.sh` puts the AWS clients, for Debian's interpreter.
const PYTHON_PACKAGES: &str = "/opt/kmsd-test-python";

/// `kmsctl encrypt-file` and `decrypt-file` of files of a few sizes (both signed and unsigned
/// suites), and `aws-encryption-cli` on the largest, beside the primitives' ceilings.
async fn files(args: &Args, plan: &Plan, results: &mut Results) -> Result<(), String> {
    let kmsctl = match &args.kmsctl {
        Some(path) => path.clone(),
        None => plan.kmsd.with_file_name("kmsctl"),
    };
    if !kmsctl.exists() {
        return Err(format!(
            "{} not found (build it, or name it with --kmsctl)",
            kmsctl.display()
        ));
    }
    let base = args.files_dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            args.work_dir.clone()
        }
    });
    let dir = base.join(format!("kmsd-bench-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let _remove = RemoveOnDrop(dir.clone());
    let mut section = FileSection {
        dir: dir.display().to_string(),
        filesystem: filesystem_of(&dir),
        ..Default::default()
    };
    let ceiling_time = if args.smoke {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(3)
    };
    section.ceilings = file_ceilings(ceiling_time);
    for ceiling in &section.ceilings {
        eprintln!(
            "{:<60} {}",
            ceiling.name,
            ceiling
                .mb_per_second
                .map_or("unavailable".into(), |v| format!("{v:.0} MB/s"))
        );
    }
    let aes_ceiling = section.ceilings.first().and_then(|c| c.mb_per_second);

    let addr = free_port()?;
    let (kmsd, _) = Kmsd::start_with_tcp(
        plan,
        args,
        &args.work_dir.join("files"),
        "kmsd",
        "",
        Some(addr),
    )
    .await?;
    let created = Client::new(&kmsd.socket)
        .call_json("CreateKey", &json!({"Description": "kmsd-bench files"}))
        .await
        .map_err(|e| format!("CreateKey: {e}"))?;
    let key_id = created["KeyMetadata"]["KeyId"]
        .as_str()
        .ok_or("CreateKey returned no KeyId")?
        .to_string();
    let arn = created["KeyMetadata"]["Arn"]
        .as_str()
        .ok_or("CreateKey returned no Arn")?
        .to_string();
    let mib = args.file_mib.unwrap_or(if args.smoke { 2 } else { 1024 });
    let sizes: Vec<u64> = if args.smoke || mib <= 16 {
        vec![mib << 20]
    } else {
        vec![16 << 20, mib << 20]
    };
    let socket = kmsd.socket.clone().into_os_string();
    let report = dir.join("time.txt");
    let os = |s: &str| std::ffi::OsString::from(s);
    for &bytes in &sizes {
        let plain = dir.join("plain");
        write_plaintext(&plain, bytes)?;
        let sealed = dir.join("sealed");
        let opened = dir.join("opened");
        let mut row = |tool: &str,
                       operation: &str,
                       suite: &str,
                       run: Result<ToolRun, String>,
                       check: &dyn Fn() -> Result<bool, String>| {
            let row = match run {
                Ok(run) => {
                    let mb_per_second = bytes as f64 / run.seconds / 1e6;
                    let mb_per_cpu_second = run
                        .cpu_seconds
                        .filter(|c| *c > 0.0)
                        .map(|c| bytes as f64 / c / 1e6);
                    let (ok, note) = match check() {
                        Ok(true) => (true, String::new()),
                        Ok(false) => (false, "the output differs from the plaintext".into()),
                        Err(err) => (false, err),
                    };
                    FileRun {
                        tool: tool.into(),
                        operation: operation.into(),
                        suite: suite.into(),
                        bytes,
                        seconds: run.seconds,
                        mb_per_second,
                        cpu_seconds: run.cpu_seconds,
                        mb_per_cpu_second,
                        max_rss_kib: run.max_rss_kib,
                        ratio_to_ceiling: aes_ceiling.zip(mb_per_cpu_second).map(|(c, v)| v / c),
                        ok,
                        note,
                    }
                }
                Err(note) => FileRun {
                    tool: tool.into(),
                    operation: operation.into(),
                    suite: suite.into(),
                    bytes,
                    seconds: 0.0,
                    mb_per_second: 0.0,
                    cpu_seconds: None,
                    mb_per_cpu_second: None,
                    max_rss_kib: None,
                    ratio_to_ceiling: None,
                    ok: false,
                    note,
                },
            };
            eprintln!(
                "{:<20} {:<7} {} {:>5} MiB: {:>7.0} MB/s  {:.2} s  cpu {}  max RSS {}  {}",
                row.tool,
                row.operation,
                row.suite,
                row.bytes >> 20,
                row.mb_per_second,
                row.seconds,
                row.cpu_seconds.map_or("-".into(), |c| format!("{c:.2} s")),
                row.max_rss_kib
                    .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                if row.ok {
                    "ok".to_string()
                } else {
                    row.note.clone()
                }
            );
            section.rows.push(row);
        };
        // Smoke mode: the default (signed) suite only.
        let suites: &[&str] = if args.smoke {
            &["0x0578"]
        } else {
            &["0x0578", "0x0478"]
        };
        for &suite in suites {
            let _ = std::fs::remove_file(&sealed);
            let _ = std::fs::remove_file(&opened);
            let encrypt = run_tool(
                &kmsctl,
                &[
                    &os("--socket"),
                    &socket,
                    &os("encrypt-file"),
                    &os("--key-id"),
                    &os(&key_id),
                    &os("--algorithm"),
                    &os(suite),
                    &os("-i"),
                    plain.as_os_str(),
                    &os("-o"),
                    sealed.as_os_str(),
                ],
                &[],
                &report,
            );
            // Checked by the decrypt below.
            row("kmsctl", "encrypt", suite, encrypt, &|| Ok(true));
            let decrypt = run_tool(
                &kmsctl,
                &[
                    &os("--socket"),
                    &socket,
                    &os("decrypt-file"),
                    &os("--key-id"),
                    &os(&arn),
                    &os("-i"),
                    sealed.as_os_str(),
                    &os("-o"),
                    opened.as_os_str(),
                ],
                &[],
                &report,
            );
            row("kmsctl", "decrypt", suite, decrypt, &|| {
                same_contents(&plain, &opened)
            });
        }
        // The Python AWS Encryption CLI, on the largest file only, as a reference.
        let python = Path::new("/usr/bin/python3");
        let present = Command::new(python)
            .args(["-c", "import aws_encryption_sdk_cli"])
            .env("PYTHONPATH", PYTHON_PACKAGES)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if Some(&bytes) == sizes.last() && present {
            let env = [
                ("PYTHONPATH", PYTHON_PACKAGES.to_string()),
                ("AWS_ENDPOINT_URL_KMS", format!("http://{addr}")),
                ("AWS_ACCESS_KEY_ID", "kmsd".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "kmsd".to_string()),
                ("AWS_DEFAULT_REGION", "local".to_string()),
                (
                    "AWS_CONFIG_FILE",
                    dir.join("aws-config").display().to_string(),
                ),
                (
                    "AWS_SHARED_CREDENTIALS_FILE",
                    dir.join("aws-credentials").display().to_string(),
                ),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
            ];
            let wrapping = format!("key={arn}");
            for (operation, input, output) in
                [("encrypt", &plain, &sealed), ("decrypt", &sealed, &opened)]
            {
                let _ = std::fs::remove_file(output);
                let run = run_tool(
                    python,
                    &[
                        &os("-c"),
                        &os(PYTHON_CLI),
                        &os(&format!("--{operation}")),
                        &os("-S"),
                        &os("-i"),
                        input.as_os_str(),
                        &os("-o"),
                        output.as_os_str(),
                        &os("--wrapping-keys"),
                        &os(&wrapping),
                        &os("--commitment-policy"),
                        &os("require-encrypt-require-decrypt"),
                    ],
                    &env,
                    &report,
                );
                if operation == "encrypt" {
                    row("aws-encryption-cli", operation, "0x0578", run, &|| Ok(true));
                } else {
                    row("aws-encryption-cli", operation, "0x0578", run, &|| {
                        same_contents(&plain, &opened)
                    });
                }
            }
        } else if !present && Some(&bytes) == sizes.last() {
            eprintln!("aws-encryption-cli: not installed in {PYTHON_PACKAGES}; skipped");
        }
        for path in [&plain, &sealed, &opened] {
            let _ = std::fs::remove_file(path);
        }
    }
    drop(kmsd);
    results.files = Some(section);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Targets and the Markdown report

fn symmetric(op: &str) -> bool {
    op.starts_with("Encrypt") || op.starts_with("Decrypt") || op.starts_with("GenerateDataKey")
}

fn targets(results: &Results) -> Vec<Target> {
    let mut targets = Vec::new();
    disk_ceiling_targets(results, &mut targets);
    for mode in [AuditMode::Fsync, AuditMode::Write, AuditMode::Off] {
        throughput_targets(results, mode.label(), &mut targets);
    }
    startup_targets(results, &mut targets);
    if let Some(worst) = results
        .fairness
        .iter()
        .filter(|r| r.config != "alone")
        .max_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
    {
        let errors: u64 = results.fairness.iter().map(|r| r.errors).sum();
        targets.push(Target {
            name: "p99 while another uid floods, no errors".into(),
            goal: "< 10 ms, 0 errors".into(),
            measured: format!(
                "highest {:.0} µs (concurrency {}), {errors} errors",
                worst.p99_us, worst.concurrency
            ),
            met: worst.p99_us < 10_000.0 && errors == 0,
        });
    }
    targets
}

/// The p99 target of one kmsd config of the throughput section.
fn throughput_targets(results: &Results, config: &str, targets: &mut Vec<Target>) {
    if let Some(worst) = results
        .throughput
        .iter()
        .filter(|r| r.config == config && r.concurrency == 8 && symmetric(&r.operation))
        .max_by(|a, b| a.p99_us.total_cmp(&b.p99_us))
    {
        targets.push(Target {
            name: format!("p99 latency, concurrency 8 ({config})"),
            goal: "<= 1 ms".into(),
            measured: format!("highest {:.0} µs ({})", worst.p99_us, worst.operation),
            met: worst.p99_us <= 1000.0,
        });
    }
}

/// The row of the throughput section of `config`, `operation` and `concurrency`.
fn throughput_row<'a>(
    results: &'a Results,
    config: &str,
    operation: &str,
    concurrency: usize,
) -> Option<&'a LoadResult> {
    results
        .throughput
        .iter()
        .find(|r| r.config == config && r.operation == operation && r.concurrency == concurrency)
}

/// The 32-byte symmetric rows (Encrypt 32 B, Decrypt 32 B, GenerateDataKey) of `config` at
/// `concurrency`: the rows of the ceiling targets (Encrypt 4 KiB has its own).
fn small_symmetric_rows<'a>(
    results: &'a Results,
    config: &'a str,
    concurrency: usize,
) -> impl Iterator<Item = &'a LoadResult> + 'a {
    results.throughput.iter().filter(move |r| {
        r.config == config
            && r.concurrency == concurrency
            && symmetric(&r.operation)
            && !r.operation.contains("4 KiB")
    })
}

/// The issue's targets against the disk and the echo ceiling (issue #15), each from this
/// run's rows; a target whose rows were not measured is left out.
fn disk_ceiling_targets(results: &Results, targets: &mut Vec<Target>) {
    let fsync = AuditMode::Fsync.label();
    let write = AuditMode::Write.label();
    let off = AuditMode::Off.label();
    if let Some(row) = throughput_row(results, fsync, "Encrypt 32 B", 1) {
        if let Some(over) = row.p50_minus_disk_p50_us {
            targets.push(Target {
                name: format!("Encrypt 32 B p50, concurrency 1 ({fsync}), vs the disk's append + fdatasync p50"),
                goal: "<= disk p50 + 60 µs".into(),
                measured: format!(
                    "{:.0} µs = disk p50 {:.0} µs {} {:.0} µs",
                    row.p50_us,
                    row.p50_us - over,
                    if over < 0.0 { "-" } else { "+" },
                    over.abs()
                ),
                met: over <= 60.0,
            });
        }
    }
    for (config, concurrency, goal) in [
        (fsync, 8, 0.40),
        (fsync, 64, 0.60),
        (write, 8, 0.70),
        (write, 64, 0.70),
        (off, 1, 0.80),
        (off, 64, 0.70),
    ] {
        let worst = small_symmetric_rows(results, config, concurrency)
            .filter_map(|r| Some((r.ratio_to_ceiling?, r)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((ratio, row)) = worst {
            targets.push(Target {
                name: format!(
                    "32 B symmetric ops vs the echo ceiling, concurrency {concurrency} ({config})"
                ),
                goal: format!(">= {:.0}%", goal * 100.0),
                measured: format!("lowest {:.0}% ({})", ratio * 100.0, row.operation),
                met: ratio >= goal,
            });
        }
    }
    for concurrency in [8, 64] {
        let worst = small_symmetric_rows(results, write, concurrency)
            .filter_map(|w| {
                let o = throughput_row(results, off, &w.operation, concurrency)?;
                (o.requests_per_second > 0.0)
                    .then(|| (w.requests_per_second / o.requests_per_second, w))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((ratio, row)) = worst {
            targets.push(Target {
                name: format!("{write} vs {off}, 32 B symmetric ops, concurrency {concurrency}"),
                goal: format!(">= 90% of {off}'s req/s"),
                measured: format!("lowest {:.0}% ({})", ratio * 100.0, row.operation),
                met: ratio >= 0.90,
            });
        }
    }
    let Some(encrypt) =
        throughput_row(results, fsync, "Encrypt 32 B", 8).filter(|r| r.requests_per_second > 0.0)
    else {
        return;
    };
    for (operation, goal, goal_text) in [
        ("GenerateDataKey AES_256", 0.90, "within 10% (>= 90%)"),
        ("Decrypt 32 B", 0.90, "within 10% (>= 90%)"),
        ("Encrypt 4 KiB", 0.50, ">= 50%"),
    ] {
        if let Some(row) = throughput_row(results, fsync, operation, 8) {
            let ratio = row.requests_per_second / encrypt.requests_per_second;
            targets.push(Target {
                name: format!("{operation} vs Encrypt 32 B, concurrency 8 ({fsync})"),
                goal: format!("{goal_text} of Encrypt 32 B's req/s"),
                measured: format!(
                    "{:.0}% ({:.0} vs {:.0} req/s)",
                    ratio * 100.0,
                    row.requests_per_second,
                    encrypt.requests_per_second
                ),
                met: ratio >= goal,
            });
        }
    }
}

fn startup_targets(results: &Results, targets: &mut Vec<Target>) {
    if let Some(startup) = results.startup.iter().max_by_key(|s| s.keys) {
        targets.push(Target {
            name: format!("start-up with {} keys", startup.keys),
            goal: "<= 300 ms".into(),
            measured: format!("{:.0} ms", startup.median_ms),
            met: startup.median_ms <= 300.0,
        });
    }
    if let Some(memory) = &results.memory {
        targets.push(Target {
            name: format!("resident memory with {} keys used", memory.keys_used),
            goal: "<= 64 MiB".into(),
            measured: format!("{:.1} MiB", memory.vm_rss_kib as f64 / 1024.0),
            met: memory.vm_rss_kib <= 64 * 1024,
        });
    }
    if let Some(scrape) = &results.scrape {
        targets.push(Target {
            name: format!("/metrics scrape with {} keys", scrape.keys),
            goal: "<= 100 ms".into(),
            measured: if scrape.available {
                format!("{:.1} ms", scrape.median_ms)
            } else {
                format!("n/a ({})", scrape.note)
            },
            met: scrape.available && scrape.median_ms <= 100.0,
        });
    }
}

fn markdown(results: &Results) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let meta = &results.meta;
    let _ = writeln!(out, "# kmsd benchmark results\n");
    let _ = writeln!(
        out,
        "{} run, {}, commit `{}`, {} CPUs ({}), kernel {}, load average before {} / after {}, {} ms per throughput run, load generator on {} thread(s).\n",
        meta["mode"].as_str().unwrap_or(""),
        meta["date"].as_str().unwrap_or(""),
        meta["commit"].as_str().unwrap_or(""),
        meta["cpus"],
        meta["cpu_model"].as_str().unwrap_or(""),
        meta["kernel"].as_str().unwrap_or(""),
        meta["load_average_before"].as_str().unwrap_or(""),
        meta["load_average_after"].as_str().unwrap_or(""),
        meta["duration_ms"],
        meta["client_threads"],
    );
    if let Some(Value::Array(notes)) = meta.get("notes") {
        for note in notes {
            let _ = writeln!(out, "- Note: {}", note.as_str().unwrap_or_default());
        }
        let _ = writeln!(out);
    }
    if !results.disk.is_empty() {
        let _ = writeln!(
            out,
            "## The disk (append + fdatasync in the work dir, on {}; one thread)\n",
            meta["work_dir_filesystem"].as_str().unwrap_or("unknown")
        );
        call_cost_table(&mut out, &results.disk);
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "## Throughput and latency (Unix socket, keep-alive, one connection per client; ceiling: the echo server's row of the same request; in the echo rows, the kmsd columns are the echo server's)\n"
    );
    let _ = writeln!(out, "| kmsd config | Operation | Conc. | req/s | vs ceiling | vs own ping | p50 µs | p50 − disk p50 µs | p99 µs | p99.9 µs | kmsd CPU µs/req | bench CPU µs/req | kmsd ctx switches/req | errors |");
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &results.throughput {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {} |",
            r.config,
            r.operation,
            r.concurrency,
            r.requests_per_second,
            percent(r.ratio_to_ceiling),
            percent(r.ratio_to_ping),
            r.p50_us,
            r.p50_minus_disk_p50_us
                .map_or("-".into(), |d| format!("{d:.0}")),
            r.p99_us,
            r.p999_us,
            r.kmsd_cpu_us_per_request,
            r.client_cpu_us_per_request,
            r.kmsd_context_switches_per_request
                .map_or("-".into(), |n| format!("{n:.2}")),
            r.errors
        );
    }
    if !results.asymmetric.is_empty() {
        let _ = writeln!(
            out,
            "\n## Asymmetric and HMAC keys (32-byte messages, RAW)\n"
        );
        let _ = writeln!(out, "| Operation | Conc. | req/s | vs ceiling | vs aws-lc-rs alone (1 thread) | p50 µs | p99 µs | kmsd CPU µs/req | errors |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.asymmetric {
            let library = results
                .library_ceilings
                .iter()
                .find(|c| c.operation == r.operation)
                .map_or("-".into(), |c| {
                    format!(
                        "{:.0}%",
                        r.requests_per_second / c.aws_lc_per_second * 100.0
                    )
                });
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.1} | {} |",
                r.operation,
                r.concurrency,
                r.requests_per_second,
                r.ratio_to_ceiling
                    .map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
                library,
                r.p50_us,
                r.p99_us,
                r.kmsd_cpu_us_per_request,
                r.errors
            );
        }
        let _ = writeln!(
            out,
            "\n| Primitive alone (1 thread) | aws-lc-rs ops/s | openssl speed ops/s |"
        );
        let _ = writeln!(out, "|---|---:|---:|");
        for c in &results.library_ceilings {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} |",
                c.operation,
                c.aws_lc_per_second,
                c.openssl_per_second
                    .map_or("-".into(), |v| format!("{v:.0}"))
            );
        }
    }
    if !results.fairness.is_empty() {
        let _ = writeln!(
            out,
            "\n## Fairness under a flood (root's Encrypt 32 B; the flooding uid holds all {FAIRNESS_SLOTS_PER_UID} of its slots with stalled requests and opens connections without pause)\n"
        );
        let _ = writeln!(out, "| Caller | Operation | Conc. | req/s | p99 vs alone | p50 µs | p99 µs | p99.9 µs | kmsd CPU µs/req | errors |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.fairness {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {} |",
                r.config,
                r.operation,
                r.concurrency,
                r.requests_per_second,
                r.ratio_to_ceiling
                    .map_or("-".into(), |x| format!("{x:.2}×")),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.kmsd_cpu_us_per_request,
                r.errors
            );
        }
    }
    if !results.tcp.is_empty() {
        let _ = writeln!(
            out,
            "\n## The TCP endpoint beside the Unix socket (one kmsd per config serving both, keep-alive, each row beside `GET /ping` of its own transport)\n"
        );
        let _ = writeln!(out, "| kmsd config | Transport | Operation | Conc. | req/s | vs own ceiling | TCP vs Unix | p50 µs | p99 µs | p99.9 µs | kmsd CPU µs/req | bench CPU µs/req | errors |");
        let _ = writeln!(
            out,
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &results.tcp {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
                r.config,
                r.transport,
                r.operation,
                r.concurrency,
                r.requests_per_second,
                percent(r.ratio_to_ceiling),
                percent(tcp_vs_unix(&results.tcp, r)),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.kmsd_cpu_us_per_request,
                r.client_cpu_us_per_request,
                r.errors
            );
        }
    }
    if !results.connections.is_empty() {
        let _ = writeln!(
            out,
            "\n## A new connection per request (each beside the keep-alive `GET /ping` of its transport)\n"
        );
        let _ = writeln!(out, "| Transport | Operation | Conc. | connections/s | vs keep-alive ping | TCP vs Unix | p50 µs | p99 µs | kmsd CPU µs/conn | bench CPU µs/conn | errors |");
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &results.connections {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
                r.transport,
                r.operation,
                r.concurrency,
                r.requests_per_second,
                percent(r.ratio_to_ceiling),
                percent(tcp_vs_unix(&results.connections, r)),
                r.p50_us,
                r.p99_us,
                r.kmsd_cpu_us_per_request,
                r.client_cpu_us_per_request,
                r.errors
            );
        }
    }
    if !results.caller_lookup.is_empty() {
        let _ = writeln!(
            out,
            "\n## The caller lookup of one connection, called in this process (one thread)\n"
        );
        call_cost_table(&mut out, &results.caller_lookup);
    }
    if let Some(files) = &results.files {
        let _ = writeln!(
            out,
            "\n## File encryption ({} on {}; MB = 10^6 bytes of plaintext; one process per row; the primitives per CPU second, as `openssl speed` counts)\n",
            files.dir, files.filesystem
        );
        let _ = writeln!(out, "| Primitive alone (1 thread) | MB/s |");
        let _ = writeln!(out, "|---|---:|");
        for c in &files.ceilings {
            let _ = writeln!(
                out,
                "| {} | {} |",
                c.name,
                c.mb_per_second.map_or("-".into(), |v| format!("{v:.0}"))
            );
        }
        let _ = writeln!(
            out,
            "\n| Tool | Operation | Suite | MiB | seconds | MB/s | CPU s | MB per CPU s | vs openssl AES-256-GCM (per CPU s) | max RSS MiB | output |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for r in &files.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
                r.tool,
                r.operation,
                r.suite,
                r.bytes >> 20,
                r.seconds,
                r.mb_per_second,
                r.cpu_seconds.map_or("-".into(), |c| format!("{c:.2}")),
                r.mb_per_cpu_second
                    .map_or("-".into(), |v| format!("{v:.0}")),
                percent(r.ratio_to_ceiling),
                r.max_rss_kib
                    .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                if r.ok {
                    "ok".to_string()
                } else {
                    format!("failed: {}", r.note)
                }
            );
        }
    }
    let _ = writeln!(out, "\n## Start-up (spawn to first successful ListKeys)\n");
    let _ = writeln!(out, "| Keys | median ms | runs ms | VmRSS after start |");
    let _ = writeln!(out, "|---:|---:|---|---:|");
    if let Some(first) = meta["first_start_new_state_dir_ms"].as_f64() {
        let _ = writeln!(
            out,
            "| 0 (new state dir: root key created and sealed) | {first:.1} | | |"
        );
    }
    for s in &results.startup {
        let runs: Vec<String> = s.runs_ms.iter().map(|r| format!("{r:.1}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} |",
            s.keys,
            s.median_ms,
            runs.join(", "),
            s.vm_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    }
    let _ = writeln!(
        out,
        "\n## Durable CreateKey (SQLite commit + audit record, both fsynced)\n"
    );
    let _ = writeln!(
        out,
        "| Conc. | keys | seconds | keys/s | p50 ms | p99 ms | errors |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for c in &results.create_key {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            c.concurrency, c.keys, c.seconds, c.per_second, c.p50_ms, c.p99_ms, c.errors
        );
    }
    let _ = writeln!(out, "\n## Scale\n");
    if let Some(m) = &results.memory {
        let _ = writeln!(
            out,
            "- Resident memory with {} keys, {} of them used once: VmRSS {:.1} MiB (peak VmHWM {:.1} MiB).",
            m.keys,
            m.keys_used,
            m.vm_rss_kib as f64 / 1024.0,
            m.vm_hwm_kib as f64 / 1024.0
        );
    }
    if let Some(s) = &results.scrape {
        if s.available {
            let _ = writeln!(
                out,
                "- `GET /metrics` with {} keys with traffic: {} bytes, {} series; median {:.1} ms, max {:.1} ms over {} scrapes.",
                s.keys,
                s.bytes,
                s.series,
                s.median_ms,
                s.max_ms,
                s.runs_ms.len()
            );
        } else {
            let _ = writeln!(out, "- `GET /metrics`: not measured: {}.", s.note);
        }
    }
    if !results.alternatives.is_empty() {
        let reference = results.throughput.iter().find(|r| {
            r.config == AuditMode::Fsync.label()
                && r.operation == "Encrypt 32 B"
                && r.concurrency == 1
        });
        let _ = writeln!(
            out,
            "\n## The alternatives (same machine, same swtpm, one process per step)\n"
        );
        let _ = writeln!(out, "| Method | one operation | iterations | median ms | p99 ms | ops/s | kmsd Encrypt 32 B (c=1) is faster by |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
        for a in &results.alternatives {
            if !a.available {
                let _ = writeln!(
                    out,
                    "| {} | {} | unavailable: {} | | | | |",
                    a.name, a.operation, a.note
                );
                continue;
            }
            let faster = reference
                .filter(|r| r.p50_us > 0.0)
                .map_or("-".into(), |r| {
                    format!("{:.0}x", a.median_ms * 1000.0 / r.p50_us)
                });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2} | {:.0} | {} |",
                a.name, a.operation, a.iterations, a.median_ms, a.p99_ms, a.per_second, faster
            );
        }
    }
    let _ = writeln!(out, "\n## Targets\n");
    let _ = writeln!(out, "| Target | Goal | Measured | Met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for t in &results.targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.name,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "no" }
        );
    }
    out
}

/// A table of [`CallCost`] rows.
fn call_cost_table(out: &mut String, costs: &[CallCost]) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "| Call | calls | p50 µs | p99 µs | mean µs |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for c in costs {
        if c.note.is_empty() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.1} | {:.1} |",
                c.name, c.calls, c.p50_us, c.p99_us, c.mean_us
            );
        } else {
            let _ = writeln!(out, "| {} | not measured: {} | | | |", c.name, c.note);
        }
    }
}

/// A ratio as a whole percentage, or "-".
fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("-".into(), |x| format!("{:.0}%", x * 100.0))
}

/// A TCP row's rate over the Unix row of the same operation and concurrency in `rows`.
fn tcp_vs_unix(rows: &[LoadResult], row: &LoadResult) -> Option<f64> {
    if row.transport != "tcp" {
        return None;
    }
    rows.iter()
        .find(|r| {
            r.transport == "unix"
                && r.config == row.config
                && r.operation == row.operation
                && r.concurrency == row.concurrency
        })
        .filter(|r| r.requests_per_second > 0.0)
        .map(|r| row.requests_per_second / r.requests_per_second)
}

/// An empty latency histogram: 1 ns to 120 s at 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds that are valid; a panic here is a typo in them
fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}
