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

/// Writes `request` as it is (from a thread, so a large one cannot block the test on a full
/// socket buffer) and returns everything the server sends until it closes.
fn raw_bytes(socket: &std::path::Path, request: Vec<u8>) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    sender.join().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_layer_errors_have_the_aws_json_shape() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let long_target = format!(
        "POST /{} HTTP/1.1\r\nHost: kmsd\r\n\r\n",
        "a".repeat(70_000)
    );
    let huge_header = format!(
        "POST / HTTP/1.1\r\nHost: kmsd\r\nX-Filler: {}\r\n\r\n",
        "b".repeat(500_000)
    );
    let many_headers = format!(
        "POST / HTTP/1.1\r\nHost: kmsd\r\n{}\r\n",
        (0..150)
            .map(|n| format!("X-H{n}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "garbage",
            b"\x16\x03\x01 hello there\r\n\r\n".to_vec(),
            "400",
            "SerializationException",
        ),
        (
            "bad Content-Length",
            b"POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.ListKeys\r\nContent-Length: 12abc\r\n\r\n{}".to_vec(),
            "400",
            "SerializationException",
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: kmsd\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".to_vec(),
            "400",
            "SerializationException",
        ),
        (
            "bad version",
            b"POST / HTTP/9.9\r\nHost: kmsd\r\n\r\n".to_vec(),
            "400",
            "SerializationException",
        ),
        (
            "target too long",
            long_target.into_bytes(),
            "414",
            "ValidationException",
        ),
        (
            "head too large",
            huge_header.into_bytes(),
            "431",
            "ValidationException",
        ),
        (
            "too many headers",
            many_headers.into_bytes(),
            "431",
            "ValidationException",
        ),
    ];
    for (what, request, status, exception) in cases {
        let answer = raw_bytes(&fx.kmsd.socket, request);
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no HTTP answer: {answer:?}"));
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{what}: {answer}"
        );
        assert!(
            head.contains(&format!(
                "x-amzn-errortype: {}",
                exception.to_ascii_lowercase()
            )),
            "{what}: {answer}"
        );
        assert!(head.contains("connection: close"), "{what}: {answer}");
        assert!(head.contains("x-amzn-requestid: "), "{what}: {answer}");
        assert!(
            head.contains("content-type: application/x-amz-json-1.1"),
            "{what}: {answer}"
        );
        let parsed: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("{what}: body is not JSON ({err}): {body}"));
        assert_eq!(parsed["__type"], exception, "{what}: {body}");
        let message = parsed["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: {body}");
        assert!(
            !message.contains("aaaa") && !message.contains("bbbb") && !message.contains("hello"),
            "{what}: the message quotes the request: {body}"
        );
        ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    }
}
