//! Online backup and restore (`kmsctl backup`, `kmsctl restore`) with real swtpm and kmsd
//! processes: a backup taken while a loop keeps creating keys holds exactly the keys whose
//! CreateKey intent record is at or before the backup's point N (every key acknowledged
//! before the backup was asked for, none asked for after it was acknowledged); restored
//! into a new state dir, kmsd starts on the same TPM, serves those keys, decrypts old
//! ciphertexts, and `kmsctl audit verify` passes. A backup with a flipped byte in its
//! `kmsd.db` or a truncated trail file is refused, naming the file, target untouched; so
//! is a restore into the state dir of a running kmsd.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kmsctl(args: &[&str]) -> Output {
    Command::new(KMSCTL)
        .args(args)
        .env("TSS2_LOG", "all+NONE")
        .output()
        .expect("run kmsctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// One CreateKey of the write loop.
#[derive(Debug, Clone)]
struct Created {
    key_id: String,
    sent: Instant,
    acked: Instant,
}

/// Every successful CreateKey request record of a trail: (intent sequence, key id).
fn create_key_intents(audit_dir: &Path) -> Vec<(u64, String)> {
    let mut found = Vec::new();
    for file in kmsd::audit::verify::list_files(audit_dir).unwrap() {
        for line in std::fs::read(&file).unwrap().split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let sealed = kmsd::audit::chain::SealedLine::parse(line).unwrap();
            let record = &sealed.record;
            if record["eventName"] == "CreateKey" && record["errorCode"].is_null() {
                let key = record["responseElements"]["keyMetadata"]["keyId"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let intent = record["additionalEventData"]["intentSequence"]
                    .as_u64()
                    .unwrap();
                found.push((intent, key));
            }
        }
    }
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
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

async fn list_keys(client: &kmsd::client::Client) -> BTreeSet<String> {
    let listed = ok(client, "ListKeys", json!({"Limit": 1000})).await;
    assert_ne!(listed["Truncated"], json!(true));
    listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_write_load_restores_exactly_the_keys_before_its_point() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    let socket = dir.socket().display().to_string();

    // Made well before the point: a key and a ciphertext under it.
    let old_key = create_key(&client).await;
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": old_key, "Plaintext": b64(b"before the backup")}),
    )
    .await;

    // The write loop.
    let stop = Arc::new(AtomicBool::new(false));
    let created: Arc<Mutex<Vec<Created>>> = Arc::default();
    let writer = {
        let (stop, created, client) = (Arc::clone(&stop), Arc::clone(&created), kmsd.client());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let key_id = create_key(&client).await;
                created.lock().unwrap().push(Created {
                    key_id,
                    sent,
                    acked: Instant::now(),
                });
            }
        })
    };
    let count = |created: &Arc<Mutex<Vec<Created>>>| created.lock().unwrap().len();
    let wait_for = |n: usize| {
        let created = Arc::clone(&created);
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while count(&created) < n {
                assert!(
                    Instant::now() < deadline,
                    "the write loop made too few keys"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(5).await;

    let backup_root = tempfile::tempdir().unwrap();
    let backup_dir = backup_root.path().join("backup");
    let backup_arg = backup_dir.display().to_string();
    let backup_sent = Instant::now();
    let out = {
        let args = [
            "--socket",
            &socket,
            "--output",
            "json",
            "backup",
            "--to",
            &backup_arg,
        ]
        .map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kmsctl(&args)
        })
        .await
        .unwrap()
    };
    let backup_acked = Instant::now();
    assert!(
        out.status.success(),
        "backup: {}\n{}",
        text(&out.stderr),
        kmsd.log_text()
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let point = report["AuditSequence"].as_u64().unwrap();
    let before_ack = count(&created);
    wait_for(before_ack + 5).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let created = created.lock().unwrap().clone();

    // The backup's point is its KmsdBackupPoint record, the last line of its trail.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["auditSequence"], json!(point));
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"kmsd.db"), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("audit/")), "{paths:?}");

    kmsd.stop();

    // Which keys the point includes, from the live trail's CreateKey records (their
    // outcome records may come after N, so the full trail tells their intent sequence).
    let intents = create_key_intents(&dir.state_dir().join("audit"));
    let expected: BTreeSet<String> = intents
        .iter()
        .filter(|(intent, _)| *intent <= point)
        .map(|(_, key)| key.clone())
        .collect();
    let after: BTreeSet<String> = intents
        .iter()
        .filter(|(intent, _)| *intent > point)
        .map(|(_, key)| key.clone())
        .collect();
    assert!(expected.contains(&old_key));
    for key in &created {
        if key.acked < backup_sent {
            assert!(
                expected.contains(&key.key_id),
                "{key:?} acknowledged before the backup"
            );
        }
        if key.sent > backup_acked {
            assert!(after.contains(&key.key_id), "{key:?} sent after the backup");
        }
    }
    assert!(!after.is_empty(), "no key was created after the point");

    // Restore into a new state dir and start kmsd on it, same TPM.
    let restored = KmsdDir::new();
    let state_arg = restored.state_dir().display().to_string();
    let out = kmsctl(&["restore", "--from", &backup_arg, "--state-dir", &state_arg]);
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    let mut kmsd = Kmsd::start(&tpm, &restored);
    let client = kmsd.client();
    assert_eq!(list_keys(&client).await, expected);
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"before the backup");
    let socket = restored.socket().display().to_string();
    let out = kmsctl(&["--socket", &socket, "audit", "verify"]);
    assert!(
        out.status.success(),
        "audit verify on the restored dir: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // A restore into the state dir of a running kmsd is refused.
    let out = kmsctl(&[
        "restore",
        "--from",
        &backup_arg,
        "--state-dir",
        &state_arg,
        "--force",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stop kmsd"),
        "{}",
        text(&out.stderr)
    );
    kmsd.stop();

    // Tampered backups: refused, naming the file, the target untouched.
    let target_root = tempfile::tempdir().unwrap();
    let target = target_root.path().join("state");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("kept"), b"old state").unwrap();
    let target_arg = target.display().to_string();
    let trail_file = paths
        .iter()
        .rev()
        .find(|p| p.starts_with("audit/"))
        .unwrap()
        .to_string();
    type Tamper = fn(&Path, &str);
    let cases: [(&str, Tamper, &str); 2] = [
        (
            "kmsd.db",
            |dir, _| {
                let path = dir.join("kmsd.db");
                let mut bytes = std::fs::read(&path).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
            },
            "SHA-256",
        ),
        (
            "trail",
            |dir, file| {
                let path = dir.join(file);
                let len = std::fs::metadata(&path).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                f.set_len(len - 10).unwrap();
            },
            "bytes",
        ),
    ];
    for (name, tamper, reason) in cases {
        let copy = backup_root.path().join(format!("tampered-{name}"));
        copy_dir(&backup_dir, &copy);
        tamper(&copy, &trail_file);
        let named = if name == "trail" {
            trail_file.as_str()
        } else {
            "kmsd.db"
        };
        let before = dir_fingerprint(target_root.path());
        let copy_arg = copy.display().to_string();
        let out = kmsctl(&[
            "restore",
            "--from",
            &copy_arg,
            "--state-dir",
            &target_arg,
            "--force",
        ]);
        assert!(!out.status.success(), "{name}: restored");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("backup file {named}")) && err.contains(reason),
            "{name}: {err}"
        );
        assert_eq!(dir_fingerprint(target_root.path()), before, "{name}");
        assert_eq!(
            std::fs::read_dir(target_root.path()).unwrap().count(),
            1,
            "{name}"
        );
    }

    // Without --force a non-empty target is refused; with it, the old one is moved aside.
    let out = kmsctl(&["restore", "--from", &backup_arg, "--state-dir", &target_arg]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    let out = kmsctl(&[
        "restore",
        "--from",
        &backup_arg,
        "--state-dir",
        &target_arg,
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let aside: Vec<_> = std::fs::read_dir(target_root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("state.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(target_root.path().join(&aside[0]).join("kept")).unwrap(),
        b"old state"
    );
    assert!(target.join("kmsd.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_goes_into_a_new_or_empty_directory_and_only_root_may_take_one() {
    let fixture = Fixture::start();
    let client = fixture.client();
    let used = tempfile::tempdir().unwrap();
    std::fs::write(used.path().join("x"), b"x").unwrap();
    let message = fails(
        &client,
        "KmsdBackup",
        json!({"Directory": used.path()}),
        "ValidationException",
    )
    .await;
    assert!(message.contains("is not empty"), "{message}");
    let message = fails(
        &client,
        "KmsdBackup",
        json!({"Directory": "relative/dir"}),
        "ValidationException",
    )
    .await;
    assert!(message.contains("absolute"), "{message}");
}
