//! Fidelity found by running AWS clients against kmsd (issue #10, item 9), checked through
//! the real socket: alias name errors, AWS's validation message form, ListGrants' KeyId as
//! the key ARN, and the key-material id fields of 2025.

mod common;
use common::*;

/// AWS's validation message for one broken constraint.
fn aws(value: &str, field: &str, rule: &str) -> String {
    format!("1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must {rule}")
}

fn is_material_id(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_names_are_checked_as_aws_does() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let pattern = "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$";
    let prefix = "satisfy regular expression pattern: ^alias/[a-zA-Z0-9:/_-]+$";
    let too_long = format!("alias/{}", "a".repeat(251));
    let cases: Vec<(String, String)> = vec![
        (
            "alias/my-alias!".into(),
            aws("alias/my-alias!", "aliasName", pattern),
        ),
        ("my-alias".into(), aws("my-alias", "aliasName", prefix)),
        ("alias/".into(), aws("alias/", "aliasName", prefix)),
        (
            too_long.clone(),
            aws(
                &too_long,
                "aliasName",
                "have length less than or equal to 256",
            ),
        ),
        (
            String::new(),
            aws("", "aliasName", "have length greater than or equal to 1"),
        ),
    ];
    for (name, expected) in &cases {
        for op in ["CreateAlias", "UpdateAlias"] {
            let message = fails(
                &client,
                op,
                json!({"AliasName": name, "TargetKeyId": key}),
                "ValidationException",
            )
            .await;
            assert_eq!(&message, expected, "{op} {name}");
        }
        let message = fails(
            &client,
            "DeleteAlias",
            json!({"AliasName": name}),
            "ValidationException",
        )
        .await;
        assert_eq!(&message, expected, "DeleteAlias {name}");
    }
    // Reserved names stay InvalidAliasNameException.
    let message = fails(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/aws/s3", "TargetKeyId": key}),
        "InvalidAliasNameException",
    )
    .await;
    assert!(message.contains("alias/aws/"), "{message}");
    // A name of exactly 256 characters is fine.
    let longest = format!("alias/{}", "a".repeat(250));
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": longest, "TargetKeyId": key}),
    )
    .await;
    // TargetKeyId: 1–2048 characters.
    let message = fails(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/empty-target", "TargetKeyId": ""}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws("", "targetKeyId", "have length greater than or equal to 1")
    );
    let huge = "k".repeat(2049);
    let message = fails(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/huge-target", "TargetKeyId": huge}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws(
            &huge,
            "targetKeyId",
            "have length less than or equal to 2048"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_messages_use_aws_form() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;

    // Plaintext is never echoed.
    let message = fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": ""}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    let secret = b"hunter2!".repeat(513); // 4104 bytes
    let message = fails(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(&secret)}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
    );
    assert!(!message.contains("hunter2") && !message.contains(&b64(&secret)[..16]));

    for op in ["GenerateDataKey", "GenerateDataKeyWithoutPlaintext"] {
        for (n, rule) in [
            (0, "have value greater than or equal to 1"),
            (1025, "have value less than or equal to 1024"),
        ] {
            let message = fails(
                &client,
                op,
                json!({"KeyId": key, "NumberOfBytes": n}),
                "ValidationException",
            )
            .await;
            assert_eq!(message, aws(&n.to_string(), "numberOfBytes", rule), "{op}");
        }
    }
    let message = fails(
        &client,
        "GenerateRandom",
        json!({"NumberOfBytes": 1025}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws(
            "1025",
            "numberOfBytes",
            "have value less than or equal to 1024"
        )
    );

    let message = fails(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 3}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws(
            "3",
            "pendingWindowInDays",
            "have value greater than or equal to 7"
        )
    );

    let message = fails(
        &client,
        "ListKeys",
        json!({"Limit": 0}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws("0", "limit", "have value greater than or equal to 1")
    );
    for (op, body) in [
        ("ListKeys", json!({"Marker": ""})),
        ("ListAliases", json!({"Marker": ""})),
        ("ListGrants", json!({"KeyId": key, "Marker": ""})),
        ("ListKeyRotations", json!({"KeyId": key, "Marker": ""})),
        ("ListResourceTags", json!({"KeyId": key, "Marker": ""})),
    ] {
        let message = fails(&client, op, body, "ValidationException").await;
        assert_eq!(
            message,
            aws("", "marker", "have length greater than or equal to 1"),
            "{op}"
        );
    }

    let message = fails(&client, "DescribeKey", json!({}), "ValidationException").await;
    assert_eq!(
        message,
        "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    let message = fails(
        &client,
        "DescribeKey",
        json!({"KeyId": ""}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws("", "keyId", "have length greater than or equal to 1")
    );

    // Empty strings where AWS requires at least one character.
    let empty = "have length greater than or equal to 1";
    for (op, body, field) in [
        (
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": ""}),
            "grantId",
        ),
        (
            "RetireGrant",
            json!({"KeyId": key, "GrantId": ""}),
            "grantId",
        ),
        ("RetireGrant", json!({"GrantToken": ""}), "grantToken"),
        (
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": "", "Operations": ["Decrypt"]}),
            "granteePrincipal",
        ),
        (
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": "uid:1", "RetiringPrincipal": "", "Operations": ["Decrypt"]}),
            "retiringPrincipal",
        ),
        (
            "ListRetirableGrants",
            json!({"RetiringPrincipal": ""}),
            "retiringPrincipal",
        ),
        (
            "TagResource",
            json!({"KeyId": key, "Tags": [{"TagKey": "", "TagValue": "v"}]}),
            "tags.1.member.tagKey",
        ),
    ] {
        let message = fails(&client, op, body, "ValidationException").await;
        assert_eq!(message, aws("", field, empty), "{op}");
    }

    // Description may be empty (0–8192) but not longer.
    ok(
        &client,
        "UpdateKeyDescription",
        json!({"KeyId": key, "Description": ""}),
    )
    .await;
    let long = "d".repeat(8193);
    let message = fails(
        &client,
        "UpdateKeyDescription",
        json!({"KeyId": key, "Description": long}),
        "ValidationException",
    )
    .await;
    assert_eq!(
        message,
        aws(
            &long,
            "description",
            "have length less than or equal to 8192"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_grants_return_the_key_arn() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let arn = ok(&client, "DescribeKey", json!({"KeyId": key})).await["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(arn.ends_with(&format!(":key/{key}")), "{arn}");
    ok(
        &client,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:4242", "RetiringPrincipal": "uid:0", "Operations": ["Decrypt"]}),
    )
    .await;
    let listed = ok(&client, "ListGrants", json!({"KeyId": key})).await;
    assert_eq!(listed["Grants"][0]["KeyId"], arn.as_str(), "{listed}");
    let retirable = ok(
        &client,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": "uid:0"}),
    )
    .await;
    assert_eq!(retirable["Grants"][0]["KeyId"], arn.as_str(), "{retirable}");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_material_ids_name_the_version_used() {
    let fx = Fixture::start();
    let client = fx.client();
    let created = ok(&client, "CreateKey", json!({})).await;
    let key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let first = created["KeyMetadata"]["CurrentKeyMaterialId"].clone();
    assert!(is_material_id(&first), "{created}");
    let describe = |client: Client, key: String| async move {
        ok(&client, "DescribeKey", json!({"KeyId": key})).await["KeyMetadata"]
            ["CurrentKeyMaterialId"]
            .clone()
    };
    assert_eq!(describe(fx.client(), key.clone()).await, first);

    // Encrypt's response has no KeyMaterialId (AWS API reference); Decrypt's does.
    let old = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"version one")}),
    )
    .await;
    assert!(old.get("KeyMaterialId").is_none(), "{old}");
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": old["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(decrypted["KeyMaterialId"], first, "{decrypted}");
    for op in ["GenerateDataKey", "GenerateDataKeyWithoutPlaintext"] {
        let data_key = ok(&client, op, json!({"KeyId": key, "KeySpec": "AES_256"})).await;
        assert_eq!(data_key["KeyMaterialId"], first, "{op}");
    }

    // Rotation: a new current id; old ciphertexts still name (and use) the old one.
    ok(&client, "RotateKeyOnDemand", json!({"KeyId": key})).await;
    let second = describe(fx.client(), key.clone()).await;
    assert!(is_material_id(&second));
    assert_ne!(second, first);
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": old["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"version one");
    assert_eq!(decrypted["KeyMaterialId"], first);
    let new = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"version two")}),
    )
    .await;
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": new["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(decrypted["KeyMaterialId"], second);
    let data_key = ok(
        &client,
        "GenerateDataKey",
        json!({"KeyId": key, "NumberOfBytes": 16}),
    )
    .await;
    assert_eq!(data_key["KeyMaterialId"], second);

    // ReEncrypt names both sides.
    let other = create_key(&client).await;
    let other_id = describe(fx.client(), other.clone()).await;
    let moved = ok(
        &client,
        "ReEncrypt",
        json!({"CiphertextBlob": old["CiphertextBlob"], "DestinationKeyId": other}),
    )
    .await;
    assert_eq!(moved["SourceKeyMaterialId"], first, "{moved}");
    assert_eq!(moved["DestinationKeyMaterialId"], other_id, "{moved}");
    let rewrapped = ok(
        &client,
        "ReEncrypt",
        json!({"CiphertextBlob": old["CiphertextBlob"], "DestinationKeyId": key}),
    )
    .await;
    assert_eq!(rewrapped["SourceKeyMaterialId"], first);
    assert_eq!(rewrapped["DestinationKeyMaterialId"], second);

    // ListKeyRotations entries carry the id of the material each rotation made.
    ok(&client, "RotateKeyOnDemand", json!({"KeyId": key})).await;
    let third = describe(fx.client(), key.clone()).await;
    let rotations = ok(&client, "ListKeyRotations", json!({"KeyId": key})).await;
    let ids: Vec<Value> = rotations["Rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["KeyMaterialId"].clone())
        .collect();
    assert_eq!(ids, vec![second, third], "{rotations}");
}
