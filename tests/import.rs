#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Importing key material (Origin EXTERNAL) through a real kmsd on swtpm, with the material
//! generated and wrapped by OpenSSL exactly as AWS's developer guide does it ("Encrypt the
//! key material"): `openssl pkeyutl -encrypt ... rsa_padding_mode:oaep` for the RSAES_OAEP
//! algorithms, and `openssl enc -id-aes256-wrap-pad -iv A65959A6` under an ephemeral AES
//! key wrapped with RSA-OAEP, concatenated first, for the RSA_AES_KEY_WRAP algorithms.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HOUR: i64 = 3600;

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The `-pkeyopt` arguments of AWS's commands for an RSA-OAEP hash.
fn oaep_opts(sha256: bool) -> Vec<&'static str> {
    if sha256 {
        vec![
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ]
    } else {
        vec![
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha1",
        ]
    }
}

/// `plaintext` (a file) wrapped for import with `algorithm` under the DER public key
/// `public_key` (a file), by OpenSSL; returns EncryptedKeyMaterial.
fn openssl_wrap(dir: &Path, algorithm: &str, public_key: &Path, plaintext: &Path) -> Vec<u8> {
    let out = dir.join("EncryptedKeyMaterial.bin");
    let pkeyutl = |input: &Path, output: &Path, sha256: bool| {
        let mut args = vec![
            "pkeyutl",
            "-encrypt",
            "-in",
            input.to_str().unwrap(),
            "-out",
            output.to_str().unwrap(),
            "-inkey",
            public_key.to_str().unwrap(),
            "-keyform",
            "DER",
            "-pubin",
        ];
        args.extend(oaep_opts(sha256));
        openssl(&args);
    };
    match algorithm {
        "RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" => {
            pkeyutl(plaintext, &out, algorithm.ends_with("256"));
        }
        "RSA_AES_KEY_WRAP_SHA_1" | "RSA_AES_KEY_WRAP_SHA_256" => {
            let aes_key = dir.join("aes-key.bin");
            openssl(&["rand", "-out", aes_key.to_str().unwrap(), "32"]);
            let hex_key = hex::encode(std::fs::read(&aes_key).unwrap());
            let wrapped_material = dir.join("key-material-wrapped.bin");
            openssl(&[
                "enc",
                "-id-aes256-wrap-pad",
                "-K",
                &hex_key,
                "-iv",
                "A65959A6",
                "-in",
                plaintext.to_str().unwrap(),
                "-out",
                wrapped_material.to_str().unwrap(),
            ]);
            let wrapped_key = dir.join("aes-key-wrapped.bin");
            pkeyutl(&aes_key, &wrapped_key, algorithm.ends_with("256"));
            let mut both = std::fs::read(&wrapped_key).unwrap();
            both.extend(std::fs::read(&wrapped_material).unwrap());
            std::fs::write(&out, &both).unwrap();
        }
        other => panic!("{other}"),
    }
    std::fs::read(out).unwrap()
}

/// GetParametersForImport; writes WrappingPublicKey.bin; returns the token.
async fn parameters(
    client: &Client,
    dir: &Path,
    key: &str,
    algorithm: &str,
    spec: &str,
) -> (Vec<u8>, std::path::PathBuf) {
    let params = ok(
        client,
        "GetParametersForImport",
        json!({"KeyId": key, "WrappingAlgorithm": algorithm, "WrappingKeySpec": spec}),
    )
    .await;
    assert!(params["KeyId"].as_str().unwrap().ends_with(key), "{params}");
    let valid_to = params["ParametersValidTo"].as_f64().unwrap();
    // 24 hours from the daemon's clock (which a test may have moved forward).
    assert!(valid_to > now_secs() + 23.9 * 3600.0, "{params}");
    let public = dir.join(format!("WrappingPublicKey-{}.bin", rand_suffix()));
    std::fs::write(&public, unb64(&params["PublicKey"])).unwrap();
    (unb64(&params["ImportToken"]), public)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Random material from OpenSSL in a file.
fn openssl_material(dir: &Path, name: &str, len: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    openssl(&["rand", "-out", path.to_str().unwrap(), &len.to_string()]);
    path
}

async fn create_external(client: &Client, extra: Value) -> String {
    let mut body = json!({"Origin": "EXTERNAL", "Description": "imported"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let created = ok(client, "CreateKey", body).await;
    let meta = &created["KeyMetadata"];
    assert_eq!(meta["Origin"], "EXTERNAL", "{meta}");
    assert_eq!(meta["KeyState"], "PendingImport", "{meta}");
    assert_eq!(meta["Enabled"], false, "{meta}");
    assert!(meta.get("ExpirationModel").is_none(), "{meta}");
    assert!(meta.get("CurrentKeyMaterialId").is_none(), "{meta}");
    meta["KeyId"].as_str().unwrap().to_string()
}

async fn describe(client: &Client, key: &str) -> Value {
    ok(client, "DescribeKey", json!({"KeyId": key})).await["KeyMetadata"].clone()
}

async fn import(client: &Client, key: &str, token: &[u8], encrypted: &[u8], extra: Value) -> Value {
    let mut body = json!({
        "KeyId": key,
        "ImportToken": b64(token),
        "EncryptedKeyMaterial": b64(encrypted),
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    client
        .call_json("ImportKeyMaterial", &body)
        .await
        .unwrap_or_else(|err| {
            panic!("ImportKeyMaterial: {err}");
        })
}

async fn import_fails(client: &Client, key: &str, token: &[u8], encrypted: &[u8], exception: &str) {
    fails(
        client,
        "ImportKeyMaterial",
        json!({
            "KeyId": key,
            "ImportToken": b64(token),
            "EncryptedKeyMaterial": b64(encrypted),
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
        }),
        exception,
    )
    .await;
}

async fn encrypt(client: &Client, key: &str, text: &[u8]) -> Value {
    ok(
        client,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(text), "EncryptionContext": {"app": "import"}}),
    )
    .await["CiphertextBlob"]
        .clone()
}

async fn decrypt(client: &Client, blob: &Value) -> Result<Vec<u8>, ClientError> {
    client
        .call_json(
            "Decrypt",
            &json!({"CiphertextBlob": blob, "EncryptionContext": {"app": "import"}}),
        )
        .await
        .map(|r| unb64(&r["Plaintext"]))
}

#[tokio::test(flavor = "multi_thread")]
async fn symmetric_material_wrapped_by_openssl_with_every_algorithm_imports_and_reimports() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let mut keys = Vec::new();
    for (algorithm, spec) in [
        ("RSAES_OAEP_SHA_256", "RSA_2048"),
        ("RSAES_OAEP_SHA_1", "RSA_3072"),
        ("RSA_AES_KEY_WRAP_SHA_256", "RSA_4096"),
        ("RSA_AES_KEY_WRAP_SHA_1", "RSA_2048"),
    ] {
        let key = create_external(&client, json!({})).await;
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
        let (token, public) = parameters(&client, dir, &key, algorithm, spec).await;
        let material = openssl_material(dir, &format!("material-{algorithm}.bin"), 32);
        let encrypted = openssl_wrap(dir, algorithm, &public, &material);
        let imported = import(
            &client,
            &key,
            &token,
            &encrypted,
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}),
        )
        .await;
        assert!(
            imported["KeyId"].as_str().unwrap().ends_with(&key),
            "{imported}"
        );
        let meta = describe(&client, &key).await;
        assert_eq!(meta["KeyState"], "Enabled", "{algorithm}: {meta}");
        assert_eq!(meta["Enabled"], true);
        assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_DOES_NOT_EXPIRE");
        assert!(meta.get("ValidTo").is_none());
        assert_eq!(meta["CurrentKeyMaterialId"], imported["KeyMaterialId"]);
        let blob = encrypt(&client, &key, algorithm.as_bytes()).await;
        assert_eq!(decrypt(&client, &blob).await.unwrap(), algorithm.as_bytes());
        keys.push((key, material, blob));
    }

    // Delete the material: the key waits for it again, its ciphertexts fail.
    let (key, material, blob) = &keys[0];
    let deleted = ok(&client, "DeleteImportedKeyMaterial", json!({"KeyId": key})).await;
    assert!(deleted["KeyId"].as_str().unwrap().ends_with(key.as_str()));
    let meta = describe(&client, key).await;
    assert_eq!(meta["KeyState"], "PendingImport", "{meta}");
    assert!(meta.get("ExpirationModel").is_none(), "{meta}");
    let err = decrypt(&client, blob).await.unwrap_err();
    assert_eq!(err.exception(), Some("KMSInvalidStateException"), "{err}");
    // Only the same material comes back, and the parameters survive a restart.
    let (token, public) = parameters(&client, dir, key, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    fx.restart();
    let client = fx.client();
    let other = openssl_material(dir, "other.bin", 32);
    let wrong = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &public, &other);
    import_fails(
        &client,
        key,
        &token,
        &wrong,
        "IncorrectKeyMaterialException",
    )
    .await;
    let short = openssl_material(dir, "short.bin", 16);
    let short = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &public, &short);
    import_fails(
        &client,
        key,
        &token,
        &short,
        "IncorrectKeyMaterialException",
    )
    .await;
    let same = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &public, material);
    import(&client, key, &token, &same, json!({})).await;
    assert_eq!(describe(&client, key).await["KeyState"], "Enabled");
    assert_eq!(
        decrypt(&client, blob).await.unwrap(),
        b"RSAES_OAEP_SHA_256",
        "the old ciphertext decrypts again"
    );
    // Every imported key still works after the restart.
    for (_, _, blob) in &keys[1..] {
        decrypt(&client, blob).await.unwrap();
    }
    // The same material again into an Enabled key changes only its expiration.
    let (token, public) = parameters(&client, dir, key, "RSAES_OAEP_SHA_1", "RSA_2048").await;
    let same = openssl_wrap(dir, "RSAES_OAEP_SHA_1", &public, material);
    let valid_to = now_secs() + 48.0 * 3600.0;
    import(&client, key, &token, &same, json!({"ValidTo": valid_to})).await;
    let meta = describe(&client, key).await;
    assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_EXPIRES", "{meta}");
    assert!(
        (meta["ValidTo"].as_f64().unwrap() - valid_to).abs() < 1.0,
        "{meta}"
    );
    decrypt(&client, blob).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_single_use_per_key_replaced_and_expire_and_material_expires() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let a = create_external(&client, json!({})).await;
    let b = create_external(&client, json!({})).await;
    let material = openssl_material(dir, "material.bin", 32);

    // A later call replaces the earlier token and wrapping key.
    let (first, first_public) =
        parameters(&client, dir, &a, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let (second, second_public) =
        parameters(&client, dir, &a, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let under_first = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &first_public, &material);
    import_fails(
        &client,
        &a,
        &first,
        &under_first,
        "InvalidImportTokenException",
    )
    .await;
    import_fails(
        &client,
        &a,
        &second,
        &under_first,
        "InvalidCiphertextException",
    )
    .await;
    import_fails(
        &client,
        &a,
        &second,
        b"not wrapped",
        "InvalidCiphertextException",
    )
    .await;
    // A token of another key.
    let (b_token, b_public) = parameters(&client, dir, &b, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let under_b = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &b_public, &material);
    import_fails(
        &client,
        &a,
        &b_token,
        &under_b,
        "InvalidImportTokenException",
    )
    .await;
    import_fails(
        &client,
        &a,
        b"garbage",
        &under_b,
        "InvalidImportTokenException",
    )
    .await;
    // Bad expiration parameters.
    let under_second = openssl_wrap(dir, "RSAES_OAEP_SHA_256", &second_public, &material);
    for (extra, exception) in [
        (
            json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES"}),
            "ValidationException",
        ),
        (
            json!({"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now_secs() + 60.0}),
            "ValidationException",
        ),
        (json!({"ValidTo": now_secs() - 60.0}), "ValidationException"),
        (
            json!({"ImportType": "NEW_KEY_MATERIAL"}),
            "UnsupportedOperationException",
        ),
    ] {
        let mut body = json!({
            "KeyId": a,
            "ImportToken": b64(&second),
            "EncryptedKeyMaterial": b64(&under_second),
        });
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        fails(&client, "ImportKeyMaterial", body, exception).await;
    }
    // The current token works once.
    let valid_to = now_secs() + 2.0 * HOUR as f64;
    import(
        &client,
        &a,
        &second,
        &under_second,
        json!({"ExpirationModel": "KEY_MATERIAL_EXPIRES", "ValidTo": valid_to}),
    )
    .await;
    import_fails(
        &client,
        &a,
        &second,
        &under_second,
        "InvalidImportTokenException",
    )
    .await;
    let meta = describe(&client, &a).await;
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["ExpirationModel"], "KEY_MATERIAL_EXPIRES");
    assert!(
        (meta["ValidTo"].as_f64().unwrap() - valid_to).abs() < 1.0,
        "{meta}"
    );
    let blob = encrypt(&client, &a, b"before expiry").await;

    // Keys of other origins, aliases, rotation.
    let plain = create_key(&client).await;
    for (op, body) in [
        (
            "GetParametersForImport",
            json!({"KeyId": plain, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
        ),
        ("DeleteImportedKeyMaterial", json!({"KeyId": plain})),
        (
            "ImportKeyMaterial",
            json!({"KeyId": plain, "ImportToken": b64(&second), "EncryptedKeyMaterial": b64(&under_second)}),
        ),
        ("EnableKeyRotation", json!({"KeyId": a})),
        ("RotateKeyOnDemand", json!({"KeyId": a})),
    ] {
        fails(&client, op, body, "UnsupportedOperationException").await;
    }
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/imported", "TargetKeyId": a}),
    )
    .await;
    fails(
        &client,
        "DeleteImportedKeyMaterial",
        json!({"KeyId": "alias/imported"}),
        "NotFoundException",
    )
    .await;
    fails(
        &client,
        "GetParametersForImport",
        json!({"KeyId": a, "WrappingAlgorithm": "RSAES_PKCS1_V1_5", "WrappingKeySpec": "RSA_2048"}),
        "UnsupportedOperationException",
    )
    .await;

    // 25 hours later b's token has expired...
    fx.dir.set_clock_offset_secs(25 * HOUR);
    import_fails(
        &client,
        &b,
        &b_token,
        &under_b,
        "ExpiredImportTokenException",
    )
    .await;
    // ... and a's material too: refused at once, deleted by maintenance (a service event).
    let err = decrypt(&client, &blob).await.unwrap_err();
    assert_eq!(err.exception(), Some("KMSInvalidStateException"), "{err}");
    fails(
        &client,
        "Encrypt",
        json!({"KeyId": a, "Plaintext": b64(b"x")}),
        "KMSInvalidStateException",
    )
    .await;
    assert_eq!(describe(&client, &a).await["KeyState"], "PendingImport");
    poll(
        "maintenance to delete the expired material",
        Duration::from_secs(30),
        || {
            fx.kmsd
                .log_text()
                .contains("imported key material expired")
                .then_some(())
        },
    );
    let audit = fx.dir.state_dir().join("audit");
    let trail: String = std::fs::read_dir(&audit)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(
        trail.contains("DeleteExpiredKeyMaterial"),
        "no service event in the trail"
    );
    assert!(
        !trail.contains(&b64(&second)),
        "an import token reached the trail"
    );
    // The same material brings it back, with its old ciphertexts.
    let (token, public) =
        parameters(&client, dir, &a, "RSA_AES_KEY_WRAP_SHA_256", "RSA_3072").await;
    let again = openssl_wrap(dir, "RSA_AES_KEY_WRAP_SHA_256", &public, &material);
    import(&client, &a, &token, &again, json!({})).await;
    assert_eq!(decrypt(&client, &blob).await.unwrap(), b"before expiry");
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_and_ecc_material_from_openssl_and_kmsctl() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();

    // HMAC_256: 32 bytes; the MAC is the HMAC of the imported key.
    let key = create_external(
        &client,
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    )
    .await;
    let (token, public) = parameters(&client, dir, &key, "RSAES_OAEP_SHA_256", "RSA_2048").await;
    let material = openssl_material(dir, "hmac.bin", 32);
    import(
        &client,
        &key,
        &token,
        &openssl_wrap(dir, "RSAES_OAEP_SHA_256", &public, &material),
        json!({}),
    )
    .await;
    let mac = ok(
        &client,
        "GenerateMac",
        json!({"KeyId": key, "Message": b64(b"message"), "MacAlgorithm": "HMAC_SHA_256"}),
    )
    .await;
    let hexkey = format!("hexkey:{}", hex::encode(std::fs::read(&material).unwrap()));
    let message = dir.join("message.bin");
    std::fs::write(&message, b"message").unwrap();
    let expected = openssl(&[
        "dgst",
        "-sha256",
        "-mac",
        "HMAC",
        "-macopt",
        &hexkey,
        "-binary",
        message.to_str().unwrap(),
    ]);
    assert_eq!(unb64(&mac["Mac"]), expected);

    // RSA material only with an RSA_AES algorithm.
    let rsa = create_external(
        &client,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"}),
    )
    .await;
    fails(
        &client,
        "GetParametersForImport",
        json!({"KeyId": rsa, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
        "ValidationException",
    )
    .await;

    // ECC_NIST_P256 signing key from OpenSSL (PKCS#8 DER), imported through kmsctl as in
    // AWS's guide; the signature verifies with OpenSSL.
    let socket = fx.kmsd.socket.clone();
    let kmsctl = |args: &[&str]| {
        let output = Command::new(KMSCTL)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "kmsctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    let pem = dir.join("ec.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        pem.to_str().unwrap(),
    ]);
    let der = dir.join("PlaintextKeyMaterial.der");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-outform",
        "DER",
        "-in",
        pem.to_str().unwrap(),
        "-out",
        der.to_str().unwrap(),
    ]);
    let key = kmsctl(&[
        "create-key",
        "--origin",
        "EXTERNAL",
        "--key-spec",
        "ECC_NIST_P256",
        "--key-usage",
        "SIGN_VERIFY",
        "--query",
        "KeyMetadata.KeyId",
        "--output",
        "text",
    ]);
    let params = kmsctl(&[
        "get-parameters-for-import",
        "--key-id",
        &key,
        "--wrapping-algorithm",
        "RSA_AES_KEY_WRAP_SHA_256",
        "--wrapping-key-spec",
        "RSA_2048",
        "--output",
        "json",
    ]);
    let params: Value = serde_json::from_str(&params).unwrap();
    let public = dir.join("WrappingPublicKey.bin");
    std::fs::write(&public, unb64(&params["PublicKey"])).unwrap();
    let token = dir.join("ImportToken.bin");
    std::fs::write(&token, unb64(&params["ImportToken"])).unwrap();
    openssl_wrap(dir, "RSA_AES_KEY_WRAP_SHA_256", &public, &der);
    let valid_to = format!("{}", now_secs() as i64 + 7 * 24 * HOUR);
    kmsctl(&[
        "import-key-material",
        "--key-id",
        &key,
        "--encrypted-key-material",
        &format!("fileb://{}", dir.join("EncryptedKeyMaterial.bin").display()),
        "--import-token",
        &format!("fileb://{}", token.display()),
        "--expiration-model",
        "KEY_MATERIAL_EXPIRES",
        "--valid-to",
        &valid_to,
    ]);
    assert_eq!(
        kmsctl(&[
            "describe-key",
            "--key-id",
            &key,
            "--query",
            "KeyMetadata.KeyState",
            "--output",
            "text"
        ]),
        "Enabled"
    );
    let signature = kmsctl(&[
        "sign",
        "--key-id",
        &key,
        "--message",
        &format!("fileb://{}", message.display()),
        "--signing-algorithm",
        "ECDSA_SHA_256",
        "--query",
        "Signature",
        "--output",
        "text",
    ]);
    let sig = dir.join("sig.der");
    std::fs::write(&sig, unb64(&Value::String(signature))).unwrap();
    let verified = openssl(&[
        "dgst",
        "-sha256",
        "-prverify",
        pem.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        message.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&verified).contains("Verified OK"));
    kmsctl(&["delete-imported-key-material", "--key-id", &key]);
    assert_eq!(
        kmsctl(&[
            "describe-key",
            "--key-id",
            &key,
            "--query",
            "KeyMetadata.KeyState",
            "--output",
            "text"
        ]),
        "PendingImport"
    );
}
