//! The configuration against a real kmsd (real swtpm, real socket): what SIGHUP applies
//! (`[access]`, `[pricing]`) and what it reports as needing a restart (`region`), and what
//! kmsd does with whatever is already at its socket path (a regular file is never
//! touched; a stale socket is replaced).
//!
//! The access test calls kmsd as another uid (kmsctl run with `CommandExt::uid`), so it
//! needs root (CI runs as root); it is skipped otherwise.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// An unprivileged uid with no passwd entry (and no supplementary groups).
const OTHER_UID: u32 = 4321;

/// Runs `kmsctl list-keys` as [`OTHER_UID`]; returns (exit code, stderr).
fn list_keys_as_other(socket: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(KMSCTL)
        .arg("--socket")
        .arg(socket)
        .arg("list-keys")
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .stdin(Stdio::null())
        .output()
        .expect("run kmsctl");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_access_and_pricing() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root to run a client as another uid (CI runs as root)");
        return;
    }
    let access = |users: &str| {
        format!(
            "[access]\nadmin_users = [{users}]\nadmin_groups = []\n[pricing]\nkey_month_usd = 1.0"
        )
    };
    let mut options = KmsdOptions {
        config: access(&format!("\"{OTHER_UID}\"")),
        ..KmsdOptions::default()
    };
    let fx = Fixture::start_with(options.clone());
    let client = fx.client();
    create_key(&client).await;

    // Listed in admin_users: the uid may list keys.
    let (code, stderr) = list_keys_as_other(&fx.kmsd.socket);
    assert_eq!(code, Some(0), "{stderr}");
    let usage = ok(&client, "KmsdGetUsage", json!({})).await;
    assert_eq!(usage["Pricing"]["key_month_usd"], json!(1.0));

    // Removed from the list and a new price: SIGHUP applies both, without a restart.
    options.config = access("").replace("key_month_usd = 1.0", "key_month_usd = 2.5");
    write_config(&fx.tpm, &fx.dir, &options);
    let pid = fx.kmsd.pid();
    let reload_log = fx.kmsd.reload();
    assert!(
        reload_log.contains("configuration reloaded"),
        "{reload_log}"
    );
    assert!(
        reload_log.contains("access.admin_users") && reload_log.contains("pricing.key_month_usd"),
        "{reload_log}"
    );
    assert!(!reload_log.contains("need a restart"), "{reload_log}");
    let (code, stderr) = list_keys_as_other(&fx.kmsd.socket);
    assert_eq!(code, Some(254), "{stderr}");
    assert!(stderr.contains("AccessDeniedException"), "{stderr}");
    let usage = ok(&client, "KmsdGetUsage", json!({})).await;
    assert_eq!(usage["Pricing"]["key_month_usd"], json!(2.5));
    assert_eq!(fx.kmsd.pid(), pid);

    // And back: the uid is an administrator again.
    options.config = access(&format!("\"{OTHER_UID}\""));
    write_config(&fx.tpm, &fx.dir, &options);
    fx.kmsd.reload();
    let (code, stderr) = list_keys_as_other(&fx.kmsd.socket);
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reports_restart_only_changes() {
    let mut options = KmsdOptions::default();
    let fx = Fixture::start_with(options.clone());
    let client = fx.client();
    let key = create_key(&client).await;

    options.config = "region = \"eu-west-1\"\nmetrics_listen = \"127.0.0.1:1\"".into();
    write_config(&fx.tpm, &fx.dir, &options);
    let reload_log = fx.kmsd.reload();
    assert!(
        reload_log.contains("changed settings need a restart to take effect"),
        "{reload_log}"
    );
    let restart_line = reload_log
        .lines()
        .find(|line| line.contains("need a restart"))
        .unwrap_or_default();
    assert!(
        restart_line.contains("region") && restart_line.contains("metrics_listen"),
        "{restart_line}"
    );
    // Still the old region (and no metrics listener was bound).
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    let arn = described["KeyMetadata"]["Arn"].as_str().unwrap();
    assert!(arn.contains(":local:"), "{arn}");
    assert!(std::net::TcpStream::connect("127.0.0.1:1").is_err());

    // An invalid value is refused as a whole, naming the field and the value.
    options.config = "region = \"eu west\"".into();
    write_config(&fx.tpm, &fx.dir, &options);
    let reload_log = fx.kmsd.reload();
    assert!(reload_log.contains("reload failed"), "{reload_log}");
    assert!(
        reload_log.contains("region") && reload_log.contains("eu west"),
        "{reload_log}"
    );
    ok(&client, "DescribeKey", json!({"KeyId": key})).await;
}

/// Runs kmsd on `dir` until it exits (it is expected to fail); returns (status, output).
fn run_expecting_exit(tpm: &Swtpm, dir: &KmsdDir) -> (std::process::ExitStatus, String) {
    write_config(tpm, dir, &KmsdOptions::default());
    let mut child = Command::new(KMSD)
        .arg("--config")
        .arg(dir.config_file())
        .arg("--state-dir")
        .arg(dir.state_dir())
        .arg("--socket")
        .arg(dir.socket())
        .env("TSS2_LOG", "all+NONE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.log()).unwrap())
        .spawn()
        .expect("spawn kmsd");
    let status = poll("kmsd to exit", Duration::from_secs(60), || {
        child.try_wait().ok().flatten()
    });
    (
        status,
        std::fs::read_to_string(dir.log()).unwrap_or_default(),
    )
}

#[test]
fn a_regular_file_at_the_socket_path_is_left_alone() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let contents = b"not a socket: somebody's data\n\x00\xff";
    std::fs::write(dir.socket(), contents).unwrap();
    let (status, log) = run_expecting_exit(&tpm, &dir);
    assert!(!status.success(), "{status}\n{log}");
    let socket = dir.socket().display().to_string();
    assert!(log.contains(&socket), "{log}");
    assert!(log.contains("a regular file"), "{log}");
    assert_eq!(std::fs::read(dir.socket()).unwrap(), contents);
}

#[test]
fn a_live_socket_is_refused_and_a_stale_one_replaced() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    // Someone listens there: kmsd refuses and leaves it.
    let listening = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
    let (status, log) = run_expecting_exit(&tpm, &dir);
    assert!(!status.success(), "{status}\n{log}");
    assert!(log.contains("already listening"), "{log}");
    assert!(std::os::unix::net::UnixStream::connect(dir.socket()).is_ok());
    // Its process is gone but the socket file stays (stale): kmsd replaces it and serves.
    drop(listening);
    assert!(std::os::unix::net::UnixStream::connect(dir.socket()).is_err());
    let kmsd = Kmsd::start(&tpm, &dir);
    assert!(kmsd.log_text().contains("removing a stale socket file"));
    let mut kmsd = kmsd;
    assert!(kmsd.stop().is_some_and(|status| status.success()));
}
