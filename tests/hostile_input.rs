//! Hostile input through the real socket: duplicate JSON keys, wrong container types,
//! duplicate protocol headers, bad base64 in a secret field, and Decrypt probing whether a
//! key exists — each refused the AWS way, without echoing a byte of a secret, and with the
//! daemon still serving.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Sends one raw request and returns (status line, whole response).
fn raw(socket: &std::path::Path, head: &str, body: &[u8]) -> (String, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: kmsd\r\nContent-Type: application/x-amz-json-1.1\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    (text.lines().next().unwrap_or("").to_string(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_shapes_are_refused_and_the_daemon_keeps_serving() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let encrypt = "X-Amz-Target: TrentService.Encrypt\r\n";
    let grant = "X-Amz-Target: TrentService.CreateGrant\r\n";
    let tag = "X-Amz-Target: TrentService.TagResource\r\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            encrypt,
            format!(r#"{{"KeyId":"{key}","KeyId":"alias/other","Plaintext":"eA=="}}"#),
            "'KeyId' appears twice",
        ),
        (
            grant,
            format!(
                r#"{{"KeyId":"{key}","GranteePrincipal":"uid:5","Operations":["Decrypt"],"Constraints":[{{"EncryptionContextEquals":{{}}}},{{}}]}}"#
            ),
            "'Constraints' must be a JSON object",
        ),
        (
            tag,
            format!(r#"{{"KeyId":"{key}","Tags":[["k","v"]]}}"#),
            "'Tags[0]' must be a value, not a list",
        ),
        (
            encrypt,
            format!(r#"{{"KeyId":"{key}","Plaintext":"eA==","EncryptionContext":["a","b"]}}"#),
            "'EncryptionContext' must be a JSON object",
        ),
    ];
    for (head, body, needle) in cases {
        let (status, text) = raw(&fx.kmsd.socket, head, body.as_bytes());
        assert!(status.contains(" 400 "), "{body}: {text}");
        assert!(text.contains("SerializationException"), "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
        ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    }
    // Two X-Amz-Target headers.
    let (status, text) = raw(
        &fx.kmsd.socket,
        "X-Amz-Target: TrentService.ListKeys\r\nX-Amz-Target: TrentService.ScheduleKeyDeletion\r\n",
        b"{}",
    );
    assert!(
        status.contains(" 400 ") && text.contains("appears 2 times"),
        "{text}"
    );
    // The key was not touched by any of it.
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "Enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_base64_secret_is_never_quoted() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    for plaintext in ["c2Vj!mV0", "%%secretvalue%%", "c2VjcmV0====="] {
        let message = fails(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": plaintext}),
            "ValidationException",
        )
        .await;
        assert!(!message.contains(plaintext), "{message}");
        assert!(!message.contains("symbol"), "{message}");
        assert!(!message.contains("offset"), "{message}");
        assert!(message.contains("'plaintext'"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn decrypt_answers_alike_for_a_missing_key_and_a_mismatched_one() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let blob = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    )
    .await["CiphertextBlob"]
        .clone();
    // A KeyId that names no key answers exactly like a ciphertext whose key is unknown.
    let missing = fails(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": blob, "KeyId": "00000000-0000-4000-8000-000000000000"}),
        "AccessDeniedException",
    )
    .await;
    // The same ciphertext naming a key that does not exist in its header.
    let mut forged = unb64(&blob);
    let absent = *uuid::Uuid::parse_str("00000000-0000-4000-8000-000000000000")
        .unwrap()
        .as_bytes();
    forged[1..17].copy_from_slice(&absent);
    // Keep the (non-secret) integrity checksum valid, so the blob passes the format check.
    use sha2::Digest;
    let body_len = forged.len() - 8;
    let checksum = sha2::Sha256::digest(&forged[..body_len]);
    forged[body_len..].copy_from_slice(&checksum[..8]);
    let unknown = fails(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": b64(&forged)}),
        "AccessDeniedException",
    )
    .await;
    assert_eq!(missing, unknown);
}
