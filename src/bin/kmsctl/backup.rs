//! `kmsctl backup --to DIR` (through the running kmsd: `KmsdBackup`, root only) and
//! `kmsctl restore --from DIR --state-dir DIR` (kmsd stopped; checks the manifest first).
//! README, "Back up the state dir"; format: docs/state-dir.md, "Online backups".

use crate::output::OutputFormat;
use crate::Failure;
use clap::Args;
use kmsd::api::operations as ops;
use kmsd::client::Client;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `kmsctl backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The backup directory: absolute, new or empty; kmsd creates it (0700) and writes the
    /// files, so its parent must be writable by kmsd's user.
    #[arg(long = "to", value_name = "DIR")]
    to: PathBuf,
}

/// `kmsctl restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (`kmsctl backup --to`).
    #[arg(long = "from", value_name = "DIR")]
    from: PathBuf,
    /// The state dir to restore into (new or empty; kmsd stopped).
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Restore over a non-empty state dir: it is moved aside to
    /// `<DIR>.before-restore-<time>` first.
    #[arg(long)]
    force: bool,
}

/// Runs `kmsctl backup`.
pub async fn backup(
    args: &BackupArgs,
    client: &Client,
    output: OutputFormat,
) -> Result<(), Failure> {
    let dir = if args.to.is_absolute() {
        args.to.clone()
    } else {
        std::env::current_dir().unwrap_or_default().join(&args.to)
    };
    let report = client
        .call_json(ops::KMSD_BACKUP.name, &json!({ "Directory": dir }))
        .await
        .map_err(|err| Failure::from_client(ops::KMSD_BACKUP.name, err))?;
    if output == OutputFormat::Json {
        return crate::write_stdout(
            &(serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"),
        );
    }
    let files = report["Files"].as_array().map(Vec::len).unwrap_or(0);
    crate::write_stdout(&format!(
        "Backup written to {}: {files} files, up to audit record {} (changes recorded before it are in it, later ones are not).\nmanifest.json SHA-256 {} (also in the KmsdBackup audit record)\n",
        report["Directory"].as_str().unwrap_or("?"),
        report["AuditSequence"],
        report["ManifestSha256"].as_str().unwrap_or("?"),
    ))
}

/// Runs `kmsctl restore`.
pub fn restore(args: &RestoreArgs, output: OutputFormat) -> Result<(), Failure> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| std::process::id().to_string());
    let restored = kmsd::backup::restore(&args.from, &args.state_dir, args.force, &stamp)
        .map_err(|err| Failure::Other(err.to_string()))?;
    if output == OutputFormat::Json {
        let value = json!({
            "StateDir": args.state_dir,
            "AuditSequence": restored.manifest.audit_sequence,
            "ManifestSha256": restored.manifest_sha256,
            "Files": restored.manifest.files,
            "MovedAside": restored.moved_aside,
        });
        return crate::write_stdout(
            &(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"),
        );
    }
    let mut text = format!(
        "Restored {} files into {} (backup taken {}, up to audit record {}; manifest SHA-256 {}).\n",
        restored.manifest.files.len(),
        args.state_dir.display(),
        restored.manifest.created,
        restored.manifest.audit_sequence,
        restored.manifest_sha256,
    );
    if let Some(aside) = &restored.moved_aside {
        text.push_str(&format!("The old state dir is now {}.\n", aside.display()));
    }
    text.push_str(&next_steps(&args.state_dir));
    crate::write_stdout(&text)
}

fn next_steps(state_dir: &Path) -> String {
    format!(
        "Every change after the backup's point is gone (a rollback). Next: chown -R kmsd:kmsd {0}, start kmsd, run `kmsctl audit verify`.\nOn a new TPM, first: kmsctl recovery restore --state-dir {0} ...\n",
        state_dir.display()
    )
}
