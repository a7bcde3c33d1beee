//! The wire protocol: malformed requests get the right AWS exception and the daemon keeps
//! serving; 200 concurrent keep-alive clients all get correct answers; another uid is
//! denied (a child process that setuid()s before exec, via `Command::uid`).

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bytes::Bytes;
use common::*;
use std::process::Command;

async fn raw(client: &Client, op: Option<&str>, body: &[u8]) -> (u16, Value) {
    let response = client
        .call_raw(op, Bytes::copy_from_slice(body))
        .await
        .expect("transport");
    let value: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    assert!(
        response.headers.contains_key("x-amzn-requestid"),
        "no request id"
    );
    (response.status.as_u16(), value)
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_errors_get_the_right_exception_and_daemon_keeps_serving() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;

    let huge = vec![b' '; 64 * 1024 + 1];
    let (status, body) = raw(&client, Some("Encrypt"), &huge).await;
    assert_eq!(status, 413, "{body}");

    let cases: Vec<(Option<&str>, Vec<u8>, &str, &str)> = vec![
        (
            Some("Encrypt"),
            b"{not json".to_vec(),
            "SerializationException",
            "",
        ),
        (
            Some("Encrypt"),
            b"[1,2]".to_vec(),
            "SerializationException",
            "",
        ),
        (
            Some("Encrypt"),
            serde_json::to_vec(&json!({"KeyId": key, "Plaintext": "%%%"})).unwrap(),
            "ValidationException",
            "'plaintext'",
        ),
        (
            Some("Encrypt"),
            serde_json::to_vec(&json!({"KeyId": key, "Plaintext": 12})).unwrap(),
            "ValidationException",
            "'plaintext'",
        ),
        (
            Some("Encrypt"),
            serde_json::to_vec(&json!({"KeyId": key, "Plaintext": "eA==", "Bogus": 1})).unwrap(),
            "ValidationException",
            "Bogus",
        ),
        (
            Some("GenerateRandom"),
            serde_json::to_vec(&json!({"NumberOfBytes": 99999999999i64})).unwrap(),
            "ValidationException",
            "Value '99999999999' at 'numberOfBytes'",
        ),
        (
            Some("GenerateRandom"),
            serde_json::to_vec(&json!({"NumberOfBytes": "ten"})).unwrap(),
            "ValidationException",
            "NumberOfBytes",
        ),
        (
            Some("ScheduleKeyDeletion"),
            serde_json::to_vec(&json!({"KeyId": key, "PendingWindowInDays": 3})).unwrap(),
            "ValidationException",
            "Value '3' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value greater than or equal to 7",
        ),
        (
            Some("DescribeKey"),
            b"{}".to_vec(),
            "ValidationException",
            "Value null at 'keyId' failed to satisfy constraint: Member must not be null",
        ),
        (
            Some("Frobnicate"),
            b"{}".to_vec(),
            "UnknownOperationException",
            "Frobnicate",
        ),
        (
            None,
            b"{}".to_vec(),
            "UnknownOperationException",
            "X-Amz-Target",
        ),
    ];
    for (op, body, exception, needle) in cases {
        let (status, answer) = raw(&client, op, &body).await;
        assert_eq!(status, 400, "{op:?}: {answer}");
        assert_eq!(answer["__type"], exception, "{op:?}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "{op:?}: {message}");
        // The daemon is still serving on the same connection.
        ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    }
    // A secret-looking Plaintext is never echoed.
    let (_, answer) = raw(
        &client,
        Some("Encrypt"),
        &serde_json::to_vec(&json!({"KeyId": key, "Plaintext": "hunter2-top-secret!"})).unwrap(),
    )
    .await;
    assert!(!answer.to_string().contains("hunter2"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_keep_alive_clients() {
    let fx = Fixture::start();
    let setup = fx.client();
    let key = create_key(&setup).await;
    let socket = fx.kmsd.socket.clone();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let socket = socket.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let client = Client::new(&socket);
                for round in 0..5 {
                    let plaintext = format!("client {i} round {round}");
                    let encrypted = ok(
                        &client,
                        "Encrypt",
                        json!({"KeyId": key, "Plaintext": b64(plaintext.as_bytes()), "EncryptionContext": {"client": i.to_string()}}),
                    )
                    .await;
                    let decrypted = ok(
                        &client,
                        "Decrypt",
                        json!({"CiphertextBlob": encrypted["CiphertextBlob"], "EncryptionContext": {"client": i.to_string()}}),
                    )
                    .await;
                    assert_eq!(unb64(&decrypted["Plaintext"]), plaintext.as_bytes());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client task");
    }
}

fn kmsctl_as(uid: u32, socket: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(KMSCTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run kmsctl")
}

use std::os::unix::process::CommandExt;

#[tokio::test(flavor = "multi_thread")]
async fn another_uid_is_denied_and_cannot_learn_key_existence() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root to switch uid (CI runs as root)");
        return;
    }
    // uid 4242 may create keys (a daemon administrator); 4343 may not.
    let fx = Fixture::start_with(KmsdOptions {
        config: "[access]\nadmin_users = [\"4242\"]\n".into(),
        ..Default::default()
    });
    let client = fx.client();
    let key = create_key(&client).await;
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"root only")}),
    )
    .await;
    let blob = encrypted["CiphertextBlob"].as_str().unwrap().to_string();
    let socket = fx.kmsd.socket.clone();

    // uid 4242 is denied every operation on root's key.
    let denied = kmsctl_as(4242, &socket, &["describe-key", "--key-id", &key]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("AccessDeniedException"), "{stderr}");
    assert!(
        stderr.contains("4242"),
        "message should name the caller: {stderr}"
    );
    let denied = kmsctl_as(4242, &socket, &["decrypt", "--ciphertext-blob", &blob]);
    let denied_text = String::from_utf8_lossy(&denied.stderr).to_string();
    assert!(
        denied_text.contains("AccessDeniedException"),
        "{denied_text}"
    );

    // Decrypt of a ciphertext whose key does not exist gives the very same answer.
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await;
    fx.dir.set_clock_offset_secs(8 * 24 * 3600);
    common::poll(
        "key destruction",
        std::time::Duration::from_secs(30),
        || {
            fx.kmsd
                .log_text()
                .contains("key material and record destroyed")
                .then_some(())
        },
    );
    let gone = kmsctl_as(4242, &socket, &["decrypt", "--ciphertext-blob", &blob]);
    assert_eq!(String::from_utf8_lossy(&gone.stderr), denied_text);

    // uid 4242's own key works for 4242, and is denied to uid 4343.
    let created = kmsctl_as(4242, &socket, &["create-key", "--description", "mine"]);
    assert!(created.status.success(), "{created:?}");
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let own = created["KeyMetadata"]["KeyId"].as_str().unwrap();
    let used = kmsctl_as(
        4242,
        &socket,
        &["encrypt", "--key-id", own, "--plaintext", &b64(b"hi")],
    );
    assert!(used.status.success(), "{used:?}");
    let other = kmsctl_as(
        4343,
        &socket,
        &["encrypt", "--key-id", own, "--plaintext", &b64(b"hi")],
    );
    assert!(String::from_utf8_lossy(&other.stderr).contains("AccessDeniedException"));
    // Root administers everything.
    ok(&client, "DescribeKey", json!({"KeyId": own})).await;
}
