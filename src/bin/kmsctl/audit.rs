//! `kmsctl audit verify|query`: thin wiring to `kmsd::audit`. `verify` asks kmsd (root only)
//! to check MACs, the hash chain and its durable head; `verify --offline` checks the hash
//! chain alone from the files. `query` reads the files (it needs read access to them).

use crate::audit_query::{self as query, Filter};
use crate::output::OutputFormat;
use crate::Failure;
use clap::{Args, Subcommand};
use kmsd::audit::{self as trail, VerifyReport};
use kmsd::client::Client;
use std::path::PathBuf;

/// Where a packaged kmsd keeps its audit trail (`<state_dir>/audit`).
const DEFAULT_AUDIT_DIR: &str = "/var/lib/kmsd/audit";

/// The audit trail: prove it intact, or find who used a key.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the trail; report the first broken or missing record and exit 1 if any.
    ///
    /// Without --offline kmsd does the work (root only): MACs with its TPM-derived key, the
    /// hash chain, and, for the whole directory, the end of the trail against what it durably
    /// wrote (catching truncation). With --offline only the hash chain is checked, from the
    /// files, without kmsd.
    Verify(VerifyArgs),
    /// List request records: who used which key, when, and whether it was allowed.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Files to verify in chain order (default: every file of the audit directory). Without
    /// --offline, kmsd must be able to read them.
    files: Vec<PathBuf>,
    /// Check the hash chain from the files only, without kmsd (MACs are not checked).
    #[arg(long)]
    offline: bool,
    /// The audit directory (for --offline).
    #[arg(long, env = "KMSD_AUDIT_DIR", default_value = DEFAULT_AUDIT_DIR, value_name = "DIR")]
    audit_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Only records at or after this time: RFC 3339 (2025-01-31T00:00:00Z) or an age (7d, 12h, 30m).
    #[arg(long, value_name = "TIME")]
    start_time: Option<String>,
    /// Only records before this time (same forms).
    #[arg(long, value_name = "TIME")]
    end_time: Option<String>,
    /// Only records about this key: key id, key ARN or alias name.
    #[arg(long, value_name = "KEY")]
    key_id: Option<String>,
    /// Only requests from this uid.
    #[arg(long)]
    uid: Option<u32>,
    /// Only this operation, e.g. Decrypt.
    #[arg(long, value_name = "NAME")]
    event_name: Option<String>,
    /// Only requests that failed (denied, invalid, errors).
    #[arg(long)]
    error: bool,
    /// Also show the trail's own records (starts, checkpoints).
    #[arg(long)]
    include_service_events: bool,
    /// The audit directory.
    #[arg(long, env = "KMSD_AUDIT_DIR", default_value = DEFAULT_AUDIT_DIR, value_name = "DIR")]
    audit_dir: PathBuf,
    /// Read these files instead of the whole directory.
    files: Vec<PathBuf>,
}

/// Runs an audit subcommand.
pub async fn run(
    command: &AuditCommand,
    client: &Client,
    output: OutputFormat,
) -> Result<(), Failure> {
    match command {
        AuditCommand::Verify(args) => verify(args, client, output).await,
        AuditCommand::Query(args) => query(args, output),
    }
}

async fn verify(args: &VerifyArgs, client: &Client, output: OutputFormat) -> Result<(), Failure> {
    let report: VerifyReport = if args.offline {
        trail::verify_offline(&args.audit_dir, &args.files)
            .map_err(|err| Failure::Other(err.to_string()))?
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        let files: Vec<PathBuf> = args.files.iter().map(|f| cwd.join(f)).collect();
        let request = serde_json::json!({ "Files": files });
        client
            .call(kmsd::api::operations::KMSD_AUDIT_VERIFY.name, &request)
            .await
            .map_err(|err| {
                Failure::from_client(kmsd::api::operations::KMSD_AUDIT_VERIFY.name, err)
            })?
    };
    let text = match output {
        OutputFormat::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        OutputFormat::Text | OutputFormat::Table => report.render(),
    };
    crate::write_stdout(&text)?;
    if report.ok {
        Ok(())
    } else {
        Err(Failure::AuditBroken)
    }
}

fn query(args: &QueryArgs, output: OutputFormat) -> Result<(), Failure> {
    let now = kmsd::clock::Clock::system().now_ms();
    let time = |field, value: &Option<String>| {
        value
            .as_deref()
            .map(|text| query::parse_time(field, text, now))
            .transpose()
            .map_err(|err| crate::params::ParamError::new(field, err.to_string()))
    };
    let filter = Filter {
        start_ms: time("--start-time", &args.start_time)?,
        end_ms: time("--end-time", &args.end_time)?,
        key: args.key_id.clone(),
        uid: args.uid,
        event_name: args.event_name.clone(),
        errors_only: args.error,
        include_service_events: args.include_service_events,
    };
    let files = if args.files.is_empty() {
        query::files_in(&args.audit_dir).map_err(|err| Failure::Other(err.to_string()))?
    } else {
        args.files.clone()
    };
    let (records, skipped) =
        query::run(&files, &filter).map_err(|err| Failure::Other(err.to_string()))?;
    if skipped > 0 {
        eprintln!("kmsctl: {skipped} unreadable lines skipped (run `kmsctl audit verify`)");
    }
    let text = match output {
        OutputFormat::Json => serde_json::to_string_pretty(&records).unwrap_or_default() + "\n",
        OutputFormat::Text | OutputFormat::Table => query::render_table(&records),
    };
    crate::write_stdout(&text)
}
