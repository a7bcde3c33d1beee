//! The recovery drill ("If the TPM is lost" in the README), with real swtpm and kmsd
//! processes: keys of every kind, an alias, a key policy and a grant; an escrow to an age
//! recipient and to 3-of-5 shares; kmsd stopped, the state dir copied, the TPM replaced by a
//! fresh one; kmsd refuses to start; wrong, mistyped and too few shares and a wrong identity
//! are refused with the state dir byte for byte untouched; the restore with the age identity
//! (and, on the backup copy and yet another TPM, with shares from stdin) lets kmsd serve
//! every old ciphertext, signature, MAC and shared secret again with the same metadata,
//! aliases, policies and grants, while the TPM-resident key is reported lost; and `kmsctl
//! audit verify` passes across the restore.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use age::secrecy::ExposeSecret as _;
use common::*;
use kmsd::client::Client;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"root","Effect":"Allow","Principal":{"Unix":{"Uid":[0]}},"Action":"kms:*","Resource":"*"},{"Sid":"app","Effect":"Allow","Principal":{"Unix":{"Uid":[4242]}},"Action":"kms:Decrypt","Resource":"*"}]}"#;

fn kmsctl(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(KMSCTL)
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kmsctl");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// What was made before the TPM was lost, to be checked after the restore.
struct Before {
    symmetric: String,
    ciphertext: Value,
    old_version_ciphertext: Value,
    rsa: String,
    rsa_signature: Value,
    rsa_public: Value,
    ecc: String,
    ecc_signature: Value,
    ecc_public: Value,
    hmac: String,
    mac: Value,
    ecdh: String,
    peer_public: Value,
    shared_secret: Value,
    tpm_key: String,
    tpm_public: Value,
    tpm_signature: Value,
    grant_id: String,
    described: Vec<(String, Value)>,
}

async fn make_keys(client: &Client) -> Before {
    let create = |body: Value| async move {
        ok(client, "CreateKey", body).await["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let symmetric = create(json!({"Description": "drill symmetric"})).await;
    let old_version_ciphertext = ok(
        client,
        "Encrypt",
        json!({"KeyId": symmetric, "Plaintext": b64(b"before rotation"), "EncryptionContext": {"app": "drill"}}),
    )
    .await["CiphertextBlob"]
        .clone();
    ok(client, "RotateKeyOnDemand", json!({"KeyId": symmetric})).await;
    let ciphertext = ok(
        client,
        "Encrypt",
        json!({"KeyId": symmetric, "Plaintext": b64(b"secret data"), "EncryptionContext": {"app": "drill"}}),
    )
    .await["CiphertextBlob"]
        .clone();
    ok(
        client,
        "CreateAlias",
        json!({"AliasName": "alias/drill", "TargetKeyId": symmetric}),
    )
    .await;
    ok(
        client,
        "PutKeyPolicy",
        json!({"KeyId": symmetric, "PolicyName": "default", "Policy": POLICY}),
    )
    .await;
    let grant_id = ok(
        client,
        "CreateGrant",
        json!({"KeyId": symmetric, "GranteePrincipal": "uid:5001", "Operations": ["Encrypt", "Decrypt"], "Name": "drill"}),
    )
    .await["GrantId"]
        .as_str()
        .unwrap()
        .to_string();

    let rsa = create(json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"})).await;
    let rsa_signature = ok(
        client,
        "Sign",
        json!({"KeyId": rsa, "Message": b64(b"signed before"), "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
    )
    .await["Signature"]
        .clone();
    let ecc = create(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"})).await;
    let ecc_signature = ok(
        client,
        "Sign",
        json!({"KeyId": ecc, "Message": b64(b"signed before"), "SigningAlgorithm": "ECDSA_SHA_256"}),
    )
    .await["Signature"]
        .clone();
    let hmac = create(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"})).await;
    let mac = ok(
        client,
        "GenerateMac",
        json!({"KeyId": hmac, "Message": b64(b"mac before"), "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .await["Mac"]
        .clone();
    let ecdh = create(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"})).await;
    let peer = create(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "KEY_AGREEMENT"})).await;
    let peer_public = ok(client, "GetPublicKey", json!({"KeyId": peer})).await["PublicKey"].clone();
    let shared_secret = ok(
        client,
        "DeriveSharedSecret",
        json!({"KeyId": ecdh, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer_public}),
    )
    .await["SharedSecret"]
        .clone();
    let tpm_key = create(json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-tpm"})).await;
    let tpm_signature = ok(
        client,
        "Sign",
        json!({"KeyId": tpm_key, "Message": b64(b"signed before"), "SigningAlgorithm": "ECDSA_SHA_256"}),
    )
    .await["Signature"]
        .clone();
    let public = |key: String| async move {
        ok(client, "GetPublicKey", json!({"KeyId": key})).await["PublicKey"].clone()
    };
    let rsa_public = public(rsa.clone()).await;
    let ecc_public = public(ecc.clone()).await;
    let tpm_public = public(tpm_key.clone()).await;
    let mut described = Vec::new();
    for key in [&symmetric, &rsa, &ecc, &hmac, &ecdh, &peer, &tpm_key] {
        described.push((key.clone(), describe(client, key).await));
    }
    Before {
        symmetric,
        ciphertext,
        old_version_ciphertext,
        rsa,
        rsa_signature,
        rsa_public,
        ecc,
        ecc_signature,
        ecc_public,
        hmac,
        mac,
        ecdh,
        peer_public,
        shared_secret,
        tpm_key,
        tpm_public,
        tpm_signature,
        grant_id,
        described,
    }
}

async fn describe(client: &Client, key: &str) -> Value {
    ok(client, "DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone()
}

/// Everything made before the TPM was lost works as before.
async fn check_keys(client: &Client, before: &Before) {
    for (ciphertext, plaintext) in [
        (&before.ciphertext, &b"secret data"[..]),
        (&before.old_version_ciphertext, &b"before rotation"[..]),
    ] {
        let decrypted = ok(
            client,
            "Decrypt",
            json!({"CiphertextBlob": ciphertext, "EncryptionContext": {"app": "drill"}}),
        )
        .await;
        assert_eq!(unb64(&decrypted["Plaintext"]), plaintext);
    }
    for (key, signature, algorithm) in [
        (&before.rsa, &before.rsa_signature, "RSASSA_PSS_SHA_256"),
        (&before.ecc, &before.ecc_signature, "ECDSA_SHA_256"),
        (&before.tpm_key, &before.tpm_signature, "ECDSA_SHA_256"),
    ] {
        let verified = ok(
            client,
            "Verify",
            json!({"KeyId": key, "Message": b64(b"signed before"), "Signature": signature, "SigningAlgorithm": algorithm}),
        )
        .await;
        assert_eq!(verified["SignatureValid"], true, "{key}");
    }
    for (key, public) in [
        (&before.rsa, &before.rsa_public),
        (&before.ecc, &before.ecc_public),
        (&before.tpm_key, &before.tpm_public),
    ] {
        let now = ok(client, "GetPublicKey", json!({"KeyId": key})).await;
        assert_eq!(&now["PublicKey"], public, "{key}");
    }
    // New signatures from the restored private keys verify with the old public keys.
    let signed = ok(
        client,
        "Sign",
        json!({"KeyId": before.ecc, "Message": b64(b"signed after"), "SigningAlgorithm": "ECDSA_SHA_256"}),
    )
    .await;
    let verified = ok(
        client,
        "Verify",
        json!({"KeyId": before.ecc, "Message": b64(b"signed after"), "Signature": signed["Signature"], "SigningAlgorithm": "ECDSA_SHA_256"}),
    )
    .await;
    assert_eq!(verified["SignatureValid"], true);
    let mac = ok(
        client,
        "GenerateMac",
        json!({"KeyId": before.hmac, "Message": b64(b"mac before"), "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .await;
    assert_eq!(mac["Mac"], before.mac);
    let shared = ok(
        client,
        "DeriveSharedSecret",
        json!({"KeyId": before.ecdh, "KeyAgreementAlgorithm": "ECDH", "PublicKey": before.peer_public}),
    )
    .await;
    assert_eq!(shared["SharedSecret"], before.shared_secret);
    // The TPM-resident key's private key stayed in the old TPM.
    let message = fails(
        client,
        "Sign",
        json!({"KeyId": before.tpm_key, "Message": b64(b"x"), "SigningAlgorithm": "ECDSA_SHA_256"}),
        "KeyUnavailableException",
    )
    .await;
    assert!(message.contains(&before.tpm_key), "{message}");
    // Metadata, aliases, policies and grants.
    for (key, metadata) in &before.described {
        assert_eq!(&describe(client, key).await, metadata, "{key}");
    }
    let aliases = ok(client, "ListAliases", json!({"KeyId": before.symmetric})).await;
    assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/drill");
    let by_alias = describe(client, "alias/drill").await;
    assert_eq!(by_alias["KeyId"], before.symmetric.as_str());
    let policy = ok(
        client,
        "GetKeyPolicy",
        json!({"KeyId": before.symmetric, "PolicyName": "default"}),
    )
    .await;
    let policy: Value = serde_json::from_str(policy["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(policy, serde_json::from_str::<Value>(POLICY).unwrap());
    let grants = ok(client, "ListGrants", json!({"KeyId": before.symmetric})).await;
    assert_eq!(grants["Grants"][0]["GrantId"], before.grant_id.as_str());
    assert_eq!(grants["Grants"][0]["GranteePrincipal"], "uid:5001");
}

/// `GET /metrics` on the Unix socket: the value of an unlabelled metric.
async fn metric(client: &Client, name: &str) -> Option<f64> {
    let request = hyper::Request::get("/metrics")
        .header("host", "kmsd")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let raw = client.send(request).await.expect("GET /metrics");
    assert_eq!(raw.status, 200);
    String::from_utf8(raw.body.to_vec())
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .map(|value| value.trim().parse().unwrap())
}

fn audit_verify(socket: &Path) {
    let out = kmsctl(
        &[
            "--socket",
            socket.to_str().unwrap(),
            "--output",
            "json",
            "audit",
            "verify",
        ],
        None,
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("audit verify output: {out:?}"));
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(out.status.success(), "{out:?}");
}

/// A restore that must fail, naming `expected`, and leave the state dir as it was.
fn refused_restore(
    state_dir: &Path,
    config: &Path,
    secret: &[&str],
    stdin: Option<&str>,
    expected: &str,
) {
    let before = dir_fingerprint(state_dir);
    let mut args = vec![
        "recovery",
        "restore",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(secret);
    let out = kmsctl(&args, stdin);
    assert!(!out.status.success(), "{secret:?}: {out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(expected), "{secret:?}: {stderr}");
    assert!(
        dir_fingerprint(state_dir) == before,
        "{secret:?}: the refused restore changed the state dir"
    );
}

fn restore(state_dir: &Path, config: &Path, secret: &[&str], stdin: Option<&str>) -> String {
    let mut args = vec![
        "recovery",
        "restore",
        "--state-dir",
        state_dir.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(secret);
    let out = kmsctl(&args, stdin);
    assert!(out.status.success(), "restore {secret:?}: {out:?}");
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drill_restores_every_key_onto_a_new_tpm() {
    let mut tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    let socket = dir.socket();
    let socket_arg = socket.to_str().unwrap();
    let before = make_keys(&client).await;

    // No escrow yet.
    let status = kmsctl(
        &[
            "--socket", socket_arg, "--output", "json", "recovery", "status",
        ],
        None,
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["Configured"], false);
    assert_eq!(
        metric(&client, "kmsd_recovery_escrow_configured").await,
        Some(0.0)
    );
    assert_eq!(
        metric(
            &client,
            "kmsd_recovery_escrow_last_verified_timestamp_seconds"
        )
        .await,
        None
    );

    // The escrow: an age recipient and 3-of-5 shares.
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.root.path().join("identity.txt");
    std::fs::write(
        &identity_file,
        format!("# drill\n{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let stranger_file = dir.root.path().join("stranger.txt");
    std::fs::write(
        &stranger_file,
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        ),
    )
    .unwrap();
    let recipient = identity.to_public().to_string();
    let out = kmsctl(
        &[
            "--socket",
            socket_arg,
            "--output",
            "json",
            "recovery",
            "init",
            "--recipient",
            &recipient,
            "--shares",
            "5",
            "--threshold",
            "3",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["Configured"], true);
    assert_eq!(created["Recipients"], json!([recipient]));
    let shares: Vec<String> = created["SharesText"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(shares.len(), 5);
    // A second init without --replace is refused.
    let again = kmsctl(
        &[
            "--socket",
            socket_arg,
            "recovery",
            "init",
            "--recipient",
            &recipient,
        ],
        None,
    );
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already configured"),
        "{again:?}"
    );
    // The rehearsal, through kmsd: a wrong identity fails, the right one is recorded.
    let wrong = kmsctl(
        &[
            "--socket",
            socket_arg,
            "recovery",
            "verify",
            "--identity",
            stranger_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("does not decrypt this escrow"),
        "{wrong:?}"
    );
    let verified = kmsctl(
        &[
            "--socket",
            socket_arg,
            "recovery",
            "verify",
            "--identity",
            identity_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(verified.status.success(), "{verified:?}");
    let verified = kmsctl(
        &[
            "--socket", socket_arg, "--output", "json", "recovery", "verify", "--share",
            &shares[4], "--share", &shares[0], "--share", &shares[2],
        ],
        None,
    );
    assert!(verified.status.success(), "{verified:?}");
    let status: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(status["LastVerifiedMethod"], "shares");
    assert!(status["LastVerifiedDate"].as_f64().unwrap() > 1.0e9);
    assert_eq!(
        metric(&client, "kmsd_recovery_escrow_configured").await,
        Some(1.0)
    );
    let last = metric(
        &client,
        "kmsd_recovery_escrow_last_verified_timestamp_seconds",
    )
    .await
    .unwrap();
    assert!((last - status["LastVerifiedDate"].as_f64().unwrap()).abs() < 1.0);
    // The trail never holds a share or the identity.
    let trail = std::fs::read_dir(dir.state_dir().join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(trail.contains("KmsdRecoveryInit") && trail.contains("KmsdRecoveryVerify"));
    for share in &shares {
        assert!(!trail.contains(&share[20..50]), "a share is in the trail");
    }
    assert!(!trail.contains("AGE-SECRET-KEY"));

    // The TPM is lost.
    kmsd.stop();
    let backup = dir.root.path().join("backup");
    copy_dir(&dir.state_dir(), &backup);
    tpm.replace_with_other_tpm();
    let refused = Kmsd::try_start(&tpm, &dir, KmsdOptions::default())
        .err()
        .expect("kmsd must refuse a state dir sealed to another TPM");
    assert!(
        refused.contains("does not match the one the root key was sealed under"),
        "{refused}"
    );

    // Wrong secrets change nothing.
    let config = dir.config_file();
    let state = dir.state_dir();
    let mut typo = shares[1].clone().into_bytes();
    let at = typo.len() - 15;
    typo[at] = if typo[at] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--share", &shares[0], "--share", &shares[3]],
            "too few shares: 2 given, 3 needed",
        ),
        (
            vec![
                "--share", &shares[0], "--share", &typo, "--share", &shares[3],
            ],
            "share 2: checksum mismatch",
        ),
        (
            vec![
                "--share", &shares[0], "--share", &shares[0], "--share", &shares[3],
            ],
            "share 2: is share number 1 again",
        ),
        (
            vec!["--identity", stranger_file.to_str().unwrap()],
            "does not decrypt this escrow",
        ),
    ];
    for (secret, expected) in &cases {
        refused_restore(&state, &config, secret, None, expected);
    }
    refused_restore(
        &state,
        &config,
        &["--shares-stdin"],
        Some(&format!("{}\n", shares[1])),
        "too few shares: 1 given, 3 needed",
    );

    // Restore with the age identity.
    let report = restore(
        &state,
        &config,
        &["--identity", identity_file.to_str().unwrap()],
        None,
    );
    assert!(report.contains("Restored from escrow"), "{report}");
    assert!(
        report.contains("1 TPM-resident keys (cks-tpm) are lost"),
        "{report}"
    );
    assert!(report.contains(&before.tpm_key), "{report}");
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    check_keys(&client, &before).await;
    audit_verify(&socket);
    let trail = std::fs::read_dir(dir.state_dir().join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(
        trail.contains("KmsdRecoveryRestore"),
        "the restore is in the trail"
    );
    // The escrow is still configured (the same root key): the rehearsal still works.
    let status = kmsctl(
        &[
            "--socket", socket_arg, "--output", "json", "recovery", "status",
        ],
        None,
    );
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["Configured"], true);
    assert_eq!(status["EscrowId"], created["EscrowId"]);
    kmsd.stop();

    // The backup, onto yet another TPM, with shares from stdin (a different three).
    let second = KmsdDir::new();
    copy_dir(&backup, &second.state_dir());
    tpm.replace_with_other_tpm();
    write_config(&tpm, &second, &KmsdOptions::default());
    // Offline rehearsal first: it changes nothing.
    let fingerprint = dir_fingerprint(&second.state_dir());
    let rehearsal = kmsctl(
        &[
            "recovery",
            "verify",
            "--state-dir",
            second.state_dir().to_str().unwrap(),
            "--config",
            second.config_file().to_str().unwrap(),
            "--shares-stdin",
        ],
        Some(&format!("{}\n\n{}\n{}\n", shares[3], shares[1], shares[2])),
    );
    assert!(rehearsal.status.success(), "{rehearsal:?}");
    assert!(dir_fingerprint(&second.state_dir()) == fingerprint);
    let report = restore(
        &second.state_dir(),
        &second.config_file(),
        &["--shares-stdin"],
        Some(&format!("{}\n{}\n{}\n", shares[3], shares[1], shares[2])),
    );
    assert!(report.contains("(shares)"), "{report}");
    let mut kmsd = Kmsd::start(&tpm, &second);
    let client = kmsd.client();
    check_keys(&client, &before).await;
    audit_verify(&second.socket());
    // A restore where the TPM still unseals is refused.
    kmsd.stop();
    refused_restore(
        &second.state_dir(),
        &second.config_file(),
        &["--identity", identity_file.to_str().unwrap()],
        None,
        "this TPM still unseals the root key",
    );
}

/// The age part of the escrow is a standard age file: the `age` CLI decrypts it, and the
/// file it prints restores the state dir (skipped when the `age` CLI is not installed, except under CI).
#[tokio::test(flavor = "multi_thread")]
async fn the_age_cli_decrypts_the_escrow() {
    if Command::new("age").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the age CLI is missing under CI (scripts/install-deps.sh installs it)"
        );
        eprintln!("skipped: the age CLI is not installed (apt-get install age)");
        return;
    }
    let mut tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    let key = create_key(&client).await;
    let ciphertext = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"via age")}),
    )
    .await["CiphertextBlob"]
        .clone();
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.root.path().join("identity.txt");
    std::fs::write(
        &identity_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .unwrap();
    let recipient = identity.to_public().to_string();
    let socket = dir.socket();
    let out = kmsctl(
        &[
            "--socket",
            socket.to_str().unwrap(),
            "recovery",
            "init",
            "--recipient",
            &recipient,
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    kmsd.stop();
    tpm.replace_with_other_tpm();

    let state = dir.state_dir();
    let exported = kmsctl(
        &[
            "recovery",
            "export-age",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        None,
    );
    assert!(exported.status.success(), "{exported:?}");
    assert!(text(&exported.stdout).starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let escrow_file = dir.root.path().join("escrow.age");
    std::fs::write(&escrow_file, &exported.stdout).unwrap();
    let key_file = dir.root.path().join("recovery.key");
    let decrypted = Command::new("age")
        .args([
            "-d",
            "-i",
            identity_file.to_str().unwrap(),
            "-o",
            key_file.to_str().unwrap(),
            escrow_file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(decrypted.status.success(), "{decrypted:?}");
    restore(
        &state,
        &dir.config_file(),
        &["--recovery-key-file", key_file.to_str().unwrap()],
        None,
    );
    let kmsd = Kmsd::start(&tpm, &dir);
    let decrypted = ok(
        &kmsd.client(),
        "Decrypt",
        json!({"CiphertextBlob": ciphertext}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"via age");
}
