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
//! socket with new connections. It writes JSON and a Markdown table.
//!
//! Every kmsd it starts is stopped (SIGTERM, then SIGKILL) and waited for, also on errors
//! and on SIGINT/SIGTERM.

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use kmsd::client::Client;
use serde::Serialize;
use serde_json::{json, Value};
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
    /// Sections to run: throughput, asymmetric, scale, alternatives, fairness (fairness
    /// needs root: the flooding caller runs as another uid).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,asymmetric,scale,alternatives,fairness"
    )]
    sections: Vec<String>,
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
    /// Also run the throughput section with `[audit] enabled = false`, to separate the cost
    /// of the audit fsync from the rest of the stack.
    #[arg(long)]
    audit_off_too: bool,
}

/// Everything measured, as written to results.json.
#[derive(Debug, Default, Serialize)]
struct Results {
    meta: Value,
    throughput: Vec<LoadResult>,
    startup: Vec<Startup>,
    create_key: Vec<CreateKeyResult>,
    memory: Option<Memory>,
    scrape: Option<Scrape>,
    alternatives: Vec<Alternative>,
    fairness: Vec<LoadResult>,
    asymmetric: Vec<LoadResult>,
    library_ceilings: Vec<LibraryCeiling>,
    targets: Vec<Target>,
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
    /// The kmsd configuration: "default" or "audit off".
    config: String,
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
    /// requests_per_second / the transport ceiling's at the same concurrency.
    ratio_to_ceiling: Option<f64>,
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
        }),
        ..Default::default()
    };

    let section = |name: &str| args.sections.iter().any(|s| s == name);
    if section("throughput") {
        eprintln!("== throughput and latency");
        throughput(args, &plan, &mut results, "default", "").await?;
        if args.audit_off_too {
            eprintln!("== throughput and latency, audit off");
            throughput(
                args,
                &plan,
                &mut results,
                "audit off",
                "[audit]\nenabled = false\n",
            )
            .await?;
        }
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
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let socket = dir.join("kmsd.sock");
        let config = dir.join("kmsd.toml");
        let text = format!(
            "socket = {socket:?}\nstate_dir = {state:?}\nlog_level = \"warn\"\n{extra}\n{extra_config}\n[tpm]\ntcti = {tcti:?}\n",
            socket = socket.display().to_string(),
            state = dir.join("state").display().to_string(),
            extra = args.kmsd_config,
            tcti = args.tcti,
        );
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
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
    fn request(&self) -> Request<Full<Bytes>> {
        let builder = match self {
            Op::Ping => Request::get("/ping").header("host", "kmsd"),
            Op::Kms { target, .. } => Request::post("/")
                .header("host", "kmsd")
                .header("content-type", "application/x-amz-json-1.1")
                .header("x-amz-target", *target),
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

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn throughput(
    args: &Args,
    plan: &Plan,
    results: &mut Results,
    config: &str,
    extra_config: &str,
) -> Result<(), String> {
    let dir = args
        .work_dir
        .join(format!("throughput-{}", config.replace(' ', "-")));
    let (kmsd, _) = Kmsd::start(plan, args, &dir, "kmsd", extra_config).await?;
    let client = Client::new(&kmsd.socket);
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
    let ops: Vec<(&str, Op)> = vec![
        ("Ping (transport ceiling)", Op::Ping),
        (
            "Encrypt 32 B",
            Op::Kms {
                target: "TrentService.Encrypt",
                body: body(json!({"KeyId": key_id, "Plaintext": small})),
            },
        ),
        (
            "Encrypt 4 KiB",
            Op::Kms {
                target: "TrentService.Encrypt",
                body: body(json!({"KeyId": key_id, "Plaintext": b64(&[9u8; 4096])})),
            },
        ),
        (
            "Decrypt 32 B",
            Op::Kms {
                target: "TrentService.Decrypt",
                body: body(json!({"CiphertextBlob": blob})),
            },
        ),
        (
            "GenerateDataKey AES_256",
            Op::Kms {
                target: "TrentService.GenerateDataKey",
                body: body(json!({"KeyId": key_id, "KeySpec": "AES_256"})),
            },
        ),
    ];
    let ops: Vec<(&str, Op)> = ops
        .into_iter()
        .filter(|(name, _)| {
            args.ops.is_empty() || args.ops.iter().any(|o| name.contains(o.as_str()))
        })
        .collect();
    // Each request must work before it is timed.
    for (name, op) in &ops {
        let raw = client
            .send(op.request())
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        if raw.status != StatusCode::OK {
            return Err(format!(
                "{name}: HTTP {}: {}",
                raw.status,
                String::from_utf8_lossy(&raw.body)
            ));
        }
    }
    // Warm-up: caches, allocator, page cache of the audit file.
    for (_, op) in &ops {
        load(&kmsd, op, 8, plan.duration / 4).await;
    }
    let mut ceiling = std::collections::HashMap::new();
    for &concurrency in &args.concurrency {
        for (name, op) in &ops {
            let mut result = load(&kmsd, op, concurrency, plan.duration).await;
            result.operation = name.to_string();
            result.config = config.to_string();
            if matches!(op, Op::Ping) {
                ceiling.insert(concurrency, result.requests_per_second);
            }
            result.ratio_to_ceiling = ceiling
                .get(&concurrency)
                .filter(|c| **c > 0.0)
                .map(|c| result.requests_per_second / c);
            eprintln!(
                "{config:<9} {:<26} c={:<4} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  p99.9 {:>7.0} µs  ratio {}  errors {}",
                result.operation,
                concurrency,
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.p999_us,
                result
                    .ratio_to_ceiling
                    .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
                result.errors
            );
            results.throughput.push(result);
        }
    }
    drop(kmsd);
    Ok(())
}

/// Runs `concurrency` connections, each sending `op` back to back, for `duration`.
async fn load(kmsd: &Kmsd, op: &Op, concurrency: usize, duration: Duration) -> LoadResult {
    let barrier = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let socket = kmsd.socket.clone();
        let op = op.clone();
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            let client = Client::new(socket);
            let mut histogram = latency_histogram();
            let mut errors = 0u64;
            // Open the connection before the clock starts.
            if !matches!(client.send(op.request()).await, Ok(r) if r.status == StatusCode::OK) {
                errors += 1;
            }
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    break;
                }
                match client.send(op.request()).await {
                    Ok(raw) if raw.status == StatusCode::OK => {
                        let _ = histogram.record(sent.elapsed().as_nanos().max(1) as u64);
                    }
                    _ => errors += 1,
                }
            }
            (histogram, errors)
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let kmsd_cpu = process_cpu(kmsd.pid());
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
    let kmsd_cpu = process_cpu(kmsd.pid()) - kmsd_cpu;
    let client_cpu = own_cpu() - client_cpu;
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
    let ops: Vec<(String, Op)> = ops
        .into_iter()
        .filter(|(name, _)| {
            args.ops.is_empty() || args.ops.iter().any(|o| name.contains(o.as_str()))
        })
        .collect();
    for (name, op) in &ops {
        let raw = client
            .send(op.request())
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        if raw.status != StatusCode::OK {
            return Err(format!(
                "{name}: HTTP {}: {}",
                raw.status,
                String::from_utf8_lossy(&raw.body)
            ));
        }
    }
    for (_, op) in &ops {
        load(&kmsd, op, 8, plan.duration / 8).await;
    }
    let concurrencies: Vec<usize> = args
        .concurrency
        .iter()
        .copied()
        .filter(|c| *c <= 64)
        .collect();
    let mut ceiling = std::collections::HashMap::new();
    for &concurrency in &concurrencies {
        for (name, op) in &ops {
            let mut result = load(&kmsd, op, concurrency, plan.duration).await;
            result.operation = name.clone();
            result.config = "default".into();
            if matches!(op, Op::Ping) {
                ceiling.insert(concurrency, result.requests_per_second);
            }
            result.ratio_to_ceiling = ceiling
                .get(&concurrency)
                .filter(|c| **c > 0.0)
                .map(|c| result.requests_per_second / c);
            eprintln!(
                "{:<26} c={:<3} {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  errors {}",
                result.operation,
                concurrency,
                result.requests_per_second,
                result.p50_us,
                result.p99_us,
                result.errors
            );
            results.asymmetric.push(result);
        }
    }
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
    load(&kmsd, &op, 8, plan.duration / 4).await;
    let flooded_config = format!(
        "uid {} floods ({FAIRNESS_SLOTS_PER_UID} stalled)",
        args.flood_uid
    );
    for concurrency in [1, 8] {
        let mut alone = load(&kmsd, &op, concurrency, plan.duration).await;
        alone.config = "alone".into();
        alone.operation = "Encrypt 32 B".into();
        let flooder = Flooder::start(args.flood_uid, &kmsd.socket, FAIRNESS_SLOTS_PER_UID)?;
        let mut flooded = load(&kmsd, &op, concurrency, plan.duration).await;
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

/// This program running as the flooding caller; killed and waited for on drop.
struct Flooder {
    child: Option<Child>,
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
            child: Some(child),
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
        self.kill();
        self.opened.load(Ordering::Relaxed)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.kill();
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
// Targets and the Markdown report

fn symmetric(op: &str) -> bool {
    op.starts_with("Encrypt") || op.starts_with("Decrypt") || op.starts_with("GenerateDataKey")
}

fn targets(results: &Results) -> Vec<Target> {
    let mut targets = Vec::new();
    for config in ["default", "audit off"] {
        throughput_targets(results, config, &mut targets);
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

fn throughput_targets(results: &Results, config: &str, targets: &mut Vec<Target>) {
    let suffix = if config == "default" {
        String::new()
    } else {
        format!(" ({config})")
    };
    let at = |c: usize| {
        results
            .throughput
            .iter()
            .filter(move |r| r.config == config && r.concurrency == c && symmetric(&r.operation))
    };
    if let Some(worst) = at(64).min_by(|a, b| {
        a.ratio_to_ceiling
            .unwrap_or(0.0)
            .total_cmp(&b.ratio_to_ceiling.unwrap_or(0.0))
    }) {
        let ratio = worst.ratio_to_ceiling.unwrap_or(0.0);
        targets.push(Target {
            name: format!("symmetric ops vs transport ceiling, concurrency 64{suffix}"),
            goal: ">= 70%".into(),
            measured: format!("lowest {:.0}% ({})", ratio * 100.0, worst.operation),
            met: ratio >= 0.70,
        });
    }
    if let Some(worst) = at(8).max_by(|a, b| a.p99_us.total_cmp(&b.p99_us)) {
        targets.push(Target {
            name: format!("p99 latency, concurrency 8{suffix}"),
            goal: "<= 1 ms".into(),
            measured: format!("highest {:.0} µs ({})", worst.p99_us, worst.operation),
            met: worst.p99_us <= 1000.0,
        });
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
    let _ = writeln!(
        out,
        "## Throughput and latency (Unix socket, keep-alive, one connection per client)\n"
    );
    let _ = writeln!(out, "| kmsd config | Operation | Conc. | req/s | vs ceiling | p50 µs | p99 µs | p99.9 µs | kmsd CPU µs/req | bench CPU µs/req | errors |");
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &results.throughput {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            r.config,
            r.operation,
            r.concurrency,
            r.requests_per_second,
            r.ratio_to_ceiling
                .map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.kmsd_cpu_us_per_request,
            r.client_cpu_us_per_request,
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
        let reference = results
            .throughput
            .iter()
            .find(|r| r.config == "default" && r.operation == "Encrypt 32 B" && r.concurrency == 1);
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

/// An empty latency histogram: 1 ns to 120 s at 3 significant digits.
#[allow(clippy::expect_used)] // constant bounds that are valid; a panic here is a typo in them
fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}
