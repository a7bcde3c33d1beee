//! `kmsd`: parse the config and command line, harden the process, start the daemon.

use clap::Parser;
use kmsd::clock::Clock;
use kmsd::daemon::{Daemon, RunOptions};
use kmsd::reload::{ConfigOverrides, ConfigSource, LogLevelSetter, ReloadTargets};
use std::path::PathBuf;
use std::process::ExitCode;

/// kmsd: AWS KMS semantics on a Unix socket, keys rooted in the host's TPM 2.0.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file (see the README); without it, built-in defaults apply.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Unix socket to listen on (overrides `socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// State directory (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// TPM TCTI, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 (overrides `tpm.tcti`).
    #[arg(long)]
    tcti: Option<String>,
    /// Log filter, e.g. info or kmsd=debug (overrides `log_level`).
    #[arg(long)]
    log_level: Option<kmsd::config::LogFilter>,
    /// Maintenance interval in seconds (overrides `maintenance_interval_secs`).
    #[arg(long)]
    maintenance_interval_secs: Option<u64>,
    /// TESTING ONLY: shift the daemon's clock by the number of seconds in this file.
    #[arg(long, hide = true)]
    test_clock_file: Option<PathBuf>,
    /// TESTING ONLY: exit at once (as a crash would) right after the first change is
    /// committed, before its outcome record is written.
    #[arg(long, hide = true)]
    test_crash_after_commit: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // libtss2 writes its own log to stderr unless told not to; kmsd reports TPM errors itself.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+NONE");
    }
    // Before any thread starts: taking the passed socket edits the environment.
    let activated = match kmsd::systemd::take_activated_listener() {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("kmsd: {err}");
            return ExitCode::FAILURE;
        }
    };
    let source = ConfigSource {
        path: args.config.clone(),
        overrides: ConfigOverrides {
            socket: args.socket,
            state_dir: args.state_dir,
            tcti: args.tcti,
            log_level: args.log_level,
            maintenance_interval_secs: args.maintenance_interval_secs,
        },
    };
    let config = match source.load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("kmsd: {err}");
            failed_status("cannot start", &err);
            return ExitCode::from(2);
        }
    };
    let set_log_level = match init_logging(config.log_level.as_str()) {
        Ok(setter) => setter,
        Err(err) => {
            eprintln!("kmsd: log_level {:?}: {err}", config.log_level.as_str());
            return ExitCode::from(2);
        }
    };
    harden_process();

    if args.test_crash_after_commit {
        tracing::warn!(
            "TEST CRASH POINT IN USE: kmsd exits right after its first committed change"
        );
        kmsd::server::dispatch::CRASH_AFTER_COMMIT.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let clock = match args.test_clock_file {
        Some(file) => {
            tracing::warn!(file = %file.display(), "TEST CLOCK IN USE: time is shifted by the offset in this file; never use this in production");
            Clock::with_offset_file(file)
        }
        None => Clock::system(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kmsd: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let daemon = match Daemon::open(config, clock) {
        Ok(daemon) => daemon,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("kmsd: {err}");
            failed_status("cannot start", &err);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon.run_with(RunOptions {
        activated,
        source: Some(source),
        targets: ReloadTargets {
            set_log_level: Some(set_log_level),
            ..ReloadTargets::default()
        },
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("kmsd: {err}");
            failed_status("failed", &err);
            ExitCode::FAILURE
        }
    }
}

/// Tells systemd why kmsd exits (`STATUS=`): systemd keeps the last status of a unit that
/// hit its start limit, so `systemctl status kmsd` shows the reason next to `failed`
/// (the log lines of earlier attempts are not shown there).
fn failed_status(what: &str, err: &dyn std::fmt::Display) {
    kmsd::systemd::Notifier.status(&format!("{what}: {err}"));
}

/// The filter kmsd runs with for a configured `log_level`: tss-esapi logs every context
/// open and close at info, so it is kept to warnings unless the level names it.
fn effective_filter(level: &str) -> String {
    if level.contains("tss_esapi") {
        level.to_string()
    } else {
        format!("{level},tss_esapi=warn")
    }
}

/// Installs the log subscriber; returns the setter a reload uses to change the filter.
/// (`level` was checked when the config was read; Err is the filter parser's reason.)
fn init_logging(level: &str) -> Result<LogLevelSetter, String> {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_new(effective_filter(level))
        .map_err(|err| err.to_string())?;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    Ok(std::sync::Arc::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(effective_filter(level))
            .map_err(|err| err.to_string())?;
        handle.reload(filter).map_err(|err| err.to_string())
    }))
}

/// No core dumps (they would hold unwrapped key material), no ptrace by other users, and
/// files private by default.
fn harden_process() {
    use nix::sys::resource::{setrlimit, Resource};
    use nix::sys::stat::{umask, Mode};
    umask(Mode::from_bits_truncate(0o077));
    if let Err(err) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %err, "cannot disable core dumps (RLIMIT_CORE)");
    }
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %err, "cannot clear the dumpable flag (PR_SET_DUMPABLE)");
    }
}
