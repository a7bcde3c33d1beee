//! File encryption in the AWS Encryption SDK message format against a real kmsd (swtpm):
//! `kmsd::envelope` through the Rust client, and `kmsctl encrypt-file` / `decrypt-file`
//! interoperating both ways with the official AWS Encryption CLI (Python), whose KMS client
//! reaches kmsd, unchanged, through kmsd's loopback TCP endpoint (`listen_tcp`).
//!
//! The interop test needs the AWS Encryption SDK and CLI in `/opt/kmsd-test-python`
//! (`scripts/install-deps.sh` puts them there); without them it is skipped with a message,
//! except under CI (`CI` set), where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use kmsd::envelope::{
    AlgorithmSuite, DecryptOptions, EncryptOptions, Encryptor, EnvelopeError, KeyFilter,
    ParsedMessage,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long one external command may run.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// Creates a key; returns (key id, key ARN).
async fn create_key_and_arn(client: &Client) -> (String, String) {
    let created = ok(client, "CreateKey", json!({"Description": "envelope test"})).await;
    let metadata = &created["KeyMetadata"];
    (
        metadata["KeyId"].as_str().unwrap().to_string(),
        metadata["Arn"].as_str().unwrap().to_string(),
    )
}

fn plaintext(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn context(pairs: &[(&str, &str)]) -> kmsd::crypto::EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn envelope_round_trip_through_the_kmsd_client() {
    let fx = Fixture::start();
    let client = fx.client();
    let (key_id, arn) = create_key_and_arn(&client).await;
    let (_, other_arn) = create_key_and_arn(&client).await;
    for suite in [
        AlgorithmSuite::CommitKeyEcdsaP384,
        AlgorithmSuite::CommitKey,
    ] {
        for len in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let data = plaintext(len);
            let options = EncryptOptions {
                suite,
                frame_length: 4096,
                context: context(&[("purpose", "envelope"), ("size", &len.to_string())]),
            };
            let encryptor = Encryptor::new(&client, &key_id, options).await.unwrap();
            assert_eq!(encryptor.key_arn(), arn);
            let mut message = Vec::new();
            encryptor.encrypt(&data[..], &mut message).unwrap();

            let mut options = DecryptOptions::new(KeyFilter::Strict(vec![arn.clone()]));
            options.required_context = context(&[("purpose", "envelope")]);
            let unlocked = ParsedMessage::read_header(&message[..], options)
                .unwrap()
                .unlock(&client)
                .await
                .unwrap();
            let mut out = Vec::new();
            let summary = unlocked.decrypt_to(&mut out).unwrap();
            assert_eq!(out, data, "{suite} {len}");
            assert_eq!(summary.key_arn, arn);
            assert_eq!(summary.frames as usize, len / 4096 + 1);
        }
    }

    let mut message = Vec::new();
    Encryptor::new(&client, &key_id, EncryptOptions::default())
        .await
        .unwrap()
        .encrypt(&b"bound to kmsd"[..], &mut message)
        .unwrap();
    // Strict mode with another key: kmsd is not even asked.
    let other = DecryptOptions::new(KeyFilter::Strict(vec![other_arn]));
    let err = ParsedMessage::read_header(&message[..], other)
        .unwrap()
        .unlock(&client)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not one of the allowed key ARNs"),
        "{err}"
    );
    // Discovery: kmsd's partition and account.
    let discovery = DecryptOptions::new(KeyFilter::Discovery {
        partition: "kmsd".into(),
        accounts: vec!["000000000000".into()],
    });
    let mut out = Vec::new();
    ParsedMessage::read_header(&message[..], discovery)
        .unwrap()
        .unlock(&client)
        .await
        .unwrap()
        .decrypt_to(&mut out)
        .unwrap();
    assert_eq!(out, b"bound to kmsd");
    // A damaged encrypted data key: kmsd's Decrypt refuses it, and the error says so.
    let parsed = ParsedMessage::read_header(
        &message[..],
        DecryptOptions::new(KeyFilter::Strict(vec![arn.clone()])),
    )
    .unwrap();
    let mut header = parsed.header().clone();
    let header_len = header.encode().unwrap().len() + 16;
    header.encrypted_data_keys[0].ciphertext[20] ^= 1;
    let mut damaged = header.encode().unwrap();
    damaged.extend_from_slice(&message[header_len - 16..]);
    let err = ParsedMessage::read_header(
        &damaged[..],
        DecryptOptions::new(KeyFilter::Strict(vec![arn.clone()])),
    )
    .unwrap()
    .unlock(&client)
    .await
    .unwrap_err();
    assert!(matches!(err, EnvelopeError::NoDataKey { .. }), "{err}");
    assert!(err.to_string().contains("Decrypt failed"), "{err}");
    // A key that does not exist, on encryption: kmsd's exception is named.
    let err = Encryptor::new(&client, "alias/none", EncryptOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.exception(), Some("NotFoundException"), "{err}");
}

/// Runs a command to completion within [`COMMAND_DEADLINE`] (killed after it).
fn run(command: &mut Command) -> Output {
    let mut child: Child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {command:?}: {err}"));
    let deadline = Instant::now() + COMMAND_DEADLINE;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {COMMAND_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Debian's interpreter, which any uid can run, and where install-deps puts the AWS clients.
const PYTHON: &str = "/usr/bin/python3";
const PYTHON_PACKAGES: &str = "/opt/kmsd-test-python";
/// The AWS Encryption CLI's entry point (what its `aws-encryption-cli` script runs).
const CLI_MAIN: &str = "import sys\nfrom aws_encryption_sdk_cli import cli\nsys.exit(cli())";

/// True when the AWS Encryption CLI and SDK can be run.
fn aws_encryption_cli_present() -> bool {
    let present = Command::new(PYTHON)
        .args(["-c", "import aws_encryption_sdk, aws_encryption_sdk_cli"])
        .env("PYTHONPATH", PYTHON_PACKAGES)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        present || std::env::var_os("CI").is_none(),
        "the AWS Encryption CLI is not in {PYTHON_PACKAGES}: run scripts/install-deps.sh"
    );
    present
}

/// kmsd's loopback TCP endpoint, where the CLI's KMS client (boto3) connects.
struct Endpoint {
    port: u16,
}

/// A kmsd with its TCP endpoint on a free port.
fn start_with_endpoint() -> (Fixture, Endpoint) {
    let port = pick_ports();
    let fx = Fixture::start_with(KmsdOptions {
        config: format!("listen_tcp = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    });
    (fx, Endpoint { port })
}

/// The AWS Encryption CLI, with its KMS client pointed at kmsd.
fn aws_encryption_cli(endpoint: &Endpoint, home: &Path) -> Command {
    let mut command = Command::new(PYTHON);
    command
        .args(["-c", CLI_MAIN])
        .env("PYTHONPATH", PYTHON_PACKAGES)
        .env(
            "AWS_ENDPOINT_URL_KMS",
            format!("http://127.0.0.1:{}", endpoint.port),
        )
        .env("AWS_ACCESS_KEY_ID", "kmsd")
        .env("AWS_SECRET_ACCESS_KEY", "kmsd")
        .env("AWS_DEFAULT_REGION", "local")
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    command
}

fn kmsctl(socket: &Path) -> Command {
    let mut command = Command::new(KMSCTL);
    command.arg("--socket").arg(socket);
    command
}

/// The files of one case in `dir`.
fn paths(dir: &Path, name: &str) -> [PathBuf; 3] {
    ["plain", "sealed", "opened"].map(|what| dir.join(format!("{name}.{what}")))
}

#[test]
fn kmsctl_files_interoperate_with_the_aws_encryption_cli() {
    if !aws_encryption_cli_present() {
        eprintln!(
            "SKIPPED kmsctl_files_interoperate_with_the_aws_encryption_cli: the AWS Encryption \
             CLI is not installed (scripts/install-deps.sh)"
        );
        return;
    }
    let (fx, endpoint) = start_with_endpoint();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (key_id, arn) = runtime.block_on(create_key_and_arn(&fx.client()));
    let dir = tempfile::tempdir().unwrap();
    let socket = fx.kmsd.socket.clone();

    let sizes = [0usize, 1, 4095, 4096, 4097, (1 << 20) + 3];
    for len in sizes {
        let data = plaintext(len);
        let size = format!("size={len}");

        // kmsctl encrypts, the AWS Encryption CLI decrypts.
        let [plain, sealed, opened] = paths(dir.path(), &format!("k{len}"));
        std::fs::write(&plain, &data).unwrap();
        let output = run(kmsctl(&socket)
            .args(["encrypt-file", "--key-id", &key_id, "-i"])
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)
            .args(["--encryption-context", "purpose=interop", &size]));
        succeeded("kmsctl encrypt-file", &output);
        let output = run(aws_encryption_cli(&endpoint, dir.path())
            .args(["--decrypt", "-S", "-i"])
            .arg(&sealed)
            .arg("-o")
            .arg(&opened)
            .args(["--wrapping-keys", &format!("key={arn}")])
            .args(["--encryption-context", "purpose=interop", &size])
            .args(["--commitment-policy", "require-encrypt-require-decrypt"]));
        succeeded(
            &format!("aws-encryption-cli --decrypt ({len} bytes)"),
            &output,
        );
        assert_eq!(
            std::fs::read(&opened).unwrap(),
            data,
            "{len} bytes, kmsctl → aws"
        );

        // The AWS Encryption CLI encrypts, kmsctl decrypts.
        let [plain, sealed, opened] = paths(dir.path(), &format!("a{len}"));
        std::fs::write(&plain, &data).unwrap();
        let output = run(aws_encryption_cli(&endpoint, dir.path())
            .args(["--encrypt", "-S", "-i"])
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)
            .args(["--wrapping-keys", &format!("key={arn}")])
            .args(["--encryption-context", "purpose=interop", &size]));
        succeeded(
            &format!("aws-encryption-cli --encrypt ({len} bytes)"),
            &output,
        );
        let output = run(kmsctl(&socket)
            .args(["decrypt-file", "--key-id", &arn, "-i"])
            .arg(&sealed)
            .arg("-o")
            .arg(&opened)
            .args(["--encryption-context", "purpose=interop", &size]));
        succeeded(&format!("kmsctl decrypt-file ({len} bytes)"), &output);
        assert_eq!(
            std::fs::read(&opened).unwrap(),
            data,
            "{len} bytes, aws → kmsctl"
        );
    }

    // The unsigned committing suite both ways, and discovery mode on both sides.
    let data = plaintext(10_000);
    let [plain, sealed, opened] = paths(dir.path(), "unsigned-k");
    std::fs::write(&plain, &data).unwrap();
    succeeded(
        "kmsctl encrypt-file --algorithm 0x0478",
        &run(kmsctl(&socket)
            .args([
                "encrypt-file",
                "--key-id",
                &key_id,
                "--algorithm",
                "0x0478",
                "-i",
            ])
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)),
    );
    succeeded(
        "aws-encryption-cli --decrypt-unsigned (discovery)",
        &run(aws_encryption_cli(&endpoint, dir.path())
            .args(["--decrypt-unsigned", "-S", "-i"])
            .arg(&sealed)
            .arg("-o")
            .arg(&opened)
            .args([
                "--wrapping-keys",
                "discovery=true",
                "discovery-partition=kmsd",
                "discovery-account=000000000000",
            ])),
    );
    assert_eq!(std::fs::read(&opened).unwrap(), data);
    let [_, sealed, opened] = paths(dir.path(), "unsigned-a");
    succeeded(
        "aws-encryption-cli --encrypt --algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        &run(aws_encryption_cli(&endpoint, dir.path())
            .args(["--encrypt", "-S", "-i"])
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)
            .args(["--wrapping-keys", &format!("key={arn}")])
            .args(["--algorithm", "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"])),
    );
    succeeded(
        "kmsctl decrypt-file --discovery",
        &run(kmsctl(&socket)
            .args([
                "decrypt-file",
                "--discovery",
                "--discovery-partition",
                "kmsd",
                "--discovery-account",
                "000000000000",
                "-i",
            ])
            .arg(&sealed)
            .arg("-o")
            .arg(&opened)),
    );
    assert_eq!(std::fs::read(&opened).unwrap(), data);

    // Tampered messages are refused by both, and kmsctl leaves no plaintext file.
    let [plain, sealed, _] = paths(dir.path(), "tamper");
    std::fs::write(&plain, plaintext(20_000)).unwrap();
    succeeded(
        "kmsctl encrypt-file",
        &run(kmsctl(&socket)
            .args(["encrypt-file", "--key-id", &key_id, "-i"])
            .arg(&plain)
            .arg("-o")
            .arg(&sealed)),
    );
    let message = std::fs::read(&sealed).unwrap();
    let middle = message.len() / 2;
    for (name, at) in [
        ("body", middle),
        ("signature", message.len() - 1),
        ("header", 40),
    ] {
        let mut bad = message.clone();
        bad[at] ^= 0x04;
        let tampered = dir.path().join(format!("tampered-{name}"));
        std::fs::write(&tampered, &bad).unwrap();
        let opened = dir.path().join(format!("tampered-{name}.opened"));
        let output = run(aws_encryption_cli(&endpoint, dir.path())
            .args(["--decrypt", "-S", "-i"])
            .arg(&tampered)
            .arg("-o")
            .arg(&opened)
            .args(["--wrapping-keys", &format!("key={arn}")]));
        assert!(
            !output.status.success(),
            "aws-encryption-cli decrypted a message with its {name} altered"
        );
        let opened = dir.path().join(format!("tampered-{name}.kmsctl"));
        let output = run(kmsctl(&socket)
            .args(["decrypt-file", "--key-id", &arn, "-i"])
            .arg(&tampered)
            .arg("-o")
            .arg(&opened));
        assert!(
            !output.status.success(),
            "kmsctl decrypted a message with its {name} altered"
        );
        assert!(!opened.exists(), "kmsctl left {} behind", opened.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.starts_with("kmsctl: "), "{stderr}");
    }
    // kmsctl leaves no temporary file anywhere in the directory.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{name} left behind");
    }
}

#[test]
fn kmsctl_decrypt_file_to_stdout_streams_and_refuses_what_is_wrong() {
    let fx = Fixture::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (key_id, arn) = runtime.block_on(create_key_and_arn(&fx.client()));
    let socket = fx.kmsd.socket.clone();
    let dir = tempfile::tempdir().unwrap();
    let [plain, sealed, _] = paths(dir.path(), "stdout");
    let data = plaintext(50_000);
    std::fs::write(&plain, &data).unwrap();
    let output = run(kmsctl(&socket)
        .args([
            "encrypt-file",
            "--key-id",
            &key_id,
            "--frame-length",
            "1024",
        ])
        .args(["--encryption-context", "team=files", "-i"])
        .arg(&plain)
        .args(["-o", "-"]));
    succeeded("kmsctl encrypt-file -o -", &output);
    std::fs::write(&sealed, &output.stdout).unwrap();
    let output = run(kmsctl(&socket)
        .args(["decrypt-file", "--key-id", &arn, "-o", "-", "-i"])
        .arg(&sealed));
    succeeded("kmsctl decrypt-file -o -", &output);
    assert_eq!(output.stdout, data);

    // (arguments, message expected on stderr)
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--key-id".into(), key_id], "is not a key ARN"),
        (
            vec![
                "--key-id".into(),
                arn.clone(),
                "--encryption-context".into(),
                "team=other".into(),
            ],
            "the message's team is 'files', not the required 'other'",
        ),
        (
            vec![
                "--discovery".into(),
                "--discovery-partition".into(),
                "aws".into(),
                "--discovery-account".into(),
                "000000000000".into(),
            ],
            "partition 'kmsd' is not 'aws'",
        ),
        (
            vec![
                "--key-id".into(),
                arn,
                "--max-encrypted-data-keys".into(),
                "0".into(),
            ],
            "more than the limit of 0",
        ),
    ];
    for (args, needle) in cases {
        let output = run(kmsctl(&socket)
            .arg("decrypt-file")
            .args(&args)
            .args(["-o", "-", "-i"])
            .arg(&sealed));
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?} wrote plaintext");
    }
    // An unknown key on encryption: kmsd's exception, exit status 254.
    let output = run(kmsctl(&socket)
        .args(["encrypt-file", "--key-id", "alias/none", "-o", "-", "-i"])
        .arg(&plain));
    assert_eq!(output.status.code(), Some(254));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NotFoundException"), "{stderr}");
}
