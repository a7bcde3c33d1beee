//! The audit trail end to end, with real swtpm and kmsd processes: one record per request
//! (allowed, denied, invalid, from several uids) with the right fields and no secret; verify
//! catches edits, deletions, swaps, truncation and a removed file; the chain continues across
//! rotation, restarts, a crash with a torn tail, and a new day; a full disk fails closed.

mod common;
use bytes::Bytes;
use common::*;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn audit_dir(fx: &Fixture) -> PathBuf {
    fx.dir.state_dir().join("audit")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    kmsd::audit::verify::list_files(dir).unwrap()
}

/// Every record of the trail, in order.
fn records(dir: &Path) -> Vec<Value> {
    let mut all = Vec::new();
    for file in files(dir) {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            all.push(serde_json::from_str::<Value>(line).unwrap());
        }
    }
    all
}

fn api_records(dir: &Path) -> Vec<Value> {
    records(dir)
        .into_iter()
        .filter(|r| r["eventType"] == "AwsApiCall")
        .collect()
}

/// One request as root: (status, request id, body).
async fn call(client: &Client, op: Option<&str>, body: &[u8]) -> (u16, String, Value) {
    let response = client
        .call_raw(op, Bytes::copy_from_slice(body))
        .await
        .expect("transport");
    let id = response.headers["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status.as_u16(), id, value)
}

/// One request from another uid, through curl run as that uid.
fn curl_as(uid: u32, socket: &Path, op: &str, body: &Value) -> (u16, String, Value) {
    let output = Command::new("curl")
        .args(["-sS", "-i", "--unix-socket"])
        .arg(socket)
        .args(["-H", &format!("X-Amz-Target: TrentService.{op}")])
        .args(["-H", "Content-Type: application/x-amz-json-1.1"])
        .args(["--data-binary", &body.to_string(), "http://kmsd/"])
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("http answer");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let id = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-amzn-requestid")
                .then(|| value.trim().to_string())
        })
        .expect("request id header");
    (status, id, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn kmsctl(args: &[&str]) -> std::process::Output {
    Command::new(KMSCTL).args(args).output().expect("run kmsctl")
}

fn verify_online(socket: &Path) -> Value {
    let out = kmsctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--output",
        "json",
        "audit",
        "verify",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("verify output: {out:?}"));
    assert_eq!(out.status.success(), report["ok"] == true, "{report}");
    report
}

fn verify_offline(dir: &Path) -> Value {
    let out = kmsctl(&[
        "--output",
        "json",
        "audit",
        "verify",
        "--offline",
        "--audit-dir",
        dir.to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("verify output: {out:?}"));
    assert_eq!(out.status.success(), report["ok"] == true, "{report}");
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
    }
    report
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_one_record_with_the_right_fields_and_no_secret() {
    if !is_root() {
        eprintln!("skipping: needs root to switch uid (CI runs as root)");
        return;
    }
    let fx = Fixture::start();
    let client = fx.client();
    let socket = fx.kmsd.socket.clone();
    // (request id, eventName, uid, errorCode)
    let mut expected: Vec<(String, &str, u32, Option<&str>)> = Vec::new();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let body = |v: Value| serde_json::to_vec(&v).unwrap();

    let (_, id, created) = call(&client, Some("CreateKey"), &body(json!({"Description": "audited"}))).await;
    let key = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    expected.push((id, "CreateKey", 0, None));
    let (_, id, _) = call(&client, Some("CreateAlias"), &body(json!({"AliasName": "alias/audited", "TargetKeyId": key}))).await;
    expected.push((id, "CreateAlias", 0, None));
    let p1 = b"the quarterly numbers are bad".to_vec();
    let (status, id, encrypted) = call(
        &client,
        Some("Encrypt"),
        &body(json!({"KeyId": "alias/audited", "Plaintext": b64(&p1), "EncryptionContext": {"dept": "finance"}})),
    )
    .await;
    assert_eq!(status, 200, "{encrypted}");
    expected.push((id, "Encrypt", 0, None));
    let blob = encrypted["CiphertextBlob"].as_str().unwrap().to_string();
    let (_, id, decrypted) = call(
        &client,
        Some("Decrypt"),
        &body(json!({"CiphertextBlob": blob, "EncryptionContext": {"dept": "finance"}})),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), p1);
    expected.push((id, "Decrypt", 0, None));
    let (_, id, data_key) = call(&client, Some("GenerateDataKey"), &body(json!({"KeyId": key, "KeySpec": "AES_256"}))).await;
    expected.push((id, "GenerateDataKey", 0, None));
    let (_, id, random) = call(&client, Some("GenerateRandom"), &body(json!({"NumberOfBytes": 32}))).await;
    expected.push((id, "GenerateRandom", 0, None));

    // Another uid is denied root's key, but may create and use its own.
    let p2 = b"uid 4242 tries its luck".to_vec();
    let (status, id, _) = curl_as(4242, &socket, "Encrypt", &json!({"KeyId": key, "Plaintext": b64(&p2)}));
    assert_eq!(status, 400);
    expected.push((id, "Encrypt", 4242, Some("AccessDeniedException")));
    let (_, id, _) = curl_as(4242, &socket, "Decrypt", &json!({"CiphertextBlob": blob}));
    expected.push((id, "Decrypt", 4242, Some("AccessDeniedException")));
    let (status, id, own) = curl_as(4242, &socket, "CreateKey", &json!({}));
    assert_eq!(status, 200, "{own}");
    let own_key = own["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    expected.push((id, "CreateKey", 4242, None));
    let p3 = b"uid 4242's own secret".to_vec();
    let (status, id, own_encrypted) = curl_as(4242, &socket, "Encrypt", &json!({"KeyId": own_key, "Plaintext": b64(&p3)}));
    assert_eq!(status, 200);
    expected.push((id, "Encrypt", 4242, None));
    let (_, id, _) = curl_as(4343, &socket, "DescribeKey", &json!({"KeyId": own_key}));
    expected.push((id, "DescribeKey", 4343, Some("AccessDeniedException")));

    // Invalid requests.
    let (_, id, _) = call(&client, Some("Encrypt"), b"{not json").await;
    expected.push((id, "Encrypt", 0, Some("SerializationException")));
    let (_, id, _) = call(&client, Some("Encrypt"), &body(json!({"KeyId": key, "Plaintext": "%%%"}))).await;
    expected.push((id, "Encrypt", 0, Some("ValidationException")));
    let (_, id, _) = call(&client, Some("Frobnicate"), b"{}").await;
    expected.push((id, "Frobnicate", 0, Some("UnknownOperationException")));
    let (status, id, _) = call(&client, Some("Encrypt"), &vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(status, 413);
    expected.push((id, "Encrypt", 0, Some("RequestEntityTooLargeException")));
    let (_, id, _) = call(&client, None, b"{}").await;
    expected.push((id, "Unknown", 0, Some("UnknownOperationException")));

    let dir = audit_dir(&fx);
    let got = api_records(&dir);
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (record, (id, name, uid, error)) in got.iter().zip(&expected) {
        assert_eq!(record["requestID"], id.as_str(), "{record}");
        assert_eq!(record["eventName"], *name, "{record}");
        assert_eq!(record["userIdentity"]["uid"], *uid, "{record}");
        assert_eq!(record["errorCode"].as_str(), *error, "{record}");
        assert_eq!(record["eventSource"], "kmsd");
        assert_eq!(record["eventVersion"], "1.08");
        let time = record["eventTime"].as_str().unwrap();
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        assert!(record["eventID"].as_str().unwrap().len() == 36);
        assert!(record["userIdentity"]["pid"].as_i64().unwrap() > 0);
        assert!(record["sequence"].as_u64().unwrap() > 0);
        assert_eq!(record["mac"].as_str().unwrap().len(), 64);
        if error.is_some() {
            assert!(!record["errorMessage"].as_str().unwrap().is_empty());
        }
    }
    // CreateKey: not read-only, the new key in responseElements and resources.
    assert_eq!(got[0]["readOnly"], false);
    assert_eq!(got[0]["responseElements"]["keyMetadata"]["keyId"], key.as_str());
    assert!(got[0]["resources"][0]["ARN"].as_str().unwrap().ends_with(&format!("key/{key}")));
    // Encrypt through an alias: context in plaintext, key and alias in resources.
    let enc = &got[2];
    assert_eq!(enc["readOnly"], true);
    assert_eq!(enc["requestParameters"], json!({"keyId": "alias/audited", "encryptionContext": {"dept": "finance"}}));
    assert_eq!(enc["responseElements"], Value::Null);
    assert_eq!(enc["resources"][0]["type"], "AWS::KMS::Key");
    assert!(enc["resources"][0]["ARN"].as_str().unwrap().ends_with(&key));
    assert_eq!(enc["resources"][1]["type"], "AWS::KMS::Alias");
    assert!(enc["resources"][1]["ARN"].as_str().unwrap().ends_with(":alias/audited"));
    // Decrypt names the key from the ciphertext header.
    assert!(got[3]["resources"][0]["ARN"].as_str().unwrap().ends_with(&key));
    assert_eq!(got[4]["requestParameters"], json!({"keyId": key, "keySpec": "AES_256"}));
    assert_eq!(got[5]["requestParameters"], json!({"numberOfBytes": 32}));
    assert_eq!(got[6]["resources"][0]["ARN"].as_str().unwrap().ends_with(&key), true);

    // No secret in any form anywhere in the trail.
    secrets.extend([p1.clone(), p2, p3]);
    secrets.push(unb64(&data_key["Plaintext"]));
    secrets.push(unb64(&data_key["CiphertextBlob"]));
    secrets.push(unb64(&random["Plaintext"]));
    secrets.push(unb64(&json!(blob)));
    secrets.push(unb64(&own_encrypted["CiphertextBlob"]));
    let mut trail = Vec::new();
    for file in files(&dir) {
        trail.extend(std::fs::read(file).unwrap());
    }
    let trail = String::from_utf8(trail).unwrap();
    for secret in &secrets {
        let forms = [
            b64(secret),
            b64(secret).trim_end_matches('=').to_string(),
            hex(secret),
            hex(secret).to_uppercase(),
            String::from_utf8_lossy(secret).to_string(),
        ];
        for form in forms {
            assert!(!trail.contains(&form), "secret found in the trail as {form}");
        }
    }

    // kmsctl: verify (by kmsd, MACs) and query.
    let report = verify_online(&socket);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["macChecked"], true);
    let dir_arg = dir.to_str().unwrap();
    let out = kmsctl(&["--output", "json", "audit", "query", "--audit-dir", dir_arg, "--uid", "4242"]);
    let by_uid: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_uid.len(), 4);
    let out = kmsctl(&["--output", "json", "audit", "query", "--audit-dir", dir_arg, "--error", "--start-time", "1h"]);
    let errors: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(errors.len(), expected.iter().filter(|e| e.3.is_some()).count());
    let out = kmsctl(&["--output", "table", "audit", "query", "--audit-dir", dir_arg, "--key-id", "alias/audited", "--event-name", "Encrypt"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("audited") && table.contains(&key), "{table}");
    let out = kmsctl(&["audit", "query", "--audit-dir", dir_arg, "--start-time", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Only root may ask kmsd to verify; the refusal is itself audited.
    let (status, _, answer) = curl_as(4242, &socket, "KmsdAuditVerify", &json!({}));
    assert_eq!(status, 400);
    assert_eq!(answer["__type"], "AccessDeniedException");
    let last = api_records(&dir).pop().unwrap();
    assert_eq!(last["eventName"], "KmsdAuditVerify");
    assert_eq!(last["userIdentity"]["uid"], 4242);
}
