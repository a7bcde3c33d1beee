//! The loopback TCP endpoint (`listen_tcp`), driven by unchanged AWS clients (boto3,
//! aws-cli v1 and the Rust `aws-sdk-kms`, configured by environment variables only) and by a
//! raw HTTP client for the browser and DNS-rebinding cases. Callers are proven by the
//! kernel: two uids, one allowed and one denied by the key policy, each running the same
//! client with the same credentials.
//!
//! The Python clients live in `/opt/kmsd-test-python` (`scripts/install-deps.sh` puts them
//! there, world-readable, so that other uids can run them with Debian's `/usr/bin/python3`).
//! Without them the client tests say so and skip; the raw-client tests always run. The Rust
//! SDK client is `interop/aws-sdk-rust`, built by `scripts/build-interop.sh` and passed as
//! `KMSD_RUST_SDK_CLIENT` (`scripts/test.sh` does both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";
const PYTHON_PACKAGES: &str = "/opt/kmsd-test-python";
/// Uids for the policy: one allowed, one denied.
const ALLOWED_UID: u32 = 4242;
const DENIED_UID: u32 = 4343;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A free port no other test of this binary is given (the harness's reservation).
fn free_port() -> u16 {
    pick_ports()
}

/// A kmsd with the TCP endpoint on `addresses`.
fn start_with_tcp(addresses: &[SocketAddr]) -> Fixture {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    Fixture::start_with(KmsdOptions {
        config: format!("listen_tcp = [{}]\n", list.join(", ")),
        ..Default::default()
    })
}

fn python_clients_present() -> bool {
    let present = Path::new(PYTHON_PACKAGES).join("boto3").is_dir()
        && Path::new(PYTHON_PACKAGES).join("awscli").is_dir()
        && Path::new(PYTHON).exists();
    assert!(
        present || std::env::var_os("CI").is_none(),
        "boto3/awscli are not in {PYTHON_PACKAGES}: run scripts/install-deps.sh"
    );
    if !present {
        eprintln!(
            "SKIP: boto3/awscli not in {PYTHON_PACKAGES} (scripts/install-deps.sh installs them)"
        );
    }
    present
}

/// `program` run as `uid` (no supplementary groups) with nothing in its environment but
/// what an unchanged AWS client needs to reach kmsd's TCP endpoint on `port`: the endpoint,
/// credentials (`access`/`secret`), a region, and the Python clients' path.
fn aws_client_as(uid: u32, port: u16, access: &str, secret: &str, program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .env_clear()
        .env("PYTHONPATH", PYTHON_PACKAGES)
        .env("HOME", "/nonexistent")
        .env("AWS_ENDPOINT_URL_KMS", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", access)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "eu-west-1")
        .env("AWS_REGION", "eu-west-1")
        .stdin(Stdio::null());
    command
}

/// One raw HTTP/1.1 exchange on a fresh connection: (status, lowercase head, body).
fn raw(address: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=kmsd/20261201/eu-west-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn post(host: &str, target: &str, extra: &str, body: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: TrentService.{target}\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: {SIGV4}\r\nX-Amz-Date: 20261201T000000Z\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn browser_and_rebinding_requests_are_refused() {
    let port = free_port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let fixture = start_with_tcp(&[address]);
    let client = fixture.client();
    let host = format!("127.0.0.1:{port}");
    let keys_before = ok(&client, "ListKeys", json!({})).await["Keys"]
        .as_array()
        .unwrap()
        .len();

    let create = r#"{"Description":"from a browser"}"#;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "a CORS preflight",
            format!("OPTIONS / HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-amz-target,authorization,content-type\r\nConnection: close\r\n\r\n"),
            403,
            "AccessDeniedException",
        ),
        (
            "a request with Origin",
            post(&host, "CreateKey", "Origin: http://evil.example\r\n", create),
            403,
            "AccessDeniedException",
        ),
        (
            "Origin: null (a sandboxed page)",
            post(&host, "CreateKey", "Origin: null\r\n", create),
            403,
            "AccessDeniedException",
        ),
        (
            "fetch metadata without Origin",
            post(&host, "CreateKey", "Sec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: cross-site\r\n", create),
            403,
            "AccessDeniedException",
        ),
        (
            "a DNS-rebinding name in Host",
            post(&format!("rebind.evil.example:{port}"), "CreateKey", "", create),
            403,
            "AccessDeniedException",
        ),
        (
            "another port in Host",
            post("127.0.0.1:1", "CreateKey", "", create),
            403,
            "AccessDeniedException",
        ),
        (
            "a simple form POST (text/plain, no target, no signature)",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}", create.len()),
            400,
            "UnknownOperationException",
        ),
        (
            "the AWS content type missing",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: TrentService.CreateKey\r\nContent-Type: text/plain\r\nAuthorization: {SIGV4}\r\nX-Amz-Date: 20261201T000000Z\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}", create.len()),
            400,
            "SerializationException",
        ),
        (
            "no Authorization",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: TrentService.CreateKey\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}", create.len()),
            403,
            "MissingAuthenticationTokenException",
        ),
        (
            "an Authorization that is not SigV4",
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: TrentService.CreateKey\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: Basic a21zZDprbXNk\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}", create.len()),
            400,
            "IncompleteSignatureException",
        ),
        (
            "GET /metrics",
            format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            400,
            "NotFoundException",
        ),
    ];
    for (what, request, status, exception) in &cases {
        let (got_status, head, body) = raw(address, request);
        assert_eq!(got_status, *status, "{what}: {head}\n{body}");
        assert!(
            head.contains(&format!(
                "x-amzn-errortype: {}",
                exception.to_ascii_lowercase()
            )),
            "{what}: {head}"
        );
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert_eq!(parsed["__type"], *exception, "{what}: {body}");
        assert!(
            !head.contains("access-control-"),
            "{what}: no CORS header may be sent: {head}"
        );
    }
    // None of them created a key, and the daemon still serves on both transports.
    let keys_after = ok(&client, "ListKeys", json!({})).await["Keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys_after, keys_before);
    let (status, _, body) = raw(
        address,
        &format!("GET /ping HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Each refusal is counted, by reason (GET /metrics on the Unix socket, as root).
    let metrics = {
        use std::os::unix::net::UnixStream;
        let mut stream = UnixStream::connect(&fixture.kmsd.socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: kmsd\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let refused = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|line| {
                line.starts_with(&format!("kmsd_tcp_refused_total{{reason=\"{reason}\"}}"))
            })
            .and_then(|line| line.split_whitespace().last())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no kmsd_tcp_refused_total for {reason}"))
    };
    assert_eq!(refused("browser"), 4, "OPTIONS, Origin twice, Sec-Fetch");
    assert_eq!(refused("host"), 2);
    assert_eq!(refused("signature"), 2);
    assert_eq!(refused("not_aws_request"), 3);
    assert_eq!(refused("unproven_caller"), 0);

    // The same request without the browser's headers is served.
    let (status, _, body) = raw(address, &post(&host, "CreateKey", "", create));
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = raw(
        address,
        &post(&format!("localhost:{port}"), "ListKeys", "", "{}"),
    );
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn ipv6_loopback_is_served_and_other_addresses_are_refused_at_start() {
    let port = free_port();
    let address: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    if std::net::TcpListener::bind(address).is_err() {
        eprintln!("SKIP: no IPv6 loopback on this machine");
        return;
    }
    let fixture = start_with_tcp(&[address]);
    let (status, _, body) = raw(
        address,
        &post(&format!("[::1]:{port}"), "ListKeys", "", "{}"),
    );
    assert_eq!(status, 200, "{body}");
    drop(fixture);

    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let err = Kmsd::try_start(
        &tpm,
        &dir,
        KmsdOptions {
            config: "listen_tcp = \"0.0.0.0:8091\"\n".into(),
            ..Default::default()
        },
    )
    .err()
    .expect("a non-loopback listen_tcp is refused");
    assert!(
        err.contains("listen_tcp") && err.contains("loopback"),
        "{err}"
    );
}

/// Runs `script` with boto3 as `uid`, configured only by the environment.
fn boto3_as(uid: u32, port: u16, script: &str, args: &[&str]) -> std::process::Output {
    aws_client_as(uid, port, "kmsd", "kmsd", PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run setpriv and python3")
}

const BOTO3_ROUND_TRIP: &str = r#"
import sys, json, boto3, botocore
kms = boto3.client("kms")
key = sys.argv[1]
try:
    out = kms.encrypt(KeyId=key, Plaintext=b"hello over tcp", EncryptionContext={"app": "t"})
    back = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"app": "t"})
    assert back["Plaintext"] == b"hello over tcp"
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert len(dk["Plaintext"]) == 32
    meta = kms.describe_key(KeyId=key)["KeyMetadata"]
    print(json.dumps({"ok": True, "arn": meta["Arn"], "keyId": out["KeyId"]}))
except botocore.exceptions.ClientError as e:
    print(json.dumps({"ok": False, "code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"]}))
"#;

fn last_json(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|_| {
        panic!("no JSON line in stdout: {stdout}\nstderr: {stderr}");
    })
}

/// A key whose policy lets root administer it and [`ALLOWED_UID`] use it.
async fn key_for_allowed_uid(client: &kmsd::client::Client) -> String {
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "RootAdmin", "Effect": "Allow", "Principal": {"Unix": {"Uid": [0]}}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "AppUses", "Effect": "Allow", "Principal": {"Unix": {"Uid": [ALLOWED_UID]}},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], "Resource": "*"}
        ]
    });
    let created = ok(client, "CreateKey", json!({"Policy": policy.to_string()})).await;
    created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn audit_records(fixture: &Fixture) -> Vec<Value> {
    let dir = fixture.dir.state_dir().join("audit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn boto3_and_aws_cli_work_with_two_environment_variables_and_the_kernels_identity() {
    if !is_root() {
        eprintln!("SKIP: needs root to run clients as other uids");
        return;
    }
    if !python_clients_present() {
        return;
    }
    let port = free_port();
    let fixture = start_with_tcp(&[format!("127.0.0.1:{port}").parse().unwrap()]);
    let client = fixture.client();
    let key = key_for_allowed_uid(&client).await;

    // The allowed uid: a full round trip with any credentials.
    let allowed = last_json(&boto3_as(ALLOWED_UID, port, BOTO3_ROUND_TRIP, &[&key]));
    assert_eq!(allowed["ok"], true, "{allowed}");
    let arn = allowed["arn"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:kmsd:kms:"), "{arn}");

    // The denied uid runs the very same client with the very same credentials.
    let denied = last_json(&boto3_as(DENIED_UID, port, BOTO3_ROUND_TRIP, &[&key]));
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["code"], "AccessDeniedException", "{denied}");

    // aws-cli v1 as the allowed uid, by the key ARN.
    let cli = aws_client_as(ALLOWED_UID, port, "kmsd", "kmsd", PYTHON)
        .args(["-m", "awscli", "kms", "encrypt", "--key-id", &arn])
        .args(["--plaintext", "aGVsbG8=", "--output", "json"])
        .output()
        .unwrap();
    let out = last_json_of_whole(&cli);
    assert_eq!(out["KeyId"], arn.as_str(), "{out}");
    let cli_denied = aws_client_as(DENIED_UID, port, "kmsd", "kmsd", PYTHON)
        .args(["-m", "awscli", "kms", "describe-key", "--key-id", &arn])
        .output()
        .unwrap();
    assert!(!cli_denied.status.success());
    let stderr = String::from_utf8_lossy(&cli_denied.stderr);
    assert!(stderr.contains("AccessDeniedException"), "{stderr}");

    // The trail names the kernel's uid for each, and the transport that proved it.
    let records = audit_records(&fixture);
    let by_uid = |uid: u32, event: &str| {
        records.iter().any(|r| {
            r["eventName"] == event
                && r["userIdentity"]["uid"] == uid
                && r["userIdentity"]["transport"] == "tcp"
        })
    };
    assert!(
        by_uid(ALLOWED_UID, "Encrypt"),
        "allowed Encrypt over TCP in the trail"
    );
    assert!(
        by_uid(DENIED_UID, "Encrypt"),
        "denied Encrypt over TCP in the trail"
    );
}

fn last_json_of_whole(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("not JSON: {stdout}\n{stderr}"))
}

/// The `kmsd-sdk-check` binary (`interop/aws-sdk-rust`, built by `scripts/build-interop.sh`,
/// which `scripts/test.sh` runs first and exports as `KMSD_RUST_SDK_CLIENT`). Unset: the
/// test fails under CI and skips elsewhere.
fn rust_sdk_client() -> Option<String> {
    match std::env::var("KMSD_RUST_SDK_CLIENT") {
        Ok(path) if !path.is_empty() => Some(path),
        _ if std::env::var_os("CI").is_some() => {
            panic!("KMSD_RUST_SDK_CLIENT is not set under CI: scripts/test.sh builds it with scripts/build-interop.sh")
        }
        _ => {
            eprintln!("SKIP: KMSD_RUST_SDK_CLIENT not set (scripts/build-interop.sh builds it)");
            None
        }
    }
}

/// Fails with a clear message unless every directory above `binary` can be searched, and
/// the binary run, by any uid.
fn assert_runnable_by_others(binary: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let binary = binary.canonicalize().unwrap_or_else(|e| {
        panic!("KMSD_RUST_SDK_CLIENT={}: {e}", binary.display());
    });
    let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
    assert!(
        mode & 0o005 == 0o005,
        "{} is not readable and executable by other uids (mode {mode:o})",
        binary.display()
    );
    for dir in binary.ancestors().skip(1) {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        assert!(
            mode & 0o001 != 0,
            "{} cannot be searched by other uids (mode {mode:o}), so {} cannot run as them",
            dir.display(),
            binary.display()
        );
    }
}

/// Runs the Rust SDK client as `uid`, configured only by the environment.
fn rust_sdk_as(binary: &str, uid: u32, port: u16, mode: &str, key: &str) -> std::process::Output {
    aws_client_as(uid, port, "kmsd", "kmsd", binary)
        .args([mode, key])
        .output()
        .expect("run setpriv and kmsd-sdk-check")
}

#[tokio::test]
async fn rust_aws_sdk_kms_works_with_environment_variables_and_the_kernels_identity() {
    let Some(binary) = rust_sdk_client() else {
        return;
    };
    if !is_root() {
        eprintln!("SKIP: needs root to run clients as other uids");
        return;
    }
    assert_runnable_by_others(Path::new(&binary));
    let port = free_port();
    let fixture = start_with_tcp(&[format!("127.0.0.1:{port}").parse().unwrap()]);
    let client = fixture.client();
    let key = key_for_allowed_uid(&client).await;

    // The allowed uid: Encrypt with a context, Decrypt, GenerateDataKey, DescribeKey.
    let allowed = last_json(&rust_sdk_as(&binary, ALLOWED_UID, port, "round-trip", &key));
    eprintln!("kmsd-sdk-check as uid {ALLOWED_UID}: {allowed}");
    assert_eq!(allowed["ok"], true, "{allowed}");
    let arn = allowed["arn"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:kmsd:kms:"), "{arn}");
    assert_eq!(allowed["keyId"], arn.as_str(), "{allowed}");
    // By the ARN too.
    let by_arn = last_json(&rust_sdk_as(&binary, ALLOWED_UID, port, "describe", &arn));
    assert_eq!(by_arn["arn"], arn.as_str(), "{by_arn}");

    // The denied uid: the same binary, the same credentials, refused by the key policy.
    let denied = last_json(&rust_sdk_as(&binary, DENIED_UID, port, "round-trip", &key));
    eprintln!("kmsd-sdk-check as uid {DENIED_UID}: {denied}");
    assert_eq!(denied["ok"], false, "{denied}");
    assert_eq!(denied["code"], "AccessDeniedException", "{denied}");

    let records = audit_records(&fixture);
    let by_uid = |uid: u32, event: &str| {
        records.iter().any(|r| {
            r["eventName"] == event
                && r["userIdentity"]["uid"] == uid
                && r["userIdentity"]["transport"] == "tcp"
        })
    };
    for event in ["Encrypt", "Decrypt", "GenerateDataKey", "DescribeKey"] {
        assert!(
            by_uid(ALLOWED_UID, event),
            "{event} by the allowed uid in the trail"
        );
    }
    assert!(by_uid(DENIED_UID, "Encrypt"), "denied Encrypt in the trail");
}

const BOTO3_DESCRIBE: &str = r#"
import sys, json, boto3, botocore
kms = boto3.client("kms")
try:
    meta = kms.describe_key(KeyId=sys.argv[1])["KeyMetadata"]
    print(json.dumps({"ok": True, "arn": meta["Arn"]}))
except botocore.exceptions.ClientError as e:
    print(json.dumps({"ok": False, "code": e.response["Error"]["Code"], "message": e.response["Error"]["Message"]}))
"#;

/// boto3 as `uid` with the given access key and secret.
fn boto3_signed_as(uid: u32, port: u16, key_id: &str, access: &str, secret: &str) -> Value {
    let output = aws_client_as(uid, port, access, secret, PYTHON)
        .arg("-c")
        .arg(BOTO3_DESCRIBE)
        .arg(key_id)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("run setpriv and python3");
    last_json(&output)
}

#[tokio::test]
async fn sigv4_verification_with_configured_keys() {
    if !is_root() {
        eprintln!("SKIP: needs root to run clients as other uids");
        return;
    }
    if !python_clients_present() {
        return;
    }
    let port = free_port();
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("app.secret");
    std::fs::write(&secret_file, "s3cr3t-for-the-allowed-uid\n").unwrap();
    std::fs::set_permissions(
        &secret_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let fixture = Fixture::start_with(KmsdOptions {
        config: format!(
            "listen_tcp = \"127.0.0.1:{port}\"\n[sigv4]\nverify_all = true\n[[sigv4.credentials]]\naccess_key_id = \"AKIDAPP\"\nsecret_file = \"{}\"\nuid = {ALLOWED_UID}\n",
            secret_file.display()
        ),
        ..Default::default()
    });
    let key = key_for_allowed_uid(&fixture.client()).await;
    let secret = "s3cr3t-for-the-allowed-uid";

    // The right key, secret and uid.
    let out = boto3_signed_as(ALLOWED_UID, port, &key, "AKIDAPP", secret);
    assert_eq!(out["ok"], true, "{out}");
    // A wrong secret: the signature does not verify.
    let out = boto3_signed_as(ALLOWED_UID, port, &key, "AKIDAPP", "wrong");
    assert_eq!(out["code"], "InvalidSignatureException", "{out}");
    // Another uid borrowing the allowed uid's credentials.
    let out = boto3_signed_as(DENIED_UID, port, &key, "AKIDAPP", secret);
    assert_eq!(out["code"], "AccessDeniedException", "{out}");
    assert!(
        out["message"].as_str().unwrap_or("").contains("AKIDAPP"),
        "{out}"
    );
    // verify_all: an unlisted key is refused even for a uid the kernel sees.
    let out = boto3_signed_as(ALLOWED_UID, port, &key, "kmsd", "kmsd");
    assert_eq!(out["code"], "UnrecognizedClientException", "{out}");
    // No message repeats the secret.
    let log = fixture.kmsd.log_text();
    assert!(!log.contains(secret), "the secret reached the log");
}
