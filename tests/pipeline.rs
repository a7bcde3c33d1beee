//! Regression tests of the request pipeline: non-root admins listing keys and aliases while
//! root creates keys (the catalog-lock deadlock), KeyId forms per operation, secrets in
//! miscased fields never reaching the trail, no committed change without its audit record
//! (full disk; SIGKILL between the intent record and the outcome), and service events for
//! automatic rotation and destruction.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN_UIDS: [u32; 2] = [4601, 4602];

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `GET /ping` on a fresh connection, with a deadline; true when it answers 200.
fn ping(socket: &Path, deadline: Duration) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(deadline));
    let _ = stream.set_write_timeout(Some(deadline));
    if stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: kmsd\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn kmsctl_as(uid: u32, socket: &Path, args: &[&str]) -> std::process::Output {
    Command::new(KMSCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .output()
        .expect("run kmsctl")
}

/// How long the lock test runs (30 s, as the issue asks; `KMSD_TEST_LOCK_SECS` shortens it).
fn lock_test_duration() -> Duration {
    let secs = std::env::var("KMSD_TEST_LOCK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_listing_while_root_creates_keys_never_stall_the_daemon() {
    if !is_root() {
        eprintln!("not root: cannot run callers as other uids; skipped");
        return;
    }
    let fx = Fixture::start_with(KmsdOptions {
        config: format!(
            "[access]\nadmin_users = [\"{}\", \"{}\"]\n",
            ADMIN_UIDS[0], ADMIN_UIDS[1]
        ),
        ..KmsdOptions::default()
    });
    let client = fx.client();
    // Keys with policies the admins must evaluate (and fail) to list them.
    for i in 0..20 {
        let key = create_key(&client).await;
        ok(
            &client,
            "CreateAlias",
            json!({"AliasName": format!("alias/lock-{i}"), "TargetKeyId": key}),
        )
        .await;
    }
    let socket = fx.kmsd.socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let listed = Arc::new(AtomicU64::new(0));
    let mut listers = Vec::new();
    for uid in ADMIN_UIDS {
        for command in ["list-keys", "list-aliases"] {
            let (socket, stop, listed) = (socket.clone(), Arc::clone(&stop), Arc::clone(&listed));
            listers.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let output = kmsctl_as(uid, &socket, &[command]);
                    assert!(
                        output.status.success(),
                        "uid {uid} {command}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    listed.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    let creator = {
        let (socket, stop) = (socket.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut created = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let output = Command::new(KMSCTL)
                    .args(["--socket"])
                    .arg(&socket)
                    .args(["create-key"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("run kmsctl");
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                created += 1;
            }
            created
        })
    };
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < lock_test_duration() {
        assert!(
            ping(&socket, Duration::from_secs(2)),
            "GET /ping did not answer within 2 s after {:?}",
            started.elapsed()
        );
        pings += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for lister in listers {
        lister.join().expect("lister");
    }
    let created = creator.join().expect("creator");
    assert!(created > 0 && listed.load(Ordering::Relaxed) > 0 && pings > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn management_operations_refuse_aliases_as_aws_does() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/forms", "TargetKeyId": key}),
    )
    .await;
    let alias_arn = "arn:kmsd:kms:local:000000000000:alias/forms";
    for alias in ["alias/forms", alias_arn] {
        // Operations whose KeyId takes key id or key ARN only.
        let cases = [
            (
                "ScheduleKeyDeletion",
                json!({"KeyId": alias, "PendingWindowInDays": 7}),
            ),
            ("DisableKey", json!({"KeyId": alias})),
            ("EnableKeyRotation", json!({"KeyId": alias})),
            ("PutKeyPolicy", json!({"KeyId": alias, "Policy": "{}"})),
            ("TagResource", json!({"KeyId": alias, "Tags": []})),
            ("ListGrants", json!({"KeyId": alias})),
            (
                "CreateGrant",
                json!({"KeyId": alias, "GranteePrincipal": "uid:5", "Operations": ["Decrypt"]}),
            ),
            (
                "CreateAlias",
                json!({"AliasName": "alias/other", "TargetKeyId": alias}),
            ),
        ];
        for (op, body) in cases {
            fails(&client, op, body, "NotFoundException").await;
        }
        // Operations that take an alias.
        ok(&client, "DescribeKey", json!({"KeyId": alias})).await;
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": alias, "Plaintext": b64(b"x")}),
        )
        .await;
    }
    // The key was not scheduled for deletion through its alias.
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await;
}

fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    files
}

fn trail_text(dir: &Path) -> String {
    audit_files(dir)
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

fn records(dir: &Path) -> Vec<Value> {
    trail_text(dir)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miscased_secret_field_never_reaches_the_trail() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let secret = "c3VwZXItc2VjcmV0LXZhbHVlLTQ3MTE=";
    for body in [
        json!({"KeyId": key, "plaintext": secret}),
        json!({"KeyId": key, "PLAINTEXT": secret, "Plaintext": b64(b"x")}),
        json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"a": "b"}, "Extra": {"Plaintext": secret}}),
    ] {
        fails(&client, "Encrypt", body, "ValidationException").await;
    }
    fails(
        &client,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:5", "Operations": ["Decrypt"],
               "Constraints": {"EncryptionContextEquals": {"a": "b"}, "plaintext": secret}}),
        "ValidationException",
    )
    .await;
    let text = trail_text(&fx.dir.state_dir().join("audit"));
    let raw = String::from_utf8(common::unb64(&json!(secret))).unwrap();
    assert!(
        !text.contains(secret),
        "the secret (base64) is in the trail"
    );
    assert!(!text.contains(&raw), "the secret (decoded) is in the trail");
    assert!(
        text.contains("unrecognizedFields"),
        "the trail shows the fields were there"
    );
}

/// Options for a kmsd whose audit trail lives on a tiny tmpfs (root only).
fn tiny_tmpfs(root: &Path) -> Option<PathBuf> {
    let mount = root.join("tiny-audit");
    std::fs::create_dir_all(&mount).ok()?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .ok()?;
    status.success().then_some(mount)
}

fn fill(dir: &Path) {
    let mut file = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_audit_write_leaves_no_committed_change() {
    if !is_root() {
        eprintln!("not root: cannot mount a tmpfs; skipped");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let Some(mount) = tiny_tmpfs(root.path()) else {
        eprintln!("cannot mount a tmpfs here; skipped");
        return;
    };
    let audit_dir = mount.join("audit");
    // Without preallocated zeros: with them, records keep landing in space the trail
    // already holds after the disk is full (tests/audit.rs fills past them).
    let options = KmsdOptions {
        config: format!(
            "[audit]\ndir = \"{}\"\npreallocate_bytes = 0\n",
            audit_dir.display()
        ),
        ..KmsdOptions::default()
    };
    let mut fx = Fixture::start_with(options.clone());
    let client = fx.client();
    let key = create_key(&client).await;
    let before = ok(&client, "ListKeys", json!({})).await["Keys"]
        .as_array()
        .unwrap()
        .len();
    fill(&mount);
    // Every change is refused, and none is committed.
    fails(&client, "CreateKey", json!({}), "KMSInternalException").await;
    fails(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
        "KMSInternalException",
    )
    .await;
    let _ = std::fs::remove_file(mount.join("filler"));
    // A restart recovers the trail (a failed fsync poisons the writer until then). The same
    // audit directory: started on another (empty) one, kmsd would refuse, as the key
    // database's audit head says the trail goes further.
    fx.kmsd.stop();
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options);
    let client = fx.client();
    let keys = ok(&client, "ListKeys", json!({})).await["Keys"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(keys, before, "a refused CreateKey left a key behind");
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
    drop(fx);
    let _ = Command::new("umount").arg(&mount).status();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_commit_and_record_leaves_a_trail_verify_explains() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let kept = create_key(&client).await;
    fx.kmsd.kill();
    // kmsd exits right after the next change is committed, before its outcome record.
    fx.kmsd = Kmsd::start_with(
        &fx.tpm,
        &fx.dir,
        KmsdOptions {
            args: vec!["--test-crash-after-commit".into()],
            ..KmsdOptions::default()
        },
    );
    let client = fx.client();
    assert!(client.call_json("CreateKey", &json!({})).await.is_err());
    fx.kmsd.kill();
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    let client = fx.client();
    let report: Value = client
        .call("KmsdAuditVerify", &json!({}))
        .await
        .expect("verify");
    assert_eq!(report["ok"], true, "{report}");
    let unresolved = report["unresolvedChanges"].as_array().unwrap();
    assert_eq!(unresolved.len(), 1, "{report}");
    assert_eq!(unresolved[0]["operation"], "CreateKey", "{report}");
    assert_eq!(unresolved[0]["committed"], true, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("HAS the change"), "{report}");
    // The committed key exists, and it is the one the intent record names.
    let keys = ok(&client, "ListKeys", json!({})).await;
    let ids: Vec<&str> = keys["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["KeyId"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{keys}");
    let new_key = ids.iter().find(|id| **id != kept).unwrap();
    let sequence = unresolved[0]["intentSequence"].as_u64().unwrap();
    let intent = records(&fx.dir.state_dir().join("audit"))
        .into_iter()
        .find(|r| r["sequence"] == sequence)
        .unwrap();
    assert!(
        intent["resources"].to_string().contains(new_key),
        "{intent}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_rotation_and_destruction_are_service_events() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let rotated = create_key(&client).await;
    ok(
        &client,
        "EnableKeyRotation",
        json!({"KeyId": rotated, "RotationPeriodInDays": 90}),
    )
    .await;
    let deleted = create_key(&client).await;
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": deleted, "PendingWindowInDays": 7}),
    )
    .await;
    // 100 days later (the test clock), a restart runs maintenance at start-up.
    fx.dir.set_clock_offset_secs(100 * 86_400);
    fx.restart();
    let client = fx.client();
    fails(
        &client,
        "DescribeKey",
        json!({"KeyId": deleted}),
        "NotFoundException",
    )
    .await;
    let rotations = ok(&client, "ListKeyRotations", json!({"KeyId": rotated})).await;
    assert_eq!(rotations["Rotations"].as_array().unwrap().len(), 1);
    let all = records(&fx.dir.state_dir().join("audit"));
    let event = |name: &str, key: &str| {
        all.iter().find(|r| {
            r["eventName"] == name
                && r["eventType"] == "AwsServiceEvent"
                && r["resources"].to_string().contains(key)
        })
    };
    let rotation = event("RotateKey", &rotated).expect("RotateKey service event");
    assert_eq!(rotation["readOnly"], false);
    assert!(rotation.get("userIdentity").is_none());
    event("DeleteKey", &deleted).expect("DeleteKey service event");
    // Each is closed by its outcome, so verify has nothing unresolved.
    let report: Value = client.call("KmsdAuditVerify", &json!({})).await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["unresolvedChanges"], json!([]), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mutations_are_not_read_only_in_the_trail() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    ok(
        &client,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:5", "Operations": ["Decrypt"]}),
    )
    .await;
    ok(
        &client,
        "PutKeyPolicy",
        json!({"KeyId": key, "PolicyName": "default",
               "Policy": ok(&client, "GetKeyPolicy", json!({"KeyId": key})).await["Policy"]}),
    )
    .await;
    let all = records(&fx.dir.state_dir().join("audit"));
    for name in ["CreateKey", "CreateGrant", "PutKeyPolicy"] {
        let record = all
            .iter()
            .find(|r| r["eventName"] == name && r["eventType"] == "AwsApiCall")
            .unwrap_or_else(|| panic!("no {name} record"));
        assert_eq!(record["readOnly"], false, "{name}");
        let intent = record["additionalEventData"]["intentSequence"]
            .as_u64()
            .expect("intent");
        assert!(all
            .iter()
            .any(|r| r["sequence"] == intent && r["eventName"] == "KmsdChangeIntent"));
    }
    let get = all
        .iter()
        .find(|r| r["eventName"] == "GetKeyPolicy")
        .unwrap();
    assert_eq!(get["readOnly"], true);
}
