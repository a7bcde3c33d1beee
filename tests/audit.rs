//! The audit trail end to end, with real swtpm and kmsd processes: one record per request
//! (allowed, denied, invalid, from several uids) with the right fields and no secret; verify
//! catches edits, deletions, swaps, truncation and a removed file; the chain continues across
//! rotation, restarts, a crash with a torn tail, and a new day; a full disk fails closed.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
            // A torn tail (left by a crash) is not a record.
            if let Ok(record) = serde_json::from_str::<Value>(line) {
                all.push(record);
            }
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
    (
        status,
        id,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn kmsctl(args: &[&str]) -> std::process::Output {
    Command::new(KMSCTL)
        .args(args)
        .output()
        .expect("run kmsctl")
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
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("verify output: {out:?}"));
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
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("verify output: {out:?}"));
    assert_eq!(out.status.success(), report["ok"] == true, "{report}");
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
    }
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_one_record_with_the_right_fields_and_no_secret() {
    if !is_root() {
        eprintln!("skipping: needs root to switch uid (CI runs as root)");
        return;
    }
    // uid 4242 is a daemon administrator (may create keys; see the README, "Daemon-level access").
    let fx = Fixture::start_with(options("[access]\nadmin_users = [\"4242\"]\n"));
    let client = fx.client();
    let socket = fx.kmsd.socket.clone();
    // (request id, eventName, uid, errorCode)
    let mut expected: Vec<(String, &str, u32, Option<&str>)> = Vec::new();
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    let body = |v: Value| serde_json::to_vec(&v).unwrap();

    let (_, id, created) = call(
        &client,
        Some("CreateKey"),
        &body(json!({"Description": "audited"})),
    )
    .await;
    let key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    expected.push((id, "CreateKey", 0, None));
    let (_, id, _) = call(
        &client,
        Some("CreateAlias"),
        &body(json!({"AliasName": "alias/audited", "TargetKeyId": key})),
    )
    .await;
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
    let (_, id, data_key) = call(
        &client,
        Some("GenerateDataKey"),
        &body(json!({"KeyId": key, "KeySpec": "AES_256"})),
    )
    .await;
    expected.push((id, "GenerateDataKey", 0, None));
    let (_, id, random) = call(
        &client,
        Some("GenerateRandom"),
        &body(json!({"NumberOfBytes": 32})),
    )
    .await;
    expected.push((id, "GenerateRandom", 0, None));

    // Another uid is denied root's key, but may create and use its own.
    let p2 = b"uid 4242 tries its luck".to_vec();
    let (status, id, _) = curl_as(
        4242,
        &socket,
        "Encrypt",
        &json!({"KeyId": key, "Plaintext": b64(&p2)}),
    );
    assert_eq!(status, 400);
    expected.push((id, "Encrypt", 4242, Some("AccessDeniedException")));
    let (_, id, _) = curl_as(4242, &socket, "Decrypt", &json!({"CiphertextBlob": blob}));
    expected.push((id, "Decrypt", 4242, Some("AccessDeniedException")));
    let (status, id, own) = curl_as(4242, &socket, "CreateKey", &json!({}));
    assert_eq!(status, 200, "{own}");
    let own_key = own["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    expected.push((id, "CreateKey", 4242, None));
    let p3 = b"uid 4242's own secret".to_vec();
    let (status, id, own_encrypted) = curl_as(
        4242,
        &socket,
        "Encrypt",
        &json!({"KeyId": own_key, "Plaintext": b64(&p3)}),
    );
    assert_eq!(status, 200);
    expected.push((id, "Encrypt", 4242, None));
    let (_, id, _) = curl_as(4343, &socket, "DescribeKey", &json!({"KeyId": own_key}));
    expected.push((id, "DescribeKey", 4343, Some("AccessDeniedException")));

    // Invalid requests.
    let (_, id, _) = call(&client, Some("Encrypt"), b"{not json").await;
    expected.push((id, "Encrypt", 0, Some("SerializationException")));
    let (_, id, _) = call(
        &client,
        Some("Encrypt"),
        &body(json!({"KeyId": key, "Plaintext": "%%%"})),
    )
    .await;
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
        // The caller facts kmsd learnt from the kernel, /proc and NSS.
        let identity = &record["userIdentity"];
        assert_eq!(identity["transport"], "unix", "{record}");
        assert!(identity.get("peerAddress").is_none(), "{record}");
        if *uid == 0 {
            assert_eq!(identity["user"], "root", "{record}");
            assert_eq!(identity["group"], "root", "{record}");
            let exe = identity["exe"].as_str().unwrap_or_default();
            assert!(exe.contains("audit"), "the test binary: {record}");
        } else {
            assert_eq!(identity["exe"], "/usr/bin/curl", "{record}");
        }
        assert!(record["sequence"].as_u64().unwrap() > 0);
        assert_eq!(record["mac"].as_str().unwrap().len(), 64);
        if error.is_some() {
            assert!(!record["errorMessage"].as_str().unwrap().is_empty());
        }
    }
    // CreateKey: not read-only, the new key in responseElements and resources.
    assert_eq!(got[0]["readOnly"], false);
    assert_eq!(
        got[0]["responseElements"]["keyMetadata"]["keyId"],
        key.as_str()
    );
    assert!(got[0]["resources"][0]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(&format!("key/{key}")));
    // Encrypt through an alias: context in plaintext, key and alias in resources.
    let enc = &got[2];
    assert_eq!(enc["readOnly"], true);
    assert_eq!(
        enc["requestParameters"],
        json!({"keyId": "alias/audited", "encryptionContext": {"dept": "finance"}})
    );
    assert_eq!(enc["responseElements"], Value::Null);
    assert_eq!(enc["resources"][0]["type"], "AWS::KMS::Key");
    assert!(enc["resources"][0]["ARN"].as_str().unwrap().ends_with(&key));
    assert_eq!(enc["resources"][1]["type"], "AWS::KMS::Alias");
    assert!(enc["resources"][1]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(":alias/audited"));
    // Decrypt names the key from the ciphertext header.
    assert!(got[3]["resources"][0]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(&key));
    assert_eq!(
        got[4]["requestParameters"],
        json!({"keyId": key, "keySpec": "AES_256"})
    );
    assert_eq!(got[5]["requestParameters"], json!({"numberOfBytes": 32}));
    assert!(got[6]["resources"][0]["ARN"]
        .as_str()
        .unwrap()
        .ends_with(&key));

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
            hex::encode(secret),
            hex::encode(secret).to_uppercase(),
            String::from_utf8_lossy(secret).to_string(),
        ];
        for form in forms {
            assert!(
                !trail.contains(&form),
                "secret found in the trail as {form}"
            );
        }
    }

    // kmsctl: verify (by kmsd, MACs) and query.
    let report = verify_online(&socket);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["macChecked"], true);
    let dir_arg = dir.to_str().unwrap();
    let out = kmsctl(&[
        "--output",
        "json",
        "audit",
        "query",
        "--audit-dir",
        dir_arg,
        "--uid",
        "4242",
    ]);
    let by_uid: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(by_uid.len(), 4);
    let out = kmsctl(&[
        "--output",
        "json",
        "audit",
        "query",
        "--audit-dir",
        dir_arg,
        "--error",
        "--start-time",
        "1h",
    ]);
    let errors: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        errors.len(),
        expected.iter().filter(|e| e.3.is_some()).count()
    );
    let out = kmsctl(&[
        "--output",
        "table",
        "audit",
        "query",
        "--audit-dir",
        dir_arg,
        "--key-id",
        "alias/audited",
        "--event-name",
        "Encrypt",
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("audited") && table.contains(&key), "{table}");
    let out = kmsctl(&[
        "audit",
        "query",
        "--audit-dir",
        dir_arg,
        "--start-time",
        "yesterday-ish",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Only root may ask kmsd to verify; the refusal is itself audited.
    let (status, _, answer) = curl_as(4242, &socket, "KmsdAuditVerify", &json!({}));
    assert_eq!(status, 400);
    assert_eq!(answer["__type"], "AccessDeniedException");
    let last = api_records(&dir).pop().unwrap();
    assert_eq!(last["eventName"], "KmsdAuditVerify");
    assert_eq!(last["userIdentity"]["uid"], 4242);
}

fn options(config: &str) -> KmsdOptions {
    KmsdOptions {
        config: config.to_string(),
        ..KmsdOptions::default()
    }
}

const SMALL_FILES: &str = "[audit]\nrotate_bytes = 4096\ncheckpoint_every = 5\n";
/// For tests that edit the file kmsd is writing: without preallocated zeros at its end.
const SMALL_FILES_NO_PREALLOCATION: &str =
    "[audit]\nrotate_bytes = 4096\ncheckpoint_every = 5\npreallocate_bytes = 0\n";

async fn some_requests(client: &Client, key: &str, n: usize) {
    for i in 0..n {
        ok(
            client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"n": i.to_string()}}),
        )
        .await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for file in files(from) {
        std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
    }
}

fn edit_lines(file: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines);
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_catches_edits_deletions_swaps_truncation_and_removed_files() {
    let mut fx = Fixture::start_with(options(SMALL_FILES_NO_PREALLOCATION));
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 60).await;
    let dir = audit_dir(&fx);
    assert!(files(&dir).len() >= 4, "{:?}", files(&dir));
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);

    // While kmsd runs: an edited record in an old file fails its MAC (online) and breaks
    // the chain (offline); the newest file cut short is caught by kmsd's durable head.
    let pristine = fx.dir.root.path().join("pristine");
    copy_dir(&dir, &pristine);
    let second = files(&dir)[1].clone();
    // The first request record of the file that is followed by another line.
    let text = std::fs::read_to_string(&second).unwrap();
    let target = text
        .lines()
        .enumerate()
        .position(|(i, line)| line.contains("\"uid\":0") && i + 1 < text.lines().count())
        .expect("a request record followed by another line");
    edit_lines(&second, |lines| {
        lines[target] = lines[target].replace("\"uid\":0", "\"uid\":1000");
    });
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["problem"]["kind"], "macMismatch", "{report}");
    assert_eq!(report["problem"]["line"], target + 1, "{report}");
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "chainBroken", "{report}");
    assert_eq!(report["problem"]["line"], target + 2, "{report}");
    std::fs::copy(pristine.join(second.file_name().unwrap()), &second).unwrap();
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
    let newest = files(&dir).pop().unwrap();
    let saved = std::fs::read(&newest).unwrap();
    // Cut the last record off (the file may hold only that one).
    let keep = saved[..saved.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    std::fs::write(&newest, &saved[..keep]).unwrap();
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["problem"]["kind"], "truncated", "{report}");
    // Put the record back, keeping the record of that verification (kmsd wrote it where
    // its records end, past the hole the cut left).
    let appended = std::fs::read(&newest).unwrap()[saved.len()..].to_vec();
    std::fs::write(&newest, [saved.as_slice(), appended.as_slice()].concat()).unwrap();
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
    fx.kmsd.stop();
    copy_dir(&dir, &pristine);
    assert_eq!(verify_offline(&pristine)["ok"], true);

    // Offline, on copies: each kind of damage is reported with the first bad record.
    type Damage = Box<dyn Fn(&[PathBuf])>;
    let cases: Vec<(&str, Damage, &[&str])> = vec![
        (
            "edited",
            Box::new(|f: &[PathBuf]| {
                edit_lines(&f[1], |l| {
                    l[2] = l[2].replace("\"eventID\":\"", "\"eventID\":\"0");
                });
            }),
            &["chainBroken"],
        ),
        (
            "deleted",
            Box::new(|f: &[PathBuf]| {
                edit_lines(&f[1], |l| {
                    l.remove(2);
                });
            }),
            &["missing"],
        ),
        (
            "swapped",
            Box::new(|f: &[PathBuf]| edit_lines(&f[1], |l| l.swap(1, 2))),
            &["missing", "outOfOrder"],
        ),
        (
            "truncated mid-record",
            Box::new(|f: &[PathBuf]| {
                let data = std::fs::read(&f[1]).unwrap();
                std::fs::write(&f[1], &data[..data.len() / 2]).unwrap();
            }),
            &["truncated"],
        ),
        (
            "truncated at a record boundary",
            Box::new(|f: &[PathBuf]| {
                edit_lines(&f[1], |l| {
                    l.pop();
                });
            }),
            &["missing"],
        ),
        (
            "removed file",
            Box::new(|f: &[PathBuf]| std::fs::remove_file(&f[2]).unwrap()),
            &["missing"],
        ),
        (
            "removed first file",
            Box::new(|f: &[PathBuf]| std::fs::remove_file(&f[0]).unwrap()),
            &["missing"],
        ),
    ];
    for (name, damage, kinds) in cases {
        let copy = fx.dir.root.path().join(name.replace(' ', "-"));
        copy_dir(&pristine, &copy);
        damage(&files(&copy));
        let report = verify_offline(&copy);
        assert_eq!(report["ok"], false, "{name}: {report}");
        let kind = report["problem"]["kind"].as_str().unwrap();
        assert!(kinds.contains(&kind), "{name}: {report}");
        assert!(
            report["problem"]["expectedSequence"].as_u64().is_some(),
            "{name}: {report}"
        );
    }
    // kmsctl's human report names the record and exits 1.
    let copy = fx.dir.root.path().join("removed-file");
    let out = kmsctl(&[
        "--output",
        "text",
        "audit",
        "verify",
        "--offline",
        "--audit-dir",
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAILED") && text.contains("first broken or missing record: sequence"),
        "{text}"
    );

    // A forger who re-chains every later record passes the offline check but not the MAC:
    // kmsd refuses to continue such a trail.
    let all = files(&dir);
    let mut prev: Option<String> = None;
    let mut edited = false;
    for file in &all {
        edit_lines(file, |lines| {
            for line in lines.iter_mut() {
                let mut record: serde_json::Map<String, Value> =
                    serde_json::from_str(line).unwrap();
                let mac = record.remove("mac").unwrap();
                if let Some(hash) = &prev {
                    record.insert("prevHash".into(), json!(hash));
                }
                if !edited && record["eventName"] == "Encrypt" {
                    record.insert("eventName".into(), json!("Decrypt"));
                    edited = true;
                }
                // Same layout as kmsd: body, then the mac field appended.
                let body = serde_json::to_string(&record).unwrap();
                use sha2::Digest;
                prev = Some(hex::encode(sha2::Sha256::digest(body.as_bytes())));
                *line = format!("{},\"mac\":{}}}", &body[..body.len() - 1], mac);
            }
        });
    }
    // Without the key database next to it the forgery keeps the chain; with it, the record
    // the stored audit head names no longer has its hash.
    let copy = fx.dir.root.path().join("rechained");
    copy_dir(&dir, &copy);
    assert_eq!(
        verify_offline(&copy)["ok"],
        true,
        "the forgery keeps the chain"
    );
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "chainBroken", "{report}");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("audit head in the key database"),
        "{report}"
    );
    let refused = Kmsd::try_start(&fx.tpm, &fx.dir, options(SMALL_FILES_NO_PREALLOCATION))
        .err()
        .expect("kmsd must refuse a forged trail");
    assert!(refused.contains("fails its MAC"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_continues_across_rotation_restarts_crashes_and_days() {
    let mut fx = Fixture::start_with(options(SMALL_FILES));
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 20).await;
    drop(client);
    fx.kmsd.stop();
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options(SMALL_FILES));
    some_requests(&fx.client(), &key, 5).await;
    // A crash in the middle of a write leaves a torn line: at the end of the records, in
    // the preallocated zeros when there are any.
    fx.kmsd.kill();
    let dir = audit_dir(&fx);
    let newest = files(&dir).pop().unwrap();
    let data = std::fs::read(&newest).unwrap();
    let valid = kmsd::audit::verify::content_len(&data) as u64;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"{\"eventVersion\":\"1.08\",\"eventTi", valid)
        .unwrap();
    drop(file);
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "truncated", "{report}");
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options(SMALL_FILES));
    some_requests(&fx.client(), &key, 3).await;
    // A new UTC day starts a new file.
    fx.dir.set_clock_offset_secs(86_400);
    some_requests(&fx.client(), &key, 3).await;

    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["checkpoints"].as_u64().unwrap() >= 4, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("incomplete record"), "{report}");
    assert_eq!(verify_offline(&dir)["ok"], true);

    let all = records(&dir);
    let sequences: Vec<u64> = all
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=all.len() as u64).collect::<Vec<_>>());
    let starts: Vec<&Value> = all
        .iter()
        .filter(|r| r["eventName"] == "AuditTrailStart")
        .collect();
    let kinds: Vec<&str> = starts
        .iter()
        .map(|r| r["serviceEventDetails"]["startKind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["genesis", "resumed", "recovered"]);
    assert_eq!(
        starts[2]["serviceEventDetails"]["tornFile"],
        newest.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(starts[2]["serviceEventDetails"]["validBytes"], valid);
    // CreateKey, the Encrypts, and the KmsdAuditVerify request above.
    assert_eq!(api_records(&dir).len(), 1 + 20 + 5 + 3 + 3 + 1);
    // Every file holds one UTC day, and the trail spans two.
    let mut days = std::collections::BTreeSet::new();
    for file in files(&dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        let file_days: std::collections::BTreeSet<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| r["eventTime"].as_str().unwrap()[..10].to_string())
            .collect();
        assert!(file_days.len() <= 1, "{file:?}: {file_days:?}");
        days.extend(file_days);
    }
    assert_eq!(days.len(), 2, "{days:?}");
    // Files and directory are private.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for file in files(&dir) {
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_closed_and_what_was_written_still_verifies() {
    if !is_root() {
        eprintln!("skipping: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mount = dir.root.path().join("auditfs");
    std::fs::create_dir(&mount).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _tmpfs = Tmpfs(mount.clone());
    let audit = mount.join("audit");
    let config = format!(
        "[audit]\ndir = \"{}\"\nto_log = true\npreallocate_bytes = 16384\n",
        audit.display()
    );
    let mut kmsd = Kmsd::start_with(&tpm, &dir, options(&config));
    let client = kmsd.client();
    let key = create_key(&client).await;
    // Most of the space goes to a filler file, so the trail fills up quickly.
    let filler = mount.join("filler");
    std::fs::write(&filler, vec![0u8; 200 * 1024]).unwrap();

    let description = "d".repeat(4000);
    let mut refused = None;
    for i in 0..200 {
        let result = client
            .call_json(
                "UpdateKeyDescription",
                &json!({"KeyId": key, "Description": format!("{i}{description}")}),
            )
            .await;
        if let Err(err) = result {
            refused = Some(err);
            break;
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert_eq!(
        refused.exception(),
        Some("KMSInternalException"),
        "{refused}"
    );
    assert!(refused.to_string().contains("audit trail"), "{refused}");
    // The refusal shows in the metrics.
    let scrape = client
        .send(
            hyper::Request::get("/metrics")
                .header("host", "kmsd")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&scrape.body).to_string();
    assert!(text.contains("\nkmsd_audit_healthy 0\n"), "{text}");
    let failures: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("kmsd_audit_write_failures_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("kmsd_audit_write_failures_total");
    assert!(failures >= 1.0, "{text}");
    // Fail closed: the next request is refused before it runs.
    let keys_before = std::fs::read_dir(dir.state_dir()).unwrap().count();
    let next = client.call_json("CreateKey", &json!({})).await.unwrap_err();
    assert_eq!(next.exception(), Some("KMSInternalException"));
    assert_eq!(
        std::fs::read_dir(dir.state_dir()).unwrap().count(),
        keys_before
    );
    std::fs::remove_file(&filler).unwrap();
    let listed = poll(
        "requests to be served again",
        std::time::Duration::from_secs(30),
        || {
            let rt = tokio::runtime::Handle::current();
            let answer = tokio::task::block_in_place(|| {
                rt.block_on(client.call_json("ListKeys", &json!({})))
            });
            answer.ok()
        },
    );
    assert_eq!(
        listed["Keys"].as_array().unwrap().len(),
        1,
        "the refused CreateKey never ran"
    );
    let log = kmsd.log_text();
    assert!(log.contains("AUDIT TRAIL WRITE FAILED"), "{log}");
    assert!(
        log.contains("request refused: the audit trail cannot be written"),
        "{log}"
    );
    assert!(log.contains("kmsd::audit"), "to_log emits records: {log}");
    // Everything written before (and after) the failure verifies, MACs included.
    let report = verify_online(&kmsd.socket);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(verify_offline(&audit)["ok"], true);
    kmsd.kill();
}

/// Requests from `workers` concurrent clients until stopped: Encrypt, and every eighth a
/// CreateKey (a change, whose intent record must be durable before it commits). Sends the
/// request id of every request answered with 200.
fn request_load(
    socket: &Path,
    key: &str,
    workers: usize,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<String>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (answered_tx, answered_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let tasks = (0..workers)
        .map(|worker| {
            let client = Client::new(socket);
            let answered_tx = answered_tx.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                for i in 0usize.. {
                    let (op, body) = if (i + worker) % 8 == 0 {
                        ("CreateKey", json!({"Description": "durability"}))
                    } else {
                        ("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")}))
                    };
                    let Ok(response) = client
                        .call_raw(Some(op), Bytes::from(body.to_string()))
                        .await
                    else {
                        return;
                    };
                    if response.status != 200 {
                        return;
                    }
                    let id = response.headers["x-amzn-requestid"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    if answered_tx.send(id).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    (answered_rx, tasks)
}

/// Each durability mode keeps its guarantee across SIGKILL: whatever the instant of the
/// kill, every request that was answered has its record in the trail, every committed key
/// has its intent record, and the chain verifies after each restart (a torn tail included).
/// A clean stop in write mode flushes first: the next start finds the trail ending exactly
/// at the durable head.
#[tokio::test(flavor = "multi_thread")]
async fn every_answered_request_survives_sigkill_in_both_durability_modes() {
    for durability in ["fsync", "write"] {
        let config = format!("[audit]\ndurability = \"{durability}\"\n");
        let tpm = Swtpm::start();
        let dir = KmsdDir::new();
        let mut kmsd = Kmsd::start_with(&tpm, &dir, options(&config));
        let key = create_key(&kmsd.client()).await;
        let trail = dir.state_dir().join("audit");
        let mut answered = Vec::new();
        for cycle in 0..3 {
            let (mut ids, tasks) = request_load(&kmsd.socket, &key, 6);
            // A different moment of the load in each cycle.
            let before_kill = 60 + 37 * cycle;
            while answered.len() < before_kill * (cycle + 1) {
                match tokio::time::timeout(Duration::from_secs(60), ids.recv()).await {
                    Ok(Some(id)) => answered.push(id),
                    _ => panic!("{durability}: the request load stalled"),
                }
            }
            kmsd.kill();
            for task in tasks {
                task.await.unwrap();
            }
            while let Ok(id) = ids.try_recv() {
                answered.push(id);
            }
            let report = verify_offline(&trail);
            assert_eq!(report["ok"], true, "{durability}, cycle {cycle}: {report}");
            let recorded: std::collections::HashSet<String> = api_records(&trail)
                .iter()
                .filter_map(|r| r["requestID"].as_str().map(str::to_string))
                .collect();
            let missing: Vec<&String> = answered
                .iter()
                .filter(|id| !recorded.contains(*id))
                .collect();
            assert!(
                missing.is_empty(),
                "{durability}, cycle {cycle}: {} answered requests have no record: {missing:?}",
                missing.len()
            );
            kmsd = Kmsd::start_with(&tpm, &dir, options(&config));
            let committed = ok(&kmsd.client(), "ListKeys", json!({"Limit": 1000})).await;
            let intents = records(&trail)
                .into_iter()
                .filter(|r| r["eventName"] == "KmsdChangeIntent")
                .count();
            let keys = committed["Keys"].as_array().unwrap().len();
            assert!(
                intents >= keys,
                "{durability}: {keys} keys but {intents} intent records"
            );
        }
        // A clean stop right after load: the head is recorded after the flush.
        let (mut ids, tasks) = request_load(&kmsd.socket, &key, 6);
        for _ in 0..50 {
            answered.push(ids.recv().await.expect("answered"));
        }
        if durability == "write" {
            // Answered before their flush, the records still reach the disk in the
            // background: the durable head in the key database catches up with them.
            let last = records(&trail).last().unwrap()["sequence"]
                .as_u64()
                .unwrap();
            poll(
                "the durable head to reach the records",
                Duration::from_secs(10),
                || {
                    let stored = verify_offline(&trail)["storedHead"]["sequence"].as_u64()?;
                    (stored >= last).then_some(())
                },
            );
        }
        kmsd.stop();
        for task in tasks {
            task.await.unwrap();
        }
        kmsd = Kmsd::start_with(&tpm, &dir, options(&config));
        assert!(
            kmsd.log_text()
                .contains(&format!("durability=\"{durability}\""))
                || kmsd
                    .log_text()
                    .contains(&format!("durability={durability}")),
            "the start does not log the durability: {}",
            kmsd.log_text()
        );
        let report = verify_online(&kmsd.socket);
        assert_eq!(report["ok"], true, "{durability}: {report}");
        kmsd.stop();
    }
}

/// (size, bytes of records) of a trail file.
fn sizes(path: &Path) -> (usize, usize) {
    let data = std::fs::read(path).unwrap();
    (data.len(), kmsd::audit::verify::content_len(&data))
}

/// Preallocated zeros: the file being written carries zeros after its records; a finished
/// (rotated) file and the last file after a clean stop do not; after a SIGKILL the zeros
/// stay and every reader (kmsd's start, verify, query) ends the records at the first one.
#[tokio::test(flavor = "multi_thread")]
async fn preallocated_zeros_never_hide_the_end_of_the_trail() {
    let config = "[audit]\nrotate_bytes = 4096\npreallocate_bytes = 65536\n";
    let mut fx = Fixture::start_with(options(config));
    let dir = audit_dir(&fx);
    let key = create_key(&fx.client()).await;
    some_requests(&fx.client(), &key, 12).await;
    let all = files(&dir);
    assert!(all.len() >= 3, "{all:?}");
    for finished in &all[..all.len() - 1] {
        let (size, records) = sizes(finished);
        assert_eq!(
            size,
            records,
            "{} keeps zeros after rotation",
            finished.display()
        );
    }
    let newest = all.last().unwrap().clone();
    let (size, records) = sizes(&newest);
    assert!(
        records > 0 && size > records,
        "no zeros after the records: {size} {records}"
    );

    // SIGKILL: the zeros stay; the next start continues the chain after the records.
    fx.kmsd.kill();
    let answered_before = api_records(&dir).len();
    assert_eq!(answered_before, 13, "CreateKey + 12 Encrypt");
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options(config));
    some_requests(&fx.client(), &key, 2).await;
    let (size, records) = sizes(&newest);
    assert!(size > records, "the killed file lost its zeros");
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
    let report = verify_offline(&dir);
    assert_eq!(report["ok"], true, "{report}");
    // Bytes after the zeros: zeros in the middle could hide records, so verify fails.
    let handle = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&handle, b"{\"forged\":1}\n", size as u64 - 20)
        .unwrap();
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "truncated", "{report}");
    assert!(
        report["problem"]["message"]
            .to_string()
            .contains("non-zero bytes follow"),
        "{report}"
    );
    std::os::unix::fs::FileExt::write_all_at(&handle, &[0u8; 13], size as u64 - 20).unwrap();
    drop(handle);
    let out = kmsctl(&[
        "--output",
        "json",
        "audit",
        "query",
        "--audit-dir",
        dir.to_str().unwrap(),
        "--event-name",
        "Encrypt",
    ]);
    let encrypts: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("query output: {out:?}"));
    assert_eq!(encrypts.len(), 14, "{out:?}");

    // A clean stop trims the last file; the start after it insists on its exact length.
    fx.kmsd.stop();
    let last = files(&dir).pop().unwrap();
    let (size, records) = sizes(&last);
    assert_eq!(
        size,
        records,
        "a clean stop left zeros in {}",
        last.display()
    );
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options(config));
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
}

/// With durability "write", the background flush is paced by `write_flush_interval_ms`, but
/// a change (whose intent record must be on disk before it commits) is not made to wait for
/// the pace: five CreateKeys in a row with a 1 s pace take far less than the 4 s they would
/// if each waited for it.
#[tokio::test(flavor = "multi_thread")]
async fn changes_do_not_wait_for_the_write_modes_flush_pace() {
    let config = "[audit]\ndurability = \"write\"\nwrite_flush_interval_ms = 1000\n";
    let fx = Fixture::start_with(options(config));
    let client = fx.client();
    // Start the pace: a flush just happened.
    create_key(&client).await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        create_key(&client).await;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "5 CreateKeys took {took:?}: they waited for the flush pace"
    );
}
