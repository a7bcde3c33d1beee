//! `kmsctl recovery init|status|verify|restore|export-age`: the recovery escrow that lets a
//! state dir outlive its TPM (README, "If the TPM is lost"; docs/recovery-escrow.md).
//! `init`, `status` and `verify` ask the running kmsd (root only); `restore`, `export-age`
//! and `verify --state-dir` work on a state dir with kmsd stopped.

use crate::output::OutputFormat;
use crate::Failure;
use clap::{Args, Subcommand};
use kmsd::api::operations as ops;
use kmsd::client::Client;
use kmsd::recovery::{self, restore::RestoreReport, RecoverySecret};
use kmsd::reload::{ConfigOverrides, ConfigSource};
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The packaged config file, used when it exists and no --config is given.
const DEFAULT_CONFIG: &str = "/etc/kmsd/kmsd.toml";

/// The recovery escrow: the root key wrapped to secrets you keep, so that a lost TPM does
/// not lose the keys.
#[derive(Debug, Subcommand)]
pub enum RecoveryCommand {
    /// Set up the escrow (root only, kmsd running): age recipients and/or m-of-n shares.
    /// The shares are printed once, now; write them down and keep them apart.
    Init(InitArgs),
    /// Whether an escrow is configured, what it holds and when it was last verified.
    Status,
    /// Rehearse a restore: rebuild the root key from your secret and check it, changing
    /// nothing. Through kmsd (records the time: kmsd_recovery_escrow_last_verified_...), or
    /// with --state-dir on a stopped kmsd's state dir.
    Verify(VerifyArgs),
    /// Restore a state dir onto a new TPM (kmsd stopped): rebuild the root key from the
    /// escrow, seal it to this TPM, record it in the audit trail. A wrong or missing secret
    /// changes nothing.
    Restore(RestoreArgs),
    /// Print the escrow's age part (ASCII armor) for `age -d -i IDENTITY`, whose output
    /// `restore --recovery-key-file` takes.
    ExportAge(StateDirArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// An age X25519 recipient (age1…) to encrypt the recovery key to; repeatable.
    #[arg(long = "recipient", value_name = "AGE1...")]
    recipients: Vec<String>,
    /// Split the recovery key into this many shares.
    #[arg(long, value_name = "N", requires = "threshold")]
    shares: Option<u8>,
    /// Shares needed to recover (with --shares).
    #[arg(long, value_name = "M", requires = "shares")]
    threshold: Option<u8>,
    /// Replace an existing escrow (backups taken before keep the old one).
    #[arg(long)]
    replace: bool,
}

/// The operator's secret, one kind.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SecretArgs {
    /// An age identity file (AGE-SECRET-KEY-1… lines) of one of the escrow's recipients.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// A share as printed by `recovery init`; give it as many times as the threshold.
    #[arg(long = "share", value_name = "SHARE")]
    shares: Vec<String>,
    /// Read the shares from stdin, one per line.
    #[arg(long)]
    shares_stdin: bool,
    /// The recovery key file: what `age -d` printed from `recovery export-age`.
    #[arg(long, value_name = "FILE")]
    recovery_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StateDirArgs {
    /// The state dir (kmsd stopped).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// Check this state dir offline instead of asking kmsd (nothing is recorded).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// kmsd's config file (for --state-dir; default /etc/kmsd/kmsd.toml if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// The state dir to restore (kmsd stopped).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// kmsd's config file: the [tpm] and [audit] settings (default /etc/kmsd/kmsd.toml if
    /// present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The TCTI of the new TPM (overrides the config's [tpm] tcti).
    #[arg(long, value_name = "TCTI")]
    tcti: Option<String>,
}

fn other(err: impl std::fmt::Display) -> Failure {
    Failure::Other(err.to_string())
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<String>, Failure> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|err| other(format!("{what} {}: {err}", path.display())))
}

impl SecretArgs {
    fn secret(&self) -> Result<RecoverySecret, Failure> {
        if let Some(path) = &self.identity {
            return Ok(RecoverySecret::AgeIdentity(read_secret_file(
                path,
                "--identity",
            )?));
        }
        if let Some(path) = &self.recovery_key_file {
            return Ok(RecoverySecret::RecoveryKeyFile(read_secret_file(
                path,
                "--recovery-key-file",
            )?));
        }
        if self.shares_stdin {
            let mut text = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|err| other(format!("reading shares from stdin: {err}")))?;
            let shares = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(|line| Zeroizing::new(line.to_string()))
                .collect();
            return Ok(RecoverySecret::Shares(shares));
        }
        Ok(RecoverySecret::Shares(
            self.shares
                .iter()
                .map(|s| Zeroizing::new(s.clone()))
                .collect(),
        ))
    }

    /// The request fields of `KmsdRecoveryVerify`.
    fn request(&self) -> Result<Value, Failure> {
        Ok(match self.secret()? {
            RecoverySecret::AgeIdentity(text) => json!({ "Identity": text.as_str() }),
            RecoverySecret::RecoveryKeyFile(text) => json!({ "RecoveryKey": text.as_str() }),
            RecoverySecret::Shares(shares) => {
                let list: Vec<&str> = shares.iter().map(|s| s.as_str()).collect();
                json!({ "Shares": list })
            }
        })
    }
}

fn load_config(
    config: Option<&Path>,
    state_dir: &Path,
    tcti: Option<String>,
) -> Result<kmsd::config::Config, Failure> {
    let path = config.map(Path::to_path_buf).or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    ConfigSource {
        path,
        overrides: ConfigOverrides {
            state_dir: Some(state_dir.to_path_buf()),
            tcti,
            ..ConfigOverrides::default()
        },
    }
    .load_valid()
    .map_err(other)
}

/// Runs a recovery subcommand.
pub async fn run(
    command: &RecoveryCommand,
    client: &Client,
    output: OutputFormat,
) -> Result<(), Failure> {
    match command {
        RecoveryCommand::Init(args) => init(args, client, output).await,
        RecoveryCommand::Status => {
            let status = call(client, &ops::KMSD_RECOVERY_STATUS, &json!({})).await?;
            show_status(&status, output)
        }
        RecoveryCommand::Verify(args) => match &args.state_dir {
            None => {
                let request = args.secret.request()?;
                let status = call(client, &ops::KMSD_RECOVERY_VERIFY, &request).await?;
                if output == OutputFormat::Json {
                    return show_status(&status, output);
                }
                crate::write_stdout(&format!(
                    "OK: the secret rebuilds this kmsd's root key from escrow {}; recorded as the last verification.\n",
                    status["EscrowId"].as_str().unwrap_or("?")
                ))
            }
            Some(dir) => {
                let config = load_config(args.config.as_deref(), dir, None)?;
                let secret = args.secret.secret()?;
                let report = recovery::restore::rehearse(&config, &secret).map_err(other)?;
                show_report(&report, output, false)
            }
        },
        RecoveryCommand::Restore(args) => {
            if std::env::var_os("TSS2_LOG").is_none() {
                std::env::set_var("TSS2_LOG", "all+NONE");
            }
            let config = load_config(args.config.as_deref(), &args.state_dir, args.tcti.clone())?;
            let secret = args.secret.secret()?;
            let report = recovery::restore::restore(&config, &secret, kmsd::clock::Clock::system())
                .map_err(other)?;
            show_report(&report, output, true)
        }
        RecoveryCommand::ExportAge(args) => export_age(&args.state_dir),
    }
}

async fn call(client: &Client, op: &ops::Operation, request: &Value) -> Result<Value, Failure> {
    client
        .call_json(op.name, request)
        .await
        .map_err(|err| Failure::from_client(op.name, err))
}

async fn init(args: &InitArgs, client: &Client, output: OutputFormat) -> Result<(), Failure> {
    let mut request = json!({ "Recipients": args.recipients, "Replace": args.replace });
    if let (Some(shares), Some(threshold)) = (args.shares, args.threshold) {
        request["Shares"] = json!(shares);
        request["Threshold"] = json!(threshold);
    }
    let response = call(client, &ops::KMSD_RECOVERY_INIT, &request).await?;
    if output == OutputFormat::Json {
        return crate::write_stdout(
            &(serde_json::to_string_pretty(&response).unwrap_or_default() + "\n"),
        );
    }
    let mut text = describe(&response);
    if let Some(shares) = response["SharesText"].as_array().filter(|s| !s.is_empty()) {
        let count = shares.len();
        let threshold = response["Threshold"].as_u64().unwrap_or(0);
        text.push_str(&format!(
            "\nThe {count} shares below are shown ONLY NOW. Any {threshold} of them rebuild the root key:\nwrite each one down (or store it) separately, and give each to a different custodian.\n\n"
        ));
        for (i, share) in shares.iter().enumerate() {
            text.push_str(&format!(
                "share {} of {count}: {}\n",
                i + 1,
                share.as_str().unwrap_or("")
            ));
        }
    }
    text.push_str(
        "\nRehearse now: kmsctl recovery verify --identity FILE (or --share ... as many times as the threshold).\n",
    );
    crate::write_stdout(&text)
}

fn describe(status: &Value) -> String {
    if status["EscrowId"].is_null() {
        return "No recovery escrow is configured: a lost TPM loses every key (kmsctl recovery init).\n".into();
    }
    let mut text = format!(
        "Recovery escrow {} ({}), key database {}\n",
        status["EscrowId"].as_str().unwrap_or("?"),
        if status["Configured"] == json!(true) {
            "configured"
        } else {
            "NOT USABLE"
        },
        status["StateId"].as_str().unwrap_or("?")
    );
    if let Some(recipients) = status["Recipients"].as_array().filter(|r| !r.is_empty()) {
        for recipient in recipients {
            text.push_str(&format!(
                "  age recipient: {}\n",
                recipient.as_str().unwrap_or("")
            ));
        }
    }
    if let (Some(count), Some(threshold)) =
        (status["ShareCount"].as_u64(), status["Threshold"].as_u64())
    {
        text.push_str(&format!("  shares: any {threshold} of {count}\n"));
    }
    let when = |field: &str| {
        status[field]
            .as_f64()
            .map(|secs| kmsd::audit::record::format_time((secs * 1000.0) as i64))
    };
    if let Some(created) = when("CreationDate") {
        text.push_str(&format!("  created: {created}\n"));
    }
    match when("LastVerifiedDate") {
        Some(verified) => text.push_str(&format!(
            "  last verified: {verified} ({})\n",
            status["LastVerifiedMethod"].as_str().unwrap_or("?")
        )),
        None => text.push_str("  last verified: never (kmsctl recovery verify)\n"),
    }
    if let Some(problem) = status["Problem"].as_str() {
        text.push_str(&format!("  problem: {problem}\n"));
    }
    text
}

fn show_status(status: &Value, output: OutputFormat) -> Result<(), Failure> {
    let text = match output {
        OutputFormat::Json => serde_json::to_string_pretty(status).unwrap_or_default() + "\n",
        OutputFormat::Text | OutputFormat::Table => describe(status),
    };
    crate::write_stdout(&text)
}

fn show_report(report: &RestoreReport, output: OutputFormat, done: bool) -> Result<(), Failure> {
    if output == OutputFormat::Json {
        return crate::write_stdout(
            &(serde_json::to_string_pretty(report).unwrap_or_default() + "\n"),
        );
    }
    let mut text = if done {
        format!(
            "Restored from escrow {} ({}): the root key is sealed to this TPM (SRK {}).\n{} keys are served again once kmsd starts.\n",
            report.escrow_id, report.method, report.new_srk_name, report.keys
        )
    } else {
        format!(
            "OK: the secret ({}) rebuilds the root key of escrow {}, and it verifies every record of the key database ({} keys). Nothing was changed.\n",
            report.method, report.escrow_id, report.keys
        )
    };
    if let Some(sequence) = report.audit_sequence {
        text.push_str(&format!(
            "Recorded in the audit trail as record {sequence} (KmsdRecoveryRestore).\n"
        ));
    }
    if !report.lost_tpm_keys.is_empty() {
        text.push_str(&format!(
            "{} TPM-resident keys (cks-tpm) are lost: their private keys stayed in the old TPM. They can no longer sign (KeyUnavailableException); their public keys still verify. Schedule their deletion once nothing needs them:\n",
            report.lost_tpm_keys.len()
        ));
        for key in &report.lost_tpm_keys {
            text.push_str(&format!("  {key}\n"));
        }
    }
    crate::write_stdout(&text)
}

fn export_age(state_dir: &Path) -> Result<(), Failure> {
    let store = kmsd::keystore::Store::open_read_only(state_dir).map_err(other)?;
    let escrow = match store.meta(recovery::ESCROW_META).map_err(other)? {
        Some(bytes) => recovery::Escrow::from_json(&bytes).map_err(other)?,
        None => return Err(other(recovery::RecoveryError::NoEscrow)),
    };
    match escrow.age {
        Some(armored) => crate::write_stdout(&armored),
        None => Err(other(format!(
            "escrow {} has no age recipients (it was set up with shares only)",
            escrow.escrow_id
        ))),
    }
}
