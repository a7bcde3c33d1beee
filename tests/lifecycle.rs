//! Time-driven behaviour (rotation, scheduled deletion) on kmsd's controllable clock, and
//! the management operations: aliases, tags, descriptions, listing with markers.

mod common;
use common::*;
use std::time::Duration;

const DAY: i64 = 24 * 3600;

async fn describe(client: &Client, key: &str) -> Value {
    ok(client, "DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone()
}

/// Waits until DescribeKey fails with NotFoundException (the daemon's maintenance pass runs
/// every second in tests).
async fn wait_until_gone(client: &Client, key: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .call_json("DescribeKey", &json!({"KeyId": key}))
            .await
        {
            Err(err) if err.exception() == Some("NotFoundException") => return,
            _ if std::time::Instant::now() > deadline => panic!("key {key} was not destroyed"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic_and_on_demand_rotation_keep_old_ciphertexts() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    let old = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"version one")}),
    )
    .await;
    for bad in [89, 2561] {
        fails(
            &client,
            "EnableKeyRotation",
            json!({"KeyId": key, "RotationPeriodInDays": bad}),
            "ValidationException",
        )
        .await;
    }
    ok(
        &client,
        "EnableKeyRotation",
        json!({"KeyId": key, "RotationPeriodInDays": 90}),
    )
    .await;
    let status = ok(&client, "GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(status["KeyRotationEnabled"], true);
    assert_eq!(status["RotationPeriodInDays"], 90);

    // 91 days later the maintenance pass rotates the key.
    fx.dir.set_clock_offset_secs(91 * DAY);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rotations = ok(&client, "ListKeyRotations", json!({"KeyId": key})).await;
        if rotations["Rotations"].as_array().unwrap().len() == 1 {
            assert_eq!(rotations["Rotations"][0]["RotationType"], "AUTOMATIC");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no automatic rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"version two")}),
    )
    .await;
    ok(&client, "RotateKeyOnDemand", json!({"KeyId": key})).await;
    let third = ok(
        &client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"version three")}),
    )
    .await;
    for (blob, text) in [
        (&old, &b"version one"[..]),
        (&new, b"version two"),
        (&third, b"version three"),
    ] {
        let decrypted = ok(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": blob["CiphertextBlob"]}),
        )
        .await;
        assert_eq!(unb64(&decrypted["Plaintext"]), text);
    }
    // Each version's ciphertext differs in the version field, so the three are distinct.
    let rotations = ok(
        &client,
        "ListKeyRotations",
        json!({"KeyId": key, "Limit": 1}),
    )
    .await;
    assert_eq!(rotations["Truncated"], true);
    let rest = ok(
        &client,
        "ListKeyRotations",
        json!({"KeyId": key, "Marker": rotations["NextMarker"]}),
    )
    .await;
    assert_eq!(rest["Rotations"][0]["RotationType"], "ON_DEMAND");
    // At most 25 on-demand rotations.
    for _ in 1..25 {
        ok(&client, "RotateKeyOnDemand", json!({"KeyId": key})).await;
    }
    fails(
        &client,
        "RotateKeyOnDemand",
        json!({"KeyId": key}),
        "LimitExceededException",
    )
    .await;
    ok(&client, "DisableKeyRotation", json!({"KeyId": key})).await;
    let status = ok(&client, "GetKeyRotationStatus", json!({"KeyId": key})).await;
    assert_eq!(status["KeyRotationEnabled"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_deletion_destroys_after_window_and_cancel_restores() {
    let fx = Fixture::start();
    let client = fx.client();
    let doomed = create_key(&client).await;
    let saved = create_key(&client).await;
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/doomed", "TargetKeyId": doomed}),
    )
    .await;
    let encrypted = ok(
        &client,
        "Encrypt",
        json!({"KeyId": saved, "Plaintext": b64(b"keep me")}),
    )
    .await;
    for bad in [6, 31] {
        fails(
            &client,
            "ScheduleKeyDeletion",
            json!({"KeyId": doomed, "PendingWindowInDays": bad}),
            "ValidationException",
        )
        .await;
    }
    let scheduled = ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": doomed, "PendingWindowInDays": 7}),
    )
    .await;
    assert_eq!(scheduled["KeyState"], "PendingDeletion");
    assert_eq!(scheduled["PendingWindowInDays"], 7);
    ok(&client, "ScheduleKeyDeletion", json!({"KeyId": saved})).await;
    assert_eq!(
        describe(&client, &saved).await["PendingDeletionWindowInDays"],
        30
    );
    let cancelled = ok(&client, "CancelKeyDeletion", json!({"KeyId": saved})).await;
    assert!(cancelled["KeyId"].as_str().unwrap().ends_with(&saved));
    // As in AWS, a cancelled key comes back Disabled.
    assert_eq!(describe(&client, &saved).await["KeyState"], "Disabled");
    ok(&client, "EnableKey", json!({"KeyId": saved})).await;

    // Six days in: still there.
    fx.dir.set_clock_offset_secs(6 * DAY);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        describe(&client, &doomed).await["KeyState"],
        "PendingDeletion"
    );
    // Past the window: destroyed, alias gone too.
    fx.dir.set_clock_offset_secs(7 * DAY + 60);
    wait_until_gone(&client, &doomed).await;
    fails(
        &client,
        "DescribeKey",
        json!({"KeyId": "alias/doomed"}),
        "NotFoundException",
    )
    .await;
    let decrypted = ok(
        &client,
        "Decrypt",
        json!({"CiphertextBlob": encrypted["CiphertextBlob"]}),
    )
    .await;
    assert_eq!(unb64(&decrypted["Plaintext"]), b"keep me");
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_is_also_checked_at_start_up() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let key = create_key(&client).await;
    ok(
        &client,
        "ScheduleKeyDeletion",
        json!({"KeyId": key, "PendingWindowInDays": 7}),
    )
    .await;
    drop(client);
    fx.kmsd.stop();
    fx.dir.set_clock_offset_secs(8 * DAY);
    fx.kmsd = Kmsd::start(&fx.tpm, &fx.dir);
    // The start-up pass has already run before the socket answers.
    fails(
        &fx.client(),
        "DescribeKey",
        json!({"KeyId": key}),
        "NotFoundException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_tags_descriptions_and_listing() {
    let fx = Fixture::start();
    let client = fx.client();
    let a = create_key(&client).await;
    let b = create_key(&client).await;

    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": a}),
    )
    .await;
    fails(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": b}),
        "AlreadyExistsException",
    )
    .await;
    // Malformed names are ValidationException (as in AWS); reserved ones InvalidAliasName.
    for bad in ["app", "alias/sp ace", "alias/"] {
        let message = fails(
            &client,
            "CreateAlias",
            json!({"AliasName": bad, "TargetKeyId": b}),
            "ValidationException",
        )
        .await;
        assert!(
            message.contains(&format!("Value '{bad}' at 'aliasName'")),
            "{message}"
        );
    }
    fails(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/aws/s3", "TargetKeyId": b}),
        "InvalidAliasNameException",
    )
    .await;
    let arn = describe(&client, &a).await["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let alias_arn = arn.replace(&format!("key/{a}"), "alias/app");
    for reference in [a.clone(), arn.clone(), "alias/app".into(), alias_arn] {
        let meta = describe(&client, &reference).await;
        assert_eq!(meta["KeyId"], a, "{reference}");
    }
    ok(
        &client,
        "UpdateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": b}),
    )
    .await;
    assert_eq!(describe(&client, "alias/app").await["KeyId"], b);
    let listed = ok(&client, "ListAliases", json!({"KeyId": b})).await;
    assert_eq!(listed["Aliases"][0]["AliasName"], "alias/app");
    ok(&client, "DeleteAlias", json!({"AliasName": "alias/app"})).await;
    fails(
        &client,
        "DescribeKey",
        json!({"KeyId": "alias/app"}),
        "NotFoundException",
    )
    .await;

    ok(
        &client,
        "TagResource",
        json!({"KeyId": a, "Tags": [{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "env", "TagValue": ""}]}),
    )
    .await;
    let tags = ok(&client, "ListResourceTags", json!({"KeyId": a})).await;
    assert_eq!(
        tags["Tags"],
        json!([{"TagKey": "env", "TagValue": ""}, {"TagKey": "team", "TagValue": "payments"}])
    );
    ok(
        &client,
        "UntagResource",
        json!({"KeyId": a, "TagKeys": ["env"]}),
    )
    .await;
    let tags = ok(&client, "ListResourceTags", json!({"KeyId": a})).await;
    assert_eq!(tags["Tags"].as_array().unwrap().len(), 1);
    fails(
        &client,
        "TagResource",
        json!({"KeyId": a, "Tags": [{"TagKey": "aws:x", "TagValue": "y"}]}),
        "TagException",
    )
    .await;
    let many: Vec<Value> = (0..50)
        .map(|i| json!({"TagKey": format!("k{i}"), "TagValue": "v"}))
        .collect();
    fails(
        &client,
        "TagResource",
        json!({"KeyId": a, "Tags": many}),
        "LimitExceededException",
    )
    .await;

    ok(
        &client,
        "UpdateKeyDescription",
        json!({"KeyId": a, "Description": "new words"}),
    )
    .await;
    assert_eq!(describe(&client, &a).await["Description"], "new words");

    // Paging through ListKeys with Limit and Marker.
    for _ in 0..3 {
        create_key(&client).await;
    }
    let mut seen = Vec::new();
    let mut marker: Option<Value> = None;
    loop {
        let mut request = json!({"Limit": 2});
        if let Some(m) = &marker {
            request["Marker"] = m.clone();
        }
        let page = ok(&client, "ListKeys", request).await;
        for key in page["Keys"].as_array().unwrap() {
            seen.push(key["KeyId"].as_str().unwrap().to_string());
        }
        if page["Truncated"] == true {
            marker = Some(page["NextMarker"].clone());
        } else {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    seen.dedup();
    assert_eq!(seen.len(), 5);
    for bad in [0, 1001] {
        fails(
            &client,
            "ListKeys",
            json!({"Limit": bad}),
            "ValidationException",
        )
        .await;
    }
    fails(
        &client,
        "ListKeys",
        json!({"Marker": "!!not-a-marker!!"}),
        "InvalidMarkerException",
    )
    .await;
}
