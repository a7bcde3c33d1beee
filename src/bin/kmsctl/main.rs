//! `kmsctl`: the command-line client of kmsd, shaped like `aws kms`.
//!
//! Subcommands and options are those of `aws kms` (`kmsctl encrypt --key-id alias/app
//! --plaintext fileb://secret --query CiphertextBlob --output text`), so scripts written for
//! the aws cli work with the command name changed. Blob arguments take `fileb://PATH` or
//! base64 text; maps and lists take aws shorthand or JSON; `--output json` shows kmsd's
//! answer as it came, `--output text` uses aws cli's tab-separated layout, and `--query`
//! picks a field. `kmsctl raw OPERATION [JSON]` sends any operation.
//!
//! Exit status, as aws cli: 0 success, 2 usage error (bad option or parameter value),
//! 254 the service answered with an error, 255 any other failure (no connection, ...).
//!
//! Layout: `commands` (the aws-shaped subcommands and their requests), `params` (reading
//! argument values), `output` (rendering responses). A new subcommand is a variant of
//! [`Command`] and an arm in [`run`].

mod audit;
mod audit_query;
mod backup;
mod commands;
mod files;
mod output;
mod params;
mod recovery;

use clap::{Args, Parser, Subcommand};
use commands::{Call, KmsCommand};
use kmsd::client::{
    format_duration, Client, ClientError, TimeoutKind, Timeouts, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT, DEFAULT_SOCKET, SOCKET_ENV,
};
use output::{render, Json, OutputFormat, Query};
use params::{BinaryFormat, Inputs, ParamError};
use serde_json::Value;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status of a bad option or parameter value (also clap's).
const EXIT_USAGE: u8 = 2;
/// Exit status when kmsd answered with an AWS exception (as aws cli).
const EXIT_SERVICE: u8 = 254;
/// Exit status of any other failure: no connection, broken answer, I/O (as aws cli).
const EXIT_OTHER: u8 = 255;

/// kmsctl: the command-line client of kmsd, with the subcommands and options of `aws kms`.
#[derive(Debug, Parser)]
#[command(name = "kmsctl", version)]
#[command(
    after_help = "Exit status: 0 success, 2 usage error, 254 service error \
                       (the AWS exception is printed), 255 other errors."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
struct GlobalArgs {
    /// kmsd's Unix socket (an empty value means the default).
    #[arg(long, global = true, env = SOCKET_ENV, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    socket: OsString,
    /// json (default): the response as kmsd sent it; text: aws cli's tab-separated
    /// layout; table: `kmsctl usage` only (its default).
    #[arg(long, global = true, value_enum)]
    output: Option<OutputFormat>,
    /// Show part of the response: a field (Plaintext), a path (KeyMetadata.KeyId), an index
    /// (Keys[0]) or a projection (Keys[].KeyId). With --output text, strings print bare.
    #[arg(long, global = true, value_name = "EXPRESSION")]
    query: Option<String>,
    /// How blob arguments other than fileb:// are read: base64 text, or the text's own
    /// bytes (raw-in-base64-out).
    #[arg(long, global = true, value_enum, default_value_t)]
    cli_binary_format: BinaryFormat,
    /// List commands: send one request and show its response as is (with NextMarker),
    /// instead of fetching every page.
    #[arg(long, global = true)]
    no_paginate: bool,
    /// Seconds to wait for the connection to kmsd's socket; 0 waits without limit.
    #[arg(long, global = true, value_name = "SECONDS",
          default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs())]
    cli_connect_timeout: u64,
    /// Seconds to wait for each read or write on the connection (kmsd's answer); 0 waits
    /// without limit.
    #[arg(long, global = true, value_name = "SECONDS",
          default_value_t = DEFAULT_READ_TIMEOUT.as_secs())]
    cli_read_timeout: u64,
}

impl GlobalArgs {
    /// The client of the chosen socket, with the chosen deadlines.
    fn client(&self) -> Client {
        let seconds = |value: u64| (value > 0).then(|| Duration::from_secs(value));
        Client::new(socket_path(&self.socket)).with_timeouts(Timeouts {
            connect: seconds(self.cli_connect_timeout),
            read: seconds(self.cli_read_timeout),
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Kms(KmsCommand),
    /// Sends any operation with a JSON request, e.g. `kmsctl raw ListKeys '{"Limit": 5}'`.
    ///
    /// The request is JSON text, file://PATH, or read from stdin when absent or `-` (an
    /// empty stdin, or a terminal, sends {}). The response is shown as for any subcommand.
    Raw(RawArgs),
    /// kmsd extension: requests and estimated cost per key for a month, plus host totals
    /// (`--output table`, the default, or `--output json`).
    Usage(UsageArgs),
    /// The audit trail: `audit verify` proves it intact, `audit query` shows who used a key.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The recovery escrow: `recovery init` sets it up, `recovery verify` rehearses,
    /// `recovery restore` moves a state dir onto a new TPM (README, "If the TPM is lost").
    #[command(subcommand)]
    Recovery(recovery::RecoveryCommand),
    /// kmsd extension: a consistent backup of the state dir while kmsd serves (root only),
    /// e.g. `kmsctl backup --to /var/backups/kmsd/2026-01-31`.
    Backup(backup::BackupArgs),
    /// Restores a backup into a new or empty state dir (kmsd stopped); checks every file
    /// against the backup's manifest first.
    Restore(backup::RestoreArgs),
    /// Encrypts a file or stream into an AWS Encryption SDK message under a kmsd key
    /// (GenerateDataKey), e.g. `kmsctl encrypt-file --key-id alias/app -i data -o data.enc`.
    EncryptFile(files::EncryptFileArgs),
    /// Decrypts an AWS Encryption SDK message (Decrypt), checking every tag and the
    /// signature, e.g. `kmsctl decrypt-file --key-id ARN -i data.enc -o data`.
    DecryptFile(files::DecryptFileArgs),
}

#[derive(Debug, Args)]
struct UsageArgs {
    /// The billing month (UTC), YYYY-MM; default: the current month.
    #[arg(long, value_name = "YYYY-MM")]
    month: Option<String>,
    /// Only this key (key id); the totals stay the host's.
    #[arg(long, value_name = "KEY_ID")]
    key_id: Option<String>,
}

#[derive(Debug, Args)]
struct RawArgs {
    /// The operation, e.g. Encrypt (a TrentService. prefix is accepted).
    operation: String,
    /// The request body: JSON text, file://PATH, or - for stdin.
    #[arg(allow_hyphen_values = true)]
    json: Option<String>,
}

impl RawArgs {
    fn call(&self, inputs: &mut Inputs<'_>, stdin_is_terminal: bool) -> Result<Call, ParamError> {
        let operation = self
            .operation
            .strip_prefix("TrentService.")
            .unwrap_or(&self.operation);
        if operation.is_empty() || !operation.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ParamError::new(
                "OPERATION",
                "expected an operation name such as Encrypt or ListKeys",
            ));
        }
        let request = match self.json.as_deref() {
            None if stdin_is_terminal => Value::Object(Default::default()),
            None | Some("-") => inputs.json_from_stdin("JSON")?,
            Some(text) => inputs.json("JSON", text)?,
        };
        Ok(Call {
            operation: operation.to_string(),
            request,
            paginate: None,
        })
    }
}

/// Why kmsctl failed; printed to stderr.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error("{0}")]
    Param(#[from] ParamError),
    #[error("An error occurred ({exception}) when calling the {operation} operation: {message}")]
    Service {
        operation: String,
        exception: String,
        message: String,
    },
    #[error(
        "Could not connect to kmsd at {}: {source}\nIs kmsd running? Name its socket with \
         --socket PATH or the {SOCKET_ENV} environment variable (default {DEFAULT_SOCKET}).",
        path.display()
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "kmsctl: timed out after {} {what} when calling the {operation} operation \
         (--{} SECONDS sets the limit; 0 waits without limit)",
        format_duration(*after),
        match kind { TimeoutKind::Connect => "cli-connect-timeout", TimeoutKind::Read => "cli-read-timeout" }
    )]
    Timeout {
        operation: String,
        kind: TimeoutKind,
        what: String,
        after: Duration,
    },
    #[error("kmsctl: {0}")]
    Other(String),
    #[error("kmsctl: the audit trail failed verification (see the report above)")]
    AuditBroken,
}

impl Failure {
    pub(crate) fn from_client(operation: &str, err: ClientError) -> Failure {
        match err {
            ClientError::Service {
                exception, message, ..
            } => Failure::Service {
                operation: operation.to_string(),
                exception,
                message,
            },
            ClientError::Connect { path, source } => Failure::Connect { path, source },
            ClientError::Timeout { kind, what, after } => Failure::Timeout {
                operation: operation.to_string(),
                kind,
                what,
                after,
            },
            other => Failure::Other(format!("calling the {operation} operation: {other}")),
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Param(_) => EXIT_USAGE,
            Failure::Service { .. } => EXIT_SERVICE,
            Failure::Connect { .. } | Failure::Timeout { .. } | Failure::Other(_) => EXIT_OTHER,
            Failure::AuditBroken => 1,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdin = std::io::stdin();
    let stdin_is_terminal = stdin.is_terminal();
    match run(cli, &mut stdin, stdin_is_terminal).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

async fn run(cli: Cli, stdin: &mut dyn Read, stdin_is_terminal: bool) -> Result<(), Failure> {
    // Every argument is checked (and every file read) before anything is sent.
    let query = cli
        .global
        .query
        .as_deref()
        .map(Query::parse)
        .transpose()
        .map_err(|message| ParamError::new("--query", message))?;
    let mut inputs = Inputs::new(cli.global.cli_binary_format, stdin);
    let call = match &cli.command {
        Command::Kms(command) => command.call(&mut inputs)?,
        Command::Raw(raw) => raw.call(&mut inputs, stdin_is_terminal)?,
        Command::Usage(args) => return usage(&cli.global, args).await,
        Command::Audit(command) => {
            return audit::run(
                command,
                &cli.global.client(),
                cli.global.output.unwrap_or_default(),
            )
            .await
        }
        Command::Recovery(command) => {
            return recovery::run(
                command,
                &cli.global.client(),
                cli.global.output.unwrap_or(OutputFormat::Text),
            )
            .await
        }
        Command::Backup(args) => {
            return backup::backup(
                args,
                &cli.global.client(),
                cli.global.output.unwrap_or(OutputFormat::Text),
            )
            .await
        }
        Command::Restore(args) => {
            return backup::restore(args, cli.global.output.unwrap_or(OutputFormat::Text))
        }
        Command::EncryptFile(args) => return files::encrypt_file(&cli.global.client(), args).await,
        Command::DecryptFile(args) => return files::decrypt_file(&cli.global.client(), args).await,
    };
    let format = cli.global.output.unwrap_or_default();
    let client = cli.global.client();
    let response = send(&client, call, !cli.global.no_paginate).await?;
    let shown = match &query {
        Some(query) => query.apply(&response),
        None => response,
    };
    write_stdout(&render(&shown, format))
}

/// Asks kmsd for a month's report (`TrentService.KmsdGetUsage`).
async fn fetch_usage(
    client: &Client,
    month: Option<&str>,
    key_id: Option<&str>,
) -> Result<kmsd::metering::UsageReport, ClientError> {
    let mut request = serde_json::Map::new();
    if let Some(month) = month {
        request.insert("Month".into(), month.into());
    }
    if let Some(key_id) = key_id {
        request.insert("KeyId".into(), key_id.into());
    }
    client
        .call(kmsd::metering::USAGE_OPERATION, &Value::Object(request))
        .await
}

/// `kmsctl usage`: the report is built by kmsd (`kmsd::metering::report`).
async fn usage(global: &GlobalArgs, args: &UsageArgs) -> Result<(), Failure> {
    use kmsd::metering::{report, Month, USAGE_OPERATION};
    if let Some(month) = args.month.as_deref() {
        if Month::parse(month).is_none() {
            return Err(ParamError::new("--month", format!("'{month}' is not YYYY-MM")).into());
        }
    }
    let client = global.client();
    let usage = fetch_usage(&client, args.month.as_deref(), args.key_id.as_deref())
        .await
        .map_err(|err| Failure::from_client(USAGE_OPERATION, err))?;
    let text = match global.output {
        None | Some(OutputFormat::Table) => report::render_table(&usage),
        Some(OutputFormat::Json) => report::to_json(&usage),
        Some(OutputFormat::Text) => {
            return Err(ParamError::new("--output", "usage prints table or json").into())
        }
    };
    write_stdout(&text)
}

/// The socket to use; an empty `--socket` or `KMSD_SOCKET` means the default.
fn socket_path(value: &OsStr) -> PathBuf {
    if value.is_empty() {
        PathBuf::from(DEFAULT_SOCKET)
    } else {
        PathBuf::from(value)
    }
}

async fn invoke(client: &Client, operation: &str, request: &Value) -> Result<Json, Failure> {
    client
        .call::<Value, Json>(operation, request)
        .await
        .map_err(|err| Failure::from_client(operation, err))
}

/// Sends the call; a paginated list call follows NextMarker to the end and answers
/// `{"<Items>": [every page's items]}`, as aws cli does.
async fn send(client: &Client, call: Call, paginate: bool) -> Result<Json, Failure> {
    let Call {
        operation,
        mut request,
        paginate: items_field,
    } = call;
    let Some(items_field) = items_field.filter(|_| paginate) else {
        return invoke(client, &operation, &request).await;
    };
    let mut items = Vec::new();
    let mut markers = HashSet::new();
    loop {
        let mut page = invoke(client, &operation, &request).await?;
        if let Some(Json::Array(list)) = page.take(items_field) {
            items.extend(list);
        }
        let next = match (page.get("Truncated"), page.get("NextMarker")) {
            (Some(Json::Bool(true)), Some(Json::String(marker))) => marker.clone(),
            _ => break,
        };
        if !markers.insert(next.clone()) {
            return Err(Failure::Other(format!(
                "{operation} returned the same NextMarker twice; stopping (use --no-paginate \
                 to see one page)"
            )));
        }
        if let Value::Object(fields) = &mut request {
            fields.insert("Marker".to_string(), Value::String(next));
        }
    }
    Ok(Json::Object(vec![(
        items_field.to_string(),
        Json::Array(items),
    )]))
}

/// Writes the output; a closed pipe (`kmsctl list-keys | head -1`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(Failure::Other(format!("cannot write the output: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use kmsd::api::operations::OPERATIONS;
    use serde_json::json;

    fn kebab(operation: &str) -> String {
        let mut out = String::new();
        for (i, c) in operation.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeouts_default_to_10_and_60_seconds_and_0_means_no_limit() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["kmsctl"].iter().chain(args).copied())
                .map(|cli| cli.global.client().timeouts())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            parse(&["list-keys"]),
            Ok(Timeouts {
                connect: Some(Duration::from_secs(10)),
                read: Some(Duration::from_secs(60)),
            })
        );
        assert_eq!(
            parse(&[
                "list-keys",
                "--cli-connect-timeout",
                "0",
                "--cli-read-timeout",
                "5"
            ]),
            Ok(Timeouts {
                connect: None,
                read: Some(Duration::from_secs(5)),
            })
        );
        assert_eq!(
            parse(&["--cli-read-timeout", "0", "list-keys"]).map(|t| t.read),
            Ok(None)
        );
        assert!(parse(&["list-keys", "--cli-read-timeout", "soon"]).is_err());
    }

    #[test]
    fn every_operation_has_its_subcommand_and_back() {
        let cli = Cli::command();
        for operation in OPERATIONS.iter().filter(|op| op.is_aws()) {
            assert!(
                cli.find_subcommand(kebab(operation.name)).is_some(),
                "no subcommand for {}",
                operation.name
            );
        }
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            // raw, help, and kmsd extensions (usage, audit, recovery, backup and restore,
            // the file commands)
            if [
                "raw",
                "help",
                "usage",
                "audit",
                "recovery",
                "backup",
                "restore",
                "encrypt-file",
                "decrypt-file",
            ]
            .contains(&name)
            {
                continue;
            }
            assert!(
                OPERATIONS.iter().any(|op| kebab(op.name) == name),
                "{name} is not a kmsd operation"
            );
        }
    }

    fn plan(args: &[&str], stdin: &'static [u8]) -> Result<(Call, Cli), String> {
        let cli = Cli::try_parse_from(std::iter::once("kmsctl").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let mut stdin = stdin;
        let mut inputs = Inputs::new(cli.global.cli_binary_format, &mut stdin);
        let call = match &cli.command {
            Command::Kms(command) => command.call(&mut inputs),
            Command::Raw(raw) => raw.call(&mut inputs, false),
            Command::Usage(_) => Err(ParamError::new("usage", "not a plain call")),
            Command::Audit(_) => return Err("audit sends no kms call".into()),
            Command::Recovery(_) => return Err("recovery sends no kms call".into()),
            Command::Backup(_) | Command::Restore(_) => {
                return Err("backup and restore send no kms call".into())
            }
            Command::EncryptFile(_) | Command::DecryptFile(_) => {
                return Err("the file commands are not one call".into())
            }
        }
        .map_err(|e| e.to_string())?;
        Ok((call, cli))
    }

    /// (arguments, stdin, operation, request, paginated items)
    type RequestCase = (
        Vec<&'static str>,
        &'static [u8],
        &'static str,
        Value,
        Option<&'static str>,
    );

    #[test]
    fn requests() {
        let cases: Vec<RequestCase> = vec![
            (
                vec![
                    "create-key",
                    "--description",
                    "-d-",
                    "--tags",
                    "TagKey=a,TagValue=1",
                    r#"[{"TagKey":"b","TagValue":"2"}]"#,
                    "--no-multi-region",
                ],
                b"",
                "CreateKey",
                json!({"Description": "-d-", "MultiRegion": false, "Tags": [
                    {"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}]}),
                None,
            ),
            (vec!["create-key"], b"", "CreateKey", json!({}), None),
            (
                vec![
                    "describe-key",
                    "--key-id",
                    "alias/x",
                    "--grant-tokens",
                    "t1",
                    "t2",
                ],
                b"",
                "DescribeKey",
                json!({"KeyId": "alias/x", "GrantTokens": ["t1", "t2"]}),
                None,
            ),
            (vec!["list-keys"], b"", "ListKeys", json!({}), Some("Keys")),
            (
                vec!["list-keys", "--limit", "5"],
                b"",
                "ListKeys",
                json!({"Limit": 5}),
                None,
            ),
            (
                vec!["list-keys", "--page-size", "5"],
                b"",
                "ListKeys",
                json!({"Limit": 5}),
                Some("Keys"),
            ),
            (
                vec!["list-aliases", "--key-id", "k", "--marker", "m"],
                b"",
                "ListAliases",
                json!({"KeyId": "k", "Marker": "m"}),
                None,
            ),
            (
                vec!["list-resource-tags", "--key-id", "k"],
                b"",
                "ListResourceTags",
                json!({"KeyId": "k"}),
                Some("Tags"),
            ),
            (
                vec!["list-key-rotations", "--key-id", "k"],
                b"",
                "ListKeyRotations",
                json!({"KeyId": "k"}),
                Some("Rotations"),
            ),
            (
                vec![
                    "schedule-key-deletion",
                    "--key-id",
                    "k",
                    "--pending-window-in-days",
                    "7",
                ],
                b"",
                "ScheduleKeyDeletion",
                json!({"KeyId": "k", "PendingWindowInDays": 7}),
                None,
            ),
            (
                vec![
                    "schedule-key-deletion",
                    "--key-id",
                    "k",
                    "--pending-window-in-days",
                    "-1",
                ],
                b"",
                "ScheduleKeyDeletion",
                json!({"KeyId": "k", "PendingWindowInDays": -1}),
                None,
            ),
            (
                vec![
                    "update-alias",
                    "--alias-name",
                    "alias/a",
                    "--target-key-id",
                    "k",
                ],
                b"",
                "UpdateAlias",
                json!({"AliasName": "alias/a", "TargetKeyId": "k"}),
                None,
            ),
            (
                vec!["untag-resource", "--key-id", "k", "--tag-keys", "a", "b"],
                b"",
                "UntagResource",
                json!({"KeyId": "k", "TagKeys": ["a", "b"]}),
                None,
            ),
            (
                vec![
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "fileb://-",
                    "--encryption-context",
                    "a=1,b=2",
                    "--output",
                    "text",
                    "--dry-run",
                ],
                b"hello",
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "aGVsbG8=", "DryRun": true,
                       "EncryptionContext": {"a": "1", "b": "2"}}),
                None,
            ),
            (
                vec![
                    "--cli-binary-format",
                    "raw-in-base64-out",
                    "encrypt",
                    "--key-id",
                    "k",
                    "--plaintext",
                    "hello",
                ],
                b"",
                "Encrypt",
                json!({"KeyId": "k", "Plaintext": "aGVsbG8="}),
                None,
            ),
            (
                vec![
                    "decrypt",
                    "--ciphertext-blob",
                    "AAEC",
                    "--encryption-context",
                    r#"{"a": "x,y"}"#,
                    "--key-id",
                    "k",
                ],
                b"",
                "Decrypt",
                json!({"CiphertextBlob": "AAEC", "EncryptionContext": {"a": "x,y"},
                       "KeyId": "k"}),
                None,
            ),
            (
                vec![
                    "re-encrypt",
                    "--ciphertext-blob",
                    "fileb://-",
                    "--destination-key-id",
                    "k2",
                    "--source-encryption-context",
                    "a=1",
                    "--destination-encryption-context",
                    "b=2",
                    "--source-key-id",
                    "k1",
                ],
                b"\x00\x01\x02",
                "ReEncrypt",
                json!({"CiphertextBlob": "AAEC", "DestinationKeyId": "k2", "SourceKeyId": "k1",
                       "SourceEncryptionContext": {"a": "1"},
                       "DestinationEncryptionContext": {"b": "2"}}),
                None,
            ),
            (
                vec![
                    "generate-data-key",
                    "--key-id",
                    "k",
                    "--key-spec",
                    "AES_256",
                ],
                b"",
                "GenerateDataKey",
                json!({"KeyId": "k", "KeySpec": "AES_256"}),
                None,
            ),
            (
                vec![
                    "generate-data-key-without-plaintext",
                    "--key-id",
                    "k",
                    "--number-of-bytes",
                    "16",
                    "--encryption-context",
                    "p=q",
                ],
                b"",
                "GenerateDataKeyWithoutPlaintext",
                json!({"KeyId": "k", "NumberOfBytes": 16, "EncryptionContext": {"p": "q"}}),
                None,
            ),
            (
                vec!["generate-random", "--number-of-bytes", "32"],
                b"",
                "GenerateRandom",
                json!({"NumberOfBytes": 32}),
                None,
            ),
            (
                vec![
                    "enable-key-rotation",
                    "--key-id",
                    "k",
                    "--rotation-period-in-days",
                    "90",
                ],
                b"",
                "EnableKeyRotation",
                json!({"KeyId": "k", "RotationPeriodInDays": 90}),
                None,
            ),
            (
                vec!["rotate-key-on-demand", "--key-id", "k"],
                b"",
                "RotateKeyOnDemand",
                json!({"KeyId": "k"}),
                None,
            ),
            (
                vec!["raw", "TrentService.ListKeys", r#"{"Limit": 2}"#],
                b"",
                "ListKeys",
                json!({"Limit": 2}),
                None,
            ),
            (
                vec!["raw", "Future"],
                b"{\"X\": [1]}",
                "Future",
                json!({"X": [1]}),
                None,
            ),
            (
                vec!["raw", "ListKeys", "-"],
                b"",
                "ListKeys",
                json!({}),
                None,
            ),
        ];
        for (args, stdin, operation, request, paginate) in cases {
            let (call, _) = plan(&args, stdin).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(call.operation, operation, "{args:?}");
            assert_eq!(call.request, request, "{args:?}");
            assert_eq!(call.paginate, paginate, "{args:?}");
        }
    }

    #[test]
    fn usage_errors() {
        let cases: &[&[&str]] = &[
            &["encrypt", "--plaintext", "aGVsbG8="],
            &["encrypt", "--key-id", "k", "--plaintext", "not base64!"],
            &[
                "encrypt",
                "--key-id",
                "k",
                "--plaintext",
                "aGk=",
                "--encryption-context",
                "a",
            ],
            &["list-keys", "--limit", "x"],
            &["list-keys", "--limit", "5", "--page-size", "5"],
            &["tag-resource", "--key-id", "k"],
            &["tag-resource", "--key-id", "k", "--tags", "Key=a,Value=b"],
            &["raw", "Bad Name"],
            &["raw", "ListKeys", "{"],
            &["--output", "yaml", "list-keys"],
            &["audit"],
        ];
        for args in cases {
            assert!(plan(args, b"").is_err(), "{args:?}");
        }
    }

    #[test]
    fn file_command_arguments() {
        let parses = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("kmsctl").chain(args.iter().copied())).is_ok()
        };
        let good: &[&[&str]] = &[
            &["encrypt-file", "--key-id", "alias/a", "-i", "-", "-o", "-"],
            &[
                "encrypt-file",
                "--key-id",
                "k",
                "--input",
                "x",
                "--out",
                "y",
                "--encryption-context",
                "a=1",
                "b=2",
                "--encryption-context",
                "c=3",
                "--frame-length",
                "1024",
                "--algorithm",
                "0x0478",
                "--output",
                "json",
            ],
            &[
                "decrypt-file",
                "--key-id",
                "arn:a",
                "arn:b",
                "-i",
                "x",
                "-o",
                "y",
            ],
            &[
                "decrypt-file",
                "--discovery",
                "--discovery-partition",
                "kmsd",
                "--discovery-account",
                "000000000000",
                "-i",
                "x",
                "-o",
                "y",
            ],
        ];
        for args in good {
            assert!(parses(args), "{args:?}");
        }
        let bad: &[&[&str]] = &[
            &["encrypt-file", "--key-id", "k", "-i", "x"],
            &[
                "encrypt-file",
                "--key-id",
                "k",
                "-i",
                "x",
                "-o",
                "y",
                "--algorithm",
                "0x0378",
            ],
            &[
                "encrypt-file",
                "--key-id",
                "k",
                "-i",
                "x",
                "-o",
                "y",
                "--encryption-context",
                "a",
            ],
            &["decrypt-file", "-i", "x", "-o", "y"],
            &[
                "decrypt-file",
                "--key-id",
                "arn:a",
                "--discovery",
                "-i",
                "x",
                "-o",
                "y",
            ],
            &[
                "decrypt-file",
                "--discovery",
                "--discovery-partition",
                "kmsd",
                "-i",
                "x",
                "-o",
                "y",
            ],
            &[
                "decrypt-file",
                "--discovery-account",
                "1",
                "--key-id",
                "a",
                "-i",
                "x",
                "-o",
                "y",
            ],
        ];
        for args in bad {
            assert!(!parses(args), "{args:?}");
        }
    }

    #[test]
    fn global_options_anywhere() {
        let (_, cli) = plan(
            &[
                "list-keys",
                "--output",
                "text",
                "--query",
                "Keys[].KeyId",
                "--socket",
                "/s",
            ],
            b"",
        )
        .unwrap();
        assert_eq!(cli.global.output, Some(OutputFormat::Text));
        assert_eq!(cli.global.query.as_deref(), Some("Keys[].KeyId"));
        assert_eq!(socket_path(&cli.global.socket), PathBuf::from("/s"));
        assert_eq!(socket_path(OsStr::new("")), PathBuf::from(DEFAULT_SOCKET));
    }

    #[test]
    fn failure_messages_and_exit_codes() {
        let service = Failure::from_client(
            "DescribeKey",
            ClientError::Service {
                status: 400,
                exception: "NotFoundException".into(),
                message: "key 'x' does not exist".into(),
            },
        );
        assert_eq!(
            service.to_string(),
            "An error occurred (NotFoundException) when calling the DescribeKey operation: \
             key 'x' does not exist"
        );
        assert_eq!(service.exit_code(), 254);
        let connect = Failure::from_client(
            "ListKeys",
            ClientError::Connect {
                path: "/nowhere.sock".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
        );
        let text = connect.to_string();
        assert!(
            text.contains("/nowhere.sock") && text.contains("--socket"),
            "{text}"
        );
        assert!(text.contains("KMSD_SOCKET"), "{text}");
        assert_eq!(connect.exit_code(), 255);
        assert_eq!(Failure::Param(ParamError::new("--x", "bad")).exit_code(), 2);
        assert_eq!(
            Failure::from_client("X", ClientError::Codec("oops".into())).exit_code(),
            255
        );
    }
}
