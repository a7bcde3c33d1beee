//! The trail cannot be cut unnoticed: kmsd keeps its durable head (and the intent records of
//! committed changes) in the key database. With real swtpm and kmsd processes, the audit
//! files are damaged while kmsd is stopped, then kmsd is started: dropped newest records, a
//! deleted newest file, a forged line appended, records moved across a file boundary, an
//! edited head row. Clean and killed restarts (torn tail included) still verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Small files and frequent checkpoints: several files after a few dozen requests.
const SMALL_FILES: &str = "[audit]\nrotate_bytes = 4096\ncheckpoint_every = 5\n";

fn options() -> KmsdOptions {
    KmsdOptions {
        config: SMALL_FILES.to_string(),
        ..KmsdOptions::default()
    }
}

fn audit_dir(fx: &Fixture) -> PathBuf {
    fx.dir.state_dir().join("audit")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    kmsd::audit::verify::list_files(dir).unwrap()
}

fn kmsctl(args: &[&str]) -> std::process::Output {
    Command::new(KMSCTL)
        .args(args)
        .output()
        .expect("run kmsctl")
}

fn report_of(out: std::process::Output) -> Value {
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("verify output: {out:?}"));
    assert_eq!(out.status.success(), report["ok"] == true, "{report}");
    report
}

fn verify_online(socket: &Path) -> Value {
    report_of(kmsctl(&[
        "--socket",
        socket.to_str().unwrap(),
        "--output",
        "json",
        "audit",
        "verify",
    ]))
}

fn verify_offline(dir: &Path) -> Value {
    report_of(kmsctl(&[
        "--output",
        "json",
        "audit",
        "verify",
        "--offline",
        "--audit-dir",
        dir.to_str().unwrap(),
    ]))
}

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

/// The sequence number of the last complete record of the trail.
fn trail_end(dir: &Path) -> u64 {
    let newest = files(dir)
        .into_iter()
        .rev()
        .find(|f| std::fs::metadata(f).unwrap().len() > 0)
        .unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    let last = text.lines().last().unwrap();
    serde_json::from_str::<Value>(last).unwrap()["sequence"]
        .as_u64()
        .unwrap()
}

/// Saves every audit file; `restore` puts them back exactly (and removes any other).
struct Saved(Vec<(PathBuf, Vec<u8>)>);

impl Saved {
    fn take(dir: &Path) -> Saved {
        Saved(
            files(dir)
                .into_iter()
                .map(|f| {
                    let data = std::fs::read(&f).unwrap();
                    (f, data)
                })
                .collect(),
        )
    }
    fn restore(&self, dir: &Path) {
        for file in files(dir) {
            std::fs::remove_file(file).unwrap();
        }
        for (file, data) in &self.0 {
            std::fs::write(file, data).unwrap();
        }
    }
}

fn refused(fx: &Fixture, options: KmsdOptions) -> String {
    match Kmsd::try_start(&fx.tpm, &fx.dir, options) {
        Ok(_) => panic!("kmsd started on a damaged trail"),
        Err(log) => log,
    }
}

/// A line that continues the chain (valid JSON, right sequence and prevHash) but whose MAC
/// was made without the key.
fn forged_after(file: &Path) -> String {
    let data = std::fs::read(file).unwrap();
    let text = String::from_utf8(data[..kmsd::audit::verify::content_len(&data)].to_vec()).unwrap();
    let last = text.lines().last().unwrap();
    // The body is the line without its 74-byte `,"mac":"…"}` suffix, closed again.
    let body = format!("{}}}", &last[..last.len() - 74]);
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut record: serde_json::Map<String, Value> = serde_json::from_str(last).unwrap();
    record.remove("mac");
    let sequence = record["sequence"].as_u64().unwrap() + 1;
    record.remove("sequence");
    record.remove("prevHash");
    record.insert("eventName".into(), json!("Decrypt"));
    record.insert("sequence".into(), json!(sequence));
    record.insert("prevHash".into(), json!(hash));
    let body = serde_json::to_string(&record).unwrap();
    format!(
        "{},\"mac\":\"{}\"}}\n",
        &body[..body.len() - 1],
        "0".repeat(64)
    )
}

/// Adds bytes where the file's records end (over the zeros kmsd preallocated, if any):
/// where a torn write or a forger's line would be read.
fn append(file: &Path, text: &[u8]) {
    let end = kmsd::audit::verify::content_len(&std::fs::read(file).unwrap()) as u64;
    let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&handle, text, end).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_trail_is_refused_at_start_and_fails_verification() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 30).await;
    drop(client);
    fx.kmsd.stop();
    let dir = audit_dir(&fx);
    let saved = Saved::take(&dir);
    let end = trail_end(&dir);
    assert!(files(&dir).len() >= 3, "{:?}", files(&dir));
    let report = verify_offline(&dir);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["storedHead"]["sequence"], end, "{report}");

    // 1. The last records of the newest file dropped.
    let newest = files(&dir).pop().unwrap();
    let text = std::fs::read_to_string(&newest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dropped = lines.len().min(2);
    let kept: String = lines[..lines.len() - dropped]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&newest, kept).unwrap();
    let cut_end = end - dropped as u64;
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "behindHead", "{report}");
    let message = report["problem"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("ends at record {cut_end}"))
            && message.contains(&format!("up to record {end}")),
        "{report}"
    );
    let log = refused(&fx, options());
    assert!(
        log.contains(&format!("ends at record {cut_end}"))
            && log.contains(&format!("up to record {end}"))
            && log.contains("KMSD_AUDIT_ACCEPT_CUT"),
        "{log}"
    );
    saved.restore(&dir);

    // 2. The newest file deleted.
    std::fs::remove_file(&newest).unwrap();
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "newestFileMissing", "{report}");
    let name = newest.file_name().unwrap().to_str().unwrap();
    let message = report["problem"]["message"].as_str().unwrap();
    assert!(
        message.contains(name) && message.contains(&format!("record {end}")),
        "{report}"
    );
    let before_newest = trail_end(&dir);
    let log = refused(&fx, options());
    assert!(
        log.contains(&format!("ends at record {before_newest}"))
            && log.contains(&format!("up to record {end}"))
            && log.contains("MISSING"),
        "{log}"
    );

    // The override names the head it gives up; another number does not do.
    let mut accept = options();
    accept.env = vec![("KMSD_AUDIT_ACCEPT_CUT".into(), (end - 1).to_string())];
    let log = refused(&fx, accept.clone());
    assert!(
        log.contains(&format!("ends at record {before_newest}")),
        "{log}"
    );
    accept.env = vec![("KMSD_AUDIT_ACCEPT_CUT".into(), end.to_string())];
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, accept);
    assert!(fx.kmsd.log_text().contains("AUDIT TRAIL CUT ACCEPTED"));
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["ok"], true, "{report}");
    let start: Value = std::fs::read_to_string(&newest)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["eventName"] == "AuditTrailStart")
        .expect("the start record in the reused file");
    let cut = &start["serviceEventDetails"]["acceptedCut"];
    assert_eq!(cut["headSequence"], end, "{start}");
    assert_eq!(cut["trailEnd"], before_newest, "{start}");
    fx.kmsd.stop();
    assert_eq!(verify_offline(&dir)["ok"], true);
    // Without the variable the next start is a normal one.
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    fx.kmsd.stop();

    // 3. The head row removed from the database: the committed changes' intent records
    //    still say how far the trail must reach.
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    let client = fx.client();
    ok(
        &client,
        "UpdateKeyDescription",
        json!({"KeyId": key, "Description": "changed"}),
    )
    .await;
    drop(client);
    fx.kmsd.stop();
    let intent = intent_of_last_change(&dir);
    let saved = Saved::take(&dir);
    let db = rusqlite::Connection::open(fx.dir.state_dir().join("kmsd.db")).unwrap();
    let head_row: Vec<u8> = db
        .query_row(
            "SELECT value FROM meta WHERE name = 'audit-head'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute("DELETE FROM meta WHERE name = 'audit-head'", [])
        .unwrap();
    // Cut the trail back to before the intent record.
    cut_before(&dir, intent);
    let log = refused(&fx, options());
    assert!(
        log.contains(&format!("intent record is {intent}"))
            && log.contains(&format!("ends at record {}", intent - 1)),
        "{log}"
    );
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "behindHead", "{report}");
    saved.restore(&dir);

    // 4. An edited head row fails its MAC.
    let edited =
        String::from_utf8(head_row.clone())
            .unwrap()
            .replacen("\"sequence\":", "\"sequence\":1", 1);
    db.execute(
        "INSERT INTO meta (name, value) VALUES ('audit-head', ?1)",
        [edited.as_bytes()],
    )
    .unwrap();
    let log = refused(&fx, options());
    assert!(log.contains("fails its MAC"), "{log}");
    db.execute(
        "UPDATE meta SET value = ?1 WHERE name = 'audit-head'",
        [&head_row],
    )
    .unwrap();
    drop(db);
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
}

/// The intent sequence of the last change (its request record's `intentSequence`).
fn intent_of_last_change(dir: &Path) -> u64 {
    let mut found = None;
    for file in files(dir) {
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            if let Some(seq) = record["additionalEventData"]["intentSequence"].as_u64() {
                found = Some(seq);
            }
        }
    }
    found.expect("a change")
}

/// Removes every record from `sequence` on (files that start after it entirely).
fn cut_before(dir: &Path, sequence: u64) {
    for file in files(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l).unwrap()["sequence"]
                    .as_u64()
                    .unwrap()
                    < sequence
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.is_empty() {
            std::fs::remove_file(&file).unwrap();
        } else {
            std::fs::write(&file, kept).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_lines_are_caught_online_and_at_start() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 10).await;
    drop(client);
    fx.kmsd.stop();
    let dir = audit_dir(&fx);
    let saved = Saved::take(&dir);
    let newest = files(&dir).pop().unwrap();

    // After a clean stop: the head says where the trail ended, to the byte. Offline (no
    // key) that alone catches the forged line.
    append(&newest, forged_after(&newest).as_bytes());
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "beyondHead", "{report}");
    assert!(
        report["problem"]["message"]
            .as_str()
            .unwrap()
            .contains("appended while kmsd was stopped"),
        "{report}"
    );
    // At start the forged last line fails its MAC.
    let log = refused(&fx, options());
    assert!(log.contains("fails its MAC"), "{log}");
    saved.restore(&dir);
    // Bytes that look like a torn tail cannot follow a clean stop either.
    append(&newest, b"{\"eventVersion\":\"1.08\",\"eventTi");
    let log = refused(&fx, options());
    assert!(log.contains("appended to while kmsd was stopped"), "{log}");
    saved.restore(&dir);

    // After a crash (the head was not written by a clean stop): the forged line fails its MAC.
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    some_requests(&fx.client(), &key, 3).await;
    fx.kmsd.kill();
    let saved = Saved::take(&dir);
    let newest = files(&dir).pop().unwrap();
    append(&newest, forged_after(&newest).as_bytes());
    let log = refused(&fx, options());
    assert!(log.contains("fails its MAC"), "{log}");
    saved.restore(&dir);

    // While kmsd runs: a line appended after its durable head is not kmsd's.
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    some_requests(&fx.client(), &key, 3).await;
    let newest = files(&dir).pop().unwrap();
    append(&newest, forged_after(&newest).as_bytes());
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["problem"]["kind"], "beyondHead", "{report}");
    let message = report["problem"]["message"].as_str().unwrap();
    assert!(message.contains("fails its MAC"), "{report}");
    fx.kmsd.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn records_moved_across_a_file_boundary_are_caught() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 40).await;
    drop(client);
    fx.kmsd.stop();
    let dir = audit_dir(&fx);
    let all = files(&dir);
    assert!(all.len() >= 4, "{all:?}");

    let move_first_to_previous = |from: &Path, to: &Path| {
        let text = std::fs::read_to_string(from).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        append(to, format!("{first}\n").as_bytes());
        std::fs::write(from, rest).unwrap();
    };
    // In old files: the chain is intact, only the name gives it away. kmsd starts (it checks
    // from the head's file on), and its full verification reports it.
    move_first_to_previous(&all[2], &all[1]);
    let named = kmsd::audit::verify::named_sequence(&all[2]).unwrap();
    let report = verify_offline(&dir);
    assert_eq!(report["problem"]["kind"], "misnamedFile", "{report}");
    assert_eq!(report["problem"]["file"], all[2].display().to_string());
    assert_eq!(report["problem"]["expectedSequence"], named);
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["problem"]["kind"], "misnamedFile", "{report}");
    fx.kmsd.stop();
    // Put the record back (kmsd has written since: the saved copy is out of date).
    let text = std::fs::read_to_string(&all[1]).unwrap();
    let (rest, last) = text[..text.len() - 1].rsplit_once('\n').unwrap();
    std::fs::write(&all[1], format!("{rest}\n")).unwrap();
    let moved_back = format!("{last}\n{}", std::fs::read_to_string(&all[2]).unwrap());
    std::fs::write(&all[2], moved_back).unwrap();
    assert_eq!(verify_offline(&dir)["ok"], true);
    let saved = Saved::take(&dir);

    // Into the newest file: kmsd refuses to start.
    let all = files(&dir);
    let n = all.len();
    move_first_to_previous(&all[n - 1], &all[n - 2]);
    let log = refused(&fx, options());
    assert!(log.contains("MisnamedFile"), "{log}");
    saved.restore(&dir);
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_and_killed_restarts_verify_cleanly() {
    let mut fx = Fixture::start_with(options());
    let client = fx.client();
    let key = create_key(&client).await;
    some_requests(&client, &key, 12).await;
    drop(client);
    let dir = audit_dir(&fx);
    // Clean restart.
    fx.restart();
    assert!(
        !fx.kmsd.log_text().contains("no audit head"),
        "the head was recorded at the first start"
    );
    some_requests(&fx.client(), &key, 4).await;
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(verify_offline(&dir)["ok"], true);
    // SIGKILL, then restart.
    fx.kmsd.kill();
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    some_requests(&fx.client(), &key, 4).await;
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
    // SIGKILL during a write (a torn tail), then restart: the recovery still works.
    fx.kmsd.kill();
    let newest = files(&dir).pop().unwrap();
    append(&newest, b"{\"eventVersion\":\"1.08\",\"eventTi");
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    some_requests(&fx.client(), &key, 4).await;
    let report = verify_online(&fx.kmsd.socket);
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["warnings"].to_string().contains("incomplete record"),
        "{report}"
    );
    fx.kmsd.stop();
    let report = verify_offline(&dir);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["storedHead"]["sequence"],
        trail_end(&dir),
        "{report}"
    );
    // The head is the last record: the clean stop recorded it durably.
    fx.kmsd = Kmsd::start_with(&fx.tpm, &fx.dir, options());
    assert_eq!(verify_online(&fx.kmsd.socket)["ok"], true);
}
