//! Cryptographic operations against a real kmsd on a real swtpm: round trips, bounds,
//! encryption context, tampering, wrong keys, ReEncrypt and data keys.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_decrypt_round_trips_and_bounds() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    for len in [1usize, 4096] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let encrypted = ok(
            &client,
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(&plaintext)}),
        )
        .await;
        assert!(encrypted["KeyId"].as_str().unwrap().ends_with(&key));
        assert_eq!(encrypted["EncryptionAlgorithm"], "SYMMETRIC_DEFAULT");
        let decrypted = ok(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
        )
        .await;
        assert_eq!(unb64(&decrypted["Plaintext"]), plaintext);
        assert_eq!(decrypted["KeyId"], encrypted["KeyId"]);
    }
    let message = fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(&vec![0u8; 4097])}),
        "ValidationException",
    )
    .await;
    assert!(message.contains("at 'plaintext'"), "{message}");
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": ""}),
        "ValidationException",
    )
    .await;
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": key}),
        "ValidationException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn context_tampering_truncation_and_wrong_key() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let other = create_key(&client).await;
    let context = json!({"purpose": "test", "tenant": "a"});
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"attack at dawn"), "EncryptionContext": context}),
    )
    .await;
    let blob = unb64(&encrypted["CiphertextBlob"]);

    // Same context in another order decrypts.
    let reordered = json!({"tenant": "a", "purpose": "test"});
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": b64(&blob), "EncryptionContext": reordered}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"attack at dawn");

    for wrong in [
        json!({}),
        json!({"purpose": "test"}),
        json!({"purpose": "test", "tenant": "b"}),
        json!({"purpose": "test", "tenant": "a", "extra": ""}),
    ] {
        fails(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": b64(&blob), "EncryptionContext": wrong}),
            "InvalidCiphertextException",
        )
        .await;
    }
    // A flipped bit in every byte position.
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01 << (i % 8);
        fails(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": b64(&bad), "EncryptionContext": context}),
            "InvalidCiphertextException",
        )
        .await;
    }
    for len in [1, 10, 60, blob.len() / 2, blob.len() - 1] {
        fails(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": b64(&blob[..len]), "EncryptionContext": context}),
            "InvalidCiphertextException",
        )
        .await;
    }
    fails(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": b64(&blob), "EncryptionContext": context, "KeyId": other}),
        "IncorrectKeyException",
    )
    .await;
    // The right KeyId, by alias too, is accepted.
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/right", "TargetKeyId": key}),
    )
    .await;
    ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": b64(&blob), "EncryptionContext": context, "KeyId": "alias/right"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_keys_random_and_re_encrypt() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let other = create_key(&client).await;
    let context = json!({"app": "billing"});

    for (spec, len) in [
        (json!({"KeySpec": "AES_256"}), 32usize),
        (json!({"KeySpec": "AES_128"}), 16),
        (json!({"NumberOfBytes": 1}), 1),
        (json!({"NumberOfBytes": 1024}), 1024),
    ] {
        let mut request = spec.clone();
        request["KeyId"] = json!(key);
        request["EncryptionContext"] = context.clone();
        let generated = ok(&client, "GenerateDataKey", request).await;
        let plaintext = unb64(&generated["Plaintext"]);
        assert_eq!(plaintext.len(), len);
        let decrypted = ok(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": generated["CiphertextBlob"], "EncryptionContext": context}),
        )
        .await;
        assert_eq!(unb64(&decrypted["Plaintext"]), plaintext);
    }
    let without = ok(
        &client,
        "GenerateDataKeyWithoutPlaintext",
        json!({"KeyId": key, "KeySpec": "AES_256"}),
    )
    .await;
    assert!(without.get("Plaintext").is_none());
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": without["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]).len(), 32);

    for bad in [
        json!({"KeyId": key}),
        json!({"KeyId": key, "KeySpec": "AES_256", "NumberOfBytes": 32}),
        json!({"KeyId": key, "NumberOfBytes": 0}),
        json!({"KeyId": key, "NumberOfBytes": 1025}),
        json!({"KeyId": key, "KeySpec": "AES_512"}),
    ] {
        fails(&client, "GenerateDataKey", bad, "ValidationException").await;
    }

    let random = ok(&client, "GenerateRandom", json!({"NumberOfBytes": 1024})).await;
    assert_eq!(unb64(&random["Plaintext"]).len(), 1024);
    for n in [0, 1025] {
        let message = fails(
            &client,
            "GenerateRandom",
            json!({"NumberOfBytes": n}),
            "ValidationException",
        )
        .await;
        assert!(
            message.contains(&format!("Value '{n}' at 'numberOfBytes'")),
            "{message}"
        );
    }

    // ReEncrypt to another key with another context.
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"move me"), "EncryptionContext": context}),
    )
    .await;
    let moved = ok(
        &client,
        "ReEncrypt",
        json!({
            "CiphertextBlob": encrypted["CiphertextBlob"],
            "SourceEncryptionContext": context,
            "DestinationKeyId": other,
            "DestinationEncryptionContext": {"app": "archive"},
        }),
    )
    .await;
    assert!(moved["KeyId"].as_str().unwrap().ends_with(&other));
    assert!(moved["SourceKeyId"].as_str().unwrap().ends_with(&key));
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": moved["CiphertextBlob"], "EncryptionContext": {"app": "archive"}}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"move me");
    assert!(decrypted["KeyId"].as_str().unwrap().ends_with(&other));
    fails(
        &client,
        "ReEncrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"], "DestinationKeyId": other}),
        "InvalidCiphertextException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_states_give_aws_exceptions() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    )
    .await;
    ok(&client, "DisableKey", json!({"KeyId": key})).await;
    let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    assert_eq!(described["KeyMetadata"]["KeyState"], "Disabled");
    assert_eq!(described["KeyMetadata"]["Enabled"], false);
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
        "DisabledException",
    )
    .await;
    fails(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
        "DisabledException",
    )
    .await;
    ok(&client, "EnableKey", json!({"KeyId": key})).await;
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await;
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
        "KMSInvalidStateException",
    )
    .await;
    fails(
        &client,
        "EnableKey",
        json!({"KeyId": key}),
        "KMSInvalidStateException",
    )
    .await;
    fails(
        &client,
        "DescribeKey",
        json!({"KeyId": "00000000-0000-4000-8000-000000000000"}),
        "NotFoundException",
    )
    .await;
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": "alias/nope", "Plaintext": b64(b"x")}),
        "NotFoundException",
    )
    .await;
}
