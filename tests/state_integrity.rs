//! An authenticated state dir: records edited in kmsd.db while kmsd is stopped (a flipped
//! byte in a policy, a description or a tag, records swapped between keys, a deleted key or
//! grant, a repointed alias, a resurrected grant, a rolled-back key record) are refused at
//! start with a message naming the record; an empty, truncated or foreign kmsd.db is
//! refused rather than re-initialised; every refused start — after a SIGKILL too, with the
//! WAL present — leaves the state dir byte-identical; and a clean restart verifies.
//!
//! Real swtpm and kmsd processes; the database is edited with rusqlite between runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::Path;

fn open_db(dir: &KmsdDir) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.state_dir().join("kmsd.db")).unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn restore(backup: &Path, dir: &KmsdDir) {
    let state = dir.state_dir();
    if state.exists() {
        std::fs::remove_dir_all(&state).unwrap();
    }
    copy_tree(backup, &state);
}

/// Starts kmsd expecting it to refuse; asserts the state dir is byte-identical afterwards
/// and returns what this attempt logged.
fn refused(tpm: &Swtpm, dir: &KmsdDir, what: &str) -> String {
    let before = dir_fingerprint(&dir.state_dir());
    let logged = std::fs::read_to_string(dir.log())
        .map(|l| l.len())
        .unwrap_or(0);
    if let Ok(mut kmsd) = Kmsd::try_start(tpm, dir, KmsdOptions::default()) {
        kmsd.kill();
        panic!("kmsd started with {what}");
    }
    assert!(
        before == dir_fingerprint(&dir.state_dir()),
        "{what}: the refused start changed the state dir"
    );
    let log = std::fs::read_to_string(dir.log()).unwrap();
    let log = log[logged..].to_string();
    eprintln!("--- {what}:\n{log}");
    assert!(log.contains("untouched"), "{what}: {log}");
    log
}

fn assert_names(log: &str, what: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            log.contains(needle),
            "{what}: the message does not say {needle:?}:\n{log}"
        );
    }
}

type Row = (String, String, Vec<u8>);

fn key_row(dir: &KmsdDir, key: &str) -> Row {
    open_db(dir)
        .query_row(
            "SELECT key_id, record, mac FROM keys WHERE key_id = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
}

fn grant_row(dir: &KmsdDir, grant: &str) -> (String, String, String, Vec<u8>) {
    open_db(dir)
        .query_row(
            "SELECT grant_id, key_id, record, mac FROM grants WHERE grant_id = ?1",
            [grant],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

fn set_record(dir: &KmsdDir, key: &str, record: &str) {
    let changed = open_db(dir)
        .execute(
            "UPDATE keys SET record = ?2 WHERE key_id = ?1",
            rusqlite::params![key, record],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// Flips one byte of `text` at the first occurrence of `marker`.
fn flip_at(text: &str, marker: &str) -> String {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {text}"));
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] ^= 0x20;
    String::from_utf8(bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_records_are_refused_by_name_and_a_clean_restart_verifies() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Sid": "RootAdmin", "Effect": "Allow", "Principal": {"Unix": {"Uid": [0]}}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "NoEncryptFor5005", "Effect": "Deny", "Principal": {"Unix": {"Uid": [5005]}}, "Action": "kms:Encrypt", "Resource": "*"}
    ]});
    let k1 = ok(
        &client,
        "CreateKey",
        json!({"Description": "first key", "Policy": policy.to_string()}),
    )
    .await["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let k2 = ok(
        &client,
        "CreateKey",
        json!({"Description": "second key", "Tags": [{"TagKey": "team", "TagValue": "blue"}]}),
    )
    .await["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let old_k1 = key_row(&fx.dir, &k1);
    ok(
        &client,
        "TagResource",
        json!({"KeyId": k1, "Tags": [{"TagKey": "env", "TagValue": "prod"}]}),
    )
    .await;
    ok(
        &client,
        "UpdateKeyDescription",
        json!({"KeyId": k1, "Description": "first key, described again"}),
    )
    .await;
    ok(&client, "EnableKeyRotation", json!({"KeyId": k2})).await;
    ok(&client, "RotateKeyOnDemand", json!({"KeyId": k1})).await;
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/one", "TargetKeyId": k1}),
    )
    .await;
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/two", "TargetKeyId": k2}),
    )
    .await;
    let mut grants = Vec::new();
    for uid in [5004, 5006] {
        let created = ok(
            &client,
            "CreateGrant",
            json!({"KeyId": k2, "GranteePrincipal": format!("uid:{uid}"), "Operations": ["Decrypt"]}),
        )
        .await;
        grants.push(created["GrantId"].as_str().unwrap().to_string());
    }
    let (g1, g2) = (grants[0].clone(), grants[1].clone());
    let revoked = grant_row(&fx.dir, &g2);
    ok(&client, "RevokeGrant", json!({"KeyId": k2, "GrantId": g2})).await;
    let mut blobs = Vec::new();
    for key in [&k1, &k2] {
        let encrypted = ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"kept")}),
        )
        .await;
        blobs.push(encrypted["CiphertextBlob"].clone());
    }
    drop(client);
    fx.kmsd.stop();
    let backup = tempfile::tempdir().unwrap();
    copy_tree(&fx.dir.state_dir(), backup.path());
    let (tpm, dir) = (&fx.tpm, &fx.dir);

    // A flipped byte in the policy (Deny → deny: the statement no longer parses as a Deny).
    let (_, record, _) = key_row(dir, &k1);
    set_record(dir, &k1, &flip_at(&record, "Deny"));
    let log = refused(tpm, dir, "a flipped byte in a policy");
    assert_names(
        &log,
        "policy",
        &[&format!("key {k1} (table keys)"), "tag does not verify"],
    );

    // A flipped byte in a description.
    restore(backup.path(), dir);
    let (_, record, _) = key_row(dir, &k2);
    set_record(dir, &k2, &flip_at(&record, "second key"));
    let log = refused(tpm, dir, "a flipped byte in a description");
    assert_names(&log, "description", &[&format!("key {k2} (table keys)")]);

    // A flipped byte in a tag.
    restore(backup.path(), dir);
    let (_, _, _, mut mac) = grant_row(dir, &g1);
    mac[7] ^= 1;
    open_db(dir)
        .execute(
            "UPDATE grants SET mac = ?2 WHERE grant_id = ?1",
            rusqlite::params![g1, mac],
        )
        .unwrap();
    let log = refused(tpm, dir, "a flipped byte in a tag");
    assert_names(&log, "tag", &[&format!("grant {g1} (table grants)")]);

    // Two keys' records (with their tags) swapped.
    restore(backup.path(), dir);
    let (_, r1, m1) = key_row(dir, &k1);
    let (_, r2, m2) = key_row(dir, &k2);
    let db = open_db(dir);
    for (key, record, mac) in [(&k1, &r2, &m2), (&k2, &r1, &m1)] {
        db.execute(
            "UPDATE keys SET record = ?2, mac = ?3 WHERE key_id = ?1",
            rusqlite::params![key, record, mac],
        )
        .unwrap();
    }
    drop(db);
    let log = refused(tpm, dir, "records swapped between two keys");
    assert_names(
        &log,
        "swap",
        &[
            &format!("key {k1} (table keys)"),
            &format!("key {k2} (table keys)"),
        ],
    );

    // A deleted key row.
    restore(backup.path(), dir);
    open_db(dir)
        .execute("DELETE FROM keys WHERE key_id = ?1", [&k2])
        .unwrap();
    let log = refused(tpm, dir, "a deleted key row");
    assert_names(
        &log,
        "deleted key",
        &[&format!("key {k2} (table keys) is missing")],
    );

    // A deleted grant.
    restore(backup.path(), dir);
    open_db(dir)
        .execute("DELETE FROM grants WHERE grant_id = ?1", [&g1])
        .unwrap();
    let log = refused(tpm, dir, "a deleted grant");
    assert_names(
        &log,
        "deleted grant",
        &[&format!("grant {g1} (table grants) is missing")],
    );

    // An alias repointed at another key.
    restore(backup.path(), dir);
    open_db(dir)
        .execute(
            "UPDATE aliases SET key_id = ?1 WHERE name = 'alias/one'",
            [&k2],
        )
        .unwrap();
    let log = refused(tpm, dir, "a repointed alias");
    assert_names(
        &log,
        "alias",
        &["alias alias/one (table aliases)", "tag does not verify"],
    );

    // A revoked grant put back (its row and tag are genuine, from before the revocation).
    restore(backup.path(), dir);
    open_db(dir)
        .execute(
            "INSERT INTO grants (grant_id, key_id, record, mac) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![revoked.0, revoked.1, revoked.2, revoked.3],
        )
        .unwrap();
    let log = refused(tpm, dir, "a resurrected grant");
    assert_names(
        &log,
        "resurrected grant",
        &[&format!(
            "grant {g2} (table grants) is not in kmsd's manifest"
        )],
    );

    // A key record rolled back to an older genuine version.
    restore(backup.path(), dir);
    open_db(dir)
        .execute(
            "UPDATE keys SET record = ?2, mac = ?3 WHERE key_id = ?1",
            rusqlite::params![old_k1.0, old_k1.1, old_k1.2],
        )
        .unwrap();
    let log = refused(tpm, dir, "a rolled-back key record");
    assert_names(
        &log,
        "rollback",
        &[&format!(
            "key {k1} (table keys) is not the version kmsd last wrote"
        )],
    );

    // The TPM binding deleted while the audit trail exists: never re-initialised.
    restore(backup.path(), dir);
    open_db(dir)
        .execute("DELETE FROM meta WHERE name = 'tpm-binding'", [])
        .unwrap();
    let log = refused(tpm, dir, "a database without its binding");
    assert_names(&log, "binding", &["without a TPM binding", "audit trail"]);

    // A zero-length kmsd.db, with the audit trail and without it.
    restore(backup.path(), dir);
    std::fs::write(dir.state_dir().join("kmsd.db"), b"").unwrap();
    let log = refused(tpm, dir, "a zero-length kmsd.db");
    assert_names(&log, "empty", &["is empty (0 bytes)"]);
    std::fs::remove_dir_all(dir.state_dir().join("audit")).unwrap();
    let log = refused(tpm, dir, "a zero-length kmsd.db without audit/");
    assert_names(&log, "empty", &["is empty (0 bytes)"]);

    // A truncated kmsd.db.
    restore(backup.path(), dir);
    let path = dir.state_dir().join("kmsd.db");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 4 * 4096, "kmsd.db is only {len} bytes");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    let log = refused(tpm, dir, "a truncated kmsd.db");
    assert_names(&log, "truncated", &["kmsd.db"]);

    // Something that is not a SQLite database.
    restore(backup.path(), dir);
    std::fs::write(&path, vec![b'#'; 8192]).unwrap();
    let log = refused(tpm, dir, "a kmsd.db that is not SQLite");
    assert_names(&log, "not sqlite", &["not a SQLite database"]);

    // Untouched: starts, verifies every record, and serves everything.
    restore(backup.path(), dir);
    let logged = std::fs::read_to_string(dir.log()).unwrap().len();
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    let log = fx.kmsd.log_text()[logged..].to_string();
    assert!(log.contains("every record verified"), "{log}");
    let client = fx.client();
    for blob in &blobs {
        let decrypted = ok(&client, "Decrypt", json!({"CiphertextBlob": blob})).await;
        assert_eq!(unb64(&decrypted["Plaintext"]), b"kept");
    }
    let listed = ok(&client, "ListGrants", json!({"KeyId": k2})).await;
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 1);
    ok(
        &client,
        "Encrypt",
        json!({"KeyId": "alias/one", "Plaintext": b64(b"x")}),
    )
    .await;
    // And one more round of changes verifies after a restart.
    ok(&client, "DeleteAlias", json!({"AliasName": "alias/two"})).await;
    ok(&client, "RetireGrant", json!({"KeyId": k2, "GrantId": g1})).await;
    create_key(&client).await;
    drop(client);
    fx.restart();
    assert_eq!(
        ok(&fx.client(), "ListKeys", json!({})).await["Keys"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_start_after_sigkill_leaves_the_wal_untouched() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(create_key(&client).await);
    }
    drop(client);
    kmsd.kill();
    let wal = dir.state_dir().join("kmsd.db-wal");
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0,
        "no WAL after SIGKILL"
    );
    assert!(dir.state_dir().join("kmsd.db-shm").exists());
    // Another TPM: refused after the database was read (through the WAL), byte-identical.
    let other = Swtpm::start();
    let log = refused(&other, &dir, "another TPM after SIGKILL");
    assert_names(&log, "srk", &["SRK"]);
    // The same with the WAL index (-shm) gone: read from a private copy, still untouched.
    std::fs::remove_file(dir.state_dir().join("kmsd.db-shm")).unwrap();
    refused(&other, &dir, "another TPM after SIGKILL, without -shm");
    // The right TPM serves every acknowledged key.
    let kmsd = Kmsd::start(&tpm, &dir);
    let client = kmsd.client();
    for key in &keys {
        ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"after the crash")}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_from_before_tags_is_trusted_once_then_verified() {
    let mut fx = Fixture::start();
    let key = create_key(&fx.client()).await;
    ok(
        &fx.client(),
        "CreateAlias",
        json!({"AliasName": "alias/old", "TargetKeyId": key}),
    )
    .await;
    fx.kmsd.stop();
    // Make it a schema-3 database: no tag columns, no manifest.
    let db = open_db(&fx.dir);
    db.execute_batch(
        "ALTER TABLE keys DROP COLUMN mac;
         ALTER TABLE key_versions DROP COLUMN mac;
         ALTER TABLE aliases DROP COLUMN mac;
         ALTER TABLE grants DROP COLUMN mac;
         DELETE FROM meta WHERE name LIKE 'state-manifest%';
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(db);
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    assert!(
        fx.kmsd.log_text().contains("trusted once"),
        "{}",
        fx.kmsd.log_text()
    );
    ok(
        &fx.client(),
        "Encrypt",
        json!({"KeyId": "alias/old", "Plaintext": b64(b"x")}),
    )
    .await;
    let logged = fx.kmsd.log_text().len();
    fx.restart();
    let log = fx.kmsd.log_text()[logged..].to_string();
    assert!(log.contains("every record verified"), "{log}");
    assert!(!log.contains("trusted once"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_first_start_is_initialised_but_not_next_to_an_audit_trail() {
    let tpm = Swtpm::start();
    let dir = KmsdDir::new();
    // What a crash after SQLite created the file, before the binding was committed, leaves.
    let state = dir.state_dir();
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let db = rusqlite::Connection::open(state.join("kmsd.db")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);",
    )
    .unwrap();
    drop(db);
    // Next to an audit trail it is refused.
    std::fs::create_dir(state.join("audit")).unwrap();
    let log = refused(&tpm, &dir, "an empty database next to audit/");
    assert_names(&log, "audit", &["without a TPM binding", "audit trail"]);
    // Alone, it is initialised (with a warning) and serves.
    std::fs::remove_dir(state.join("audit")).unwrap();
    let mut kmsd = Kmsd::start(&tpm, &dir);
    assert!(
        kmsd.log_text().contains("interrupted first start"),
        "{}",
        kmsd.log_text()
    );
    let key = create_key(&kmsd.client()).await;
    kmsd.stop();
    let kmsd = Kmsd::start(&tpm, &dir);
    ok(&kmsd.client(), "DescribeKey", json!({"KeyId": key})).await;
}
