//! `kmsd-sdk-check`: the unchanged Rust `aws-sdk-kms` against kmsd's loopback TCP endpoint,
//! configured only by the standard environment variables (`AWS_ENDPOINT_URL_KMS`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`).
//!
//! ```text
//! kmsd-sdk-check round-trip KEY   # Encrypt (with a context), Decrypt, GenerateDataKey, DescribeKey
//! kmsd-sdk-check describe KEY     # DescribeKey only
//! ```
//!
//! Prints one JSON line: `{"ok":true,"arn":...,"keyId":...}`, or for an error the service
//! returned `{"ok":false,"code":"AccessDeniedException","message":...}`; exit code 0 either
//! way. Anything else (connection refused, a timeout, a response the SDK cannot parse, bad
//! arguments) goes to stderr with a non-zero exit code.

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_kms::Client;
use serde_json::json;
use std::process::ExitCode;
use std::time::Duration;

const PLAINTEXT: &[u8] = b"hello from aws-sdk-kms";
const CONTEXT_KEY: &str = "app";
const CONTEXT_VALUE: &str = "kmsd-sdk-check";
const USAGE: &str = "usage: kmsd-sdk-check round-trip|describe KEY_ID_OR_ARN";

/// Why a run did not produce a result line.
enum Failure {
    /// The service answered with an error: printed as a JSON result, exit code 0.
    Service { code: String, message: String },
    /// Anything else: printed on stderr, non-zero exit code.
    Other(String),
}

impl<E, R> From<SdkError<E, R>> for Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    fn from(err: SdkError<E, R>) -> Self {
        match err.as_service_error() {
            Some(service) => Failure::Service {
                code: service.code().unwrap_or("").to_string(),
                message: service.message().unwrap_or("").to_string(),
            },
            None => Failure::Other(DisplayErrorContext(&err).to_string()),
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    RoundTrip,
    Describe,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, key) = match args.as_slice() {
        [mode, key] if mode == "round-trip" => (Mode::RoundTrip, key.clone()),
        [mode, key] if mode == "describe" => (Mode::Describe, key.clone()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let client = client().await;
    match run(&client, mode, &key).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::Service { code, message }) => {
            println!("{}", json!({"ok": false, "code": code, "message": message}));
            ExitCode::SUCCESS
        }
        Err(Failure::Other(err)) => {
            eprintln!("kmsd-sdk-check: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The SDK's default configuration chain (endpoint, region and credentials from the
/// environment), with deadlines, and the SDK's hyper client without TLS: the endpoint is
/// plain HTTP on the loopback interface, so the HTTPS stack would only add build time.
async fn client() -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&config)
}

async fn run(client: &Client, mode: Mode, key: &str) -> Result<serde_json::Value, Failure> {
    let mut key_id = None;
    if let Mode::RoundTrip = mode {
        let encrypted = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(PLAINTEXT))
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await?;
        let blob = encrypted
            .ciphertext_blob()
            .ok_or_else(|| Failure::Other("Encrypt returned no CiphertextBlob".into()))?;
        key_id = encrypted.key_id().map(str::to_string);

        let decrypted = client
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await?;
        if decrypted.plaintext().map(Blob::as_ref) != Some(PLAINTEXT) {
            return Err(Failure::Other(
                "Decrypt did not return the encrypted plaintext".into(),
            ));
        }
        if decrypted.key_id() != key_id.as_deref() {
            return Err(Failure::Other(format!(
                "Decrypt named key {:?}, Encrypt named {key_id:?}",
                decrypted.key_id()
            )));
        }

        let data_key = client
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await?;
        let length = data_key.plaintext().map_or(0, |p| p.as_ref().len());
        if length != 32 || data_key.ciphertext_blob().is_none() {
            return Err(Failure::Other(format!(
                "GenerateDataKey returned a {length}-byte plaintext key (or no ciphertext)"
            )));
        }
    }

    let described = client.describe_key().key_id(key).send().await?;
    let arn = described
        .key_metadata()
        .and_then(|m| m.arn())
        .ok_or_else(|| Failure::Other("DescribeKey returned no KeyMetadata.Arn".into()))?;
    Ok(json!({"ok": true, "arn": arn, "keyId": key_id}))
}
