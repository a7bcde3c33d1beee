//! Asymmetric and HMAC keys through the real socket: every signing spec and algorithm signs
//! and verifies in kmsd, and OpenSSL (a tool nobody here wrote) verifies kmsd's signatures
//! with the DER public key GetPublicKey returns, for RAW and DIGEST messages (ML-DSA, which
//! OpenSSL 3.0 lacks, by RustCrypto's independent `ml-dsa`); OpenSSL's RSA-OAEP ciphertexts
//! decrypt in kmsd; ECDH secrets match `openssl pkeyutl -derive`; data key pairs load in
//! OpenSSL; HMAC keys
//! generate and verify MACs; the bounds and exceptions of the AWS API reference; keys and
//! their public keys survive a restart; the trail never holds a message.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;

async fn create(client: &kmsd::client::Client, spec: &str, usage: &str) -> String {
    let created = ok(
        client,
        "CreateKey",
        json!({"KeySpec": spec, "KeyUsage": usage}),
    )
    .await;
    assert_eq!(created["KeyMetadata"]["KeySpec"], spec);
    assert_eq!(created["KeyMetadata"]["CustomerMasterKeySpec"], spec);
    assert_eq!(created["KeyMetadata"]["KeyUsage"], usage);
    created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The OpenSSL options that verify `algorithm`: (digest, extra -sigopt flags).
fn openssl_digest(algorithm: &str) -> (&'static str, Vec<&'static str>) {
    let digest = if algorithm.ends_with("256") {
        "-sha256"
    } else if algorithm.ends_with("384") {
        "-sha384"
    } else {
        "-sha512"
    };
    let pss = if algorithm.starts_with("RSASSA_PSS") {
        // AWS: the salt is as long as the hash.
        vec![
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ]
    } else {
        vec![]
    };
    (digest, pss)
}

/// Whether OpenSSL verifies `signature` of `message` under the PEM public key.
fn openssl_verifies(
    dir: &Path,
    spec: &str,
    algorithm: &str,
    message: &[u8],
    signature: &[u8],
) -> bool {
    let message_file = dir.join("message.bin");
    let signature_file = dir.join("signature.bin");
    std::fs::write(&message_file, message).unwrap();
    std::fs::write(&signature_file, signature).unwrap();
    let public = dir.join("public.pem");
    let output = if spec == "ECC_NIST_EDWARDS25519" {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(&public)
            .arg("-in")
            .arg(&message_file)
            .arg("-sigfile")
            .arg(&signature_file)
            .output()
            .unwrap()
    } else {
        let (digest, extra) = openssl_digest(algorithm);
        Command::new("openssl")
            .args(["dgst", digest])
            .args(&extra)
            .arg("-verify")
            .arg(&public)
            .arg("-signature")
            .arg(&signature_file)
            .arg(&message_file)
            .output()
            .unwrap()
    };
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success() && text.contains("Verified OK")
        || output.status.success() && text.contains("Signature Verified Successfully")
}

/// Whether RustCrypto's `ml-dsa` (an implementation independent of AWS-LC) verifies an
/// ML-DSA signature with the DER public key GetPublicKey returned.
fn ml_dsa_verifies(spec: &str, der: &[u8], message: &[u8], signature: &[u8]) -> bool {
    fn check<P>(der: &[u8], message: &[u8], signature: &[u8]) -> bool
    where
        P: ml_dsa::MlDsaParams,
        ml_dsa::VerifyingKey<P>: ml_dsa::pkcs8::DecodePublicKey,
    {
        use ml_dsa::pkcs8::DecodePublicKey;
        use ml_dsa::signature::Verifier;
        let Ok(key) = ml_dsa::VerifyingKey::<P>::from_public_key_der(der) else {
            return false;
        };
        let Ok(signature) = ml_dsa::Signature::<P>::try_from(signature) else {
            return false;
        };
        key.verify(message, &signature).is_ok()
    }
    match spec {
        "ML_DSA_44" => check::<ml_dsa::MlDsa44>(der, message, signature),
        "ML_DSA_65" => check::<ml_dsa::MlDsa65>(der, message, signature),
        "ML_DSA_87" => check::<ml_dsa::MlDsa87>(der, message, signature),
        _ => false,
    }
}

fn digest_of(algorithm: &str, message: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    if algorithm.ends_with("256") {
        sha2::Sha256::digest(message).to_vec()
    } else if algorithm.ends_with("384") {
        sha2::Sha384::digest(message).to_vec()
    } else {
        sha2::Sha512::digest(message).to_vec()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_verifies_every_signing_spec_and_algorithm() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let message = b"kmsd signs this message".to_vec();
    let specs = [
        "RSA_2048",
        "RSA_3072",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
        "ECC_NIST_EDWARDS25519",
        "ML_DSA_44",
        "ML_DSA_65",
        "ML_DSA_87",
    ];
    for spec in specs {
        let key = create(&client, spec, "SIGN_VERIFY").await;
        let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
        let metadata = &described["KeyMetadata"];
        assert!(
            metadata.get("EncryptionAlgorithms").is_none(),
            "{spec}: {metadata}"
        );
        let algorithms: Vec<String> = metadata["SigningAlgorithms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        assert!(!algorithms.is_empty(), "{spec}");
        let public = ok(&client, "GetPublicKey", json!({"KeyId": key})).await;
        assert_eq!(public["KeySpec"], spec);
        assert_eq!(public["KeyUsage"], "SIGN_VERIFY");
        assert_eq!(public["SigningAlgorithms"], metadata["SigningAlgorithms"]);
        let der = unb64(&public["PublicKey"]);
        let der_file = scratch.path().join("public.der");
        std::fs::write(&der_file, &der).unwrap();
        // OpenSSL 3.0 has neither ML-DSA nor Ed25519ph: ML-DSA is checked with RustCrypto's
        // ml-dsa below, Ed25519ph against RFC 8032's test vector (unit test in
        // crypto::asymmetric) and by kmsd's own Verify here.
        let openssl_has =
            |algorithm: &str| !spec.starts_with("ML_DSA") && algorithm != "ED25519_PH_SHA_512";
        let interop = !spec.starts_with("ML_DSA");
        if interop {
            // The DER is a SubjectPublicKeyInfo OpenSSL reads.
            let converted = Command::new("openssl")
                .args(["pkey", "-pubin", "-inform", "DER", "-in"])
                .arg(&der_file)
                .arg("-out")
                .arg(scratch.path().join("public.pem"))
                .output()
                .unwrap();
            assert!(converted.status.success(), "{spec}: {converted:?}");
        }
        for algorithm in &algorithms {
            let signed = ok(
                &client,
                "Sign",
                json!({"KeyId": key, "Message": b64(&message), "SigningAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(signed["SigningAlgorithm"], *algorithm);
            let signature = unb64(&signed["Signature"]);
            let verified = ok(
                &client,
                "Verify",
                json!({"KeyId": key, "Message": b64(&message), "Signature": b64(&signature),
                       "SigningAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(verified["SignatureValid"], true, "{spec} {algorithm}");
            let mut tampered = message.clone();
            tampered[0] ^= 1;
            fails(
                &client,
                "Verify",
                json!({"KeyId": key, "Message": b64(&tampered), "Signature": b64(&signature),
                       "SigningAlgorithm": algorithm}),
                "KMSInvalidSignatureException",
            )
            .await;
            if spec.starts_with("ML_DSA") {
                // EXTERNAL_MU: kmsd signs µ, computed here with SHAKE256 (FIPS 204, empty
                // context); the signature is one of the message itself.
                use sha3::digest::{ExtendableOutput, Update, XofReader};
                let shake = |parts: &[&[u8]]| {
                    let mut hasher = sha3::Shake256::default();
                    for part in parts {
                        hasher.update(part);
                    }
                    let mut out = [0u8; 64];
                    hasher.finalize_xof().read(&mut out);
                    out
                };
                let public_len = match spec {
                    "ML_DSA_44" => 1312,
                    "ML_DSA_65" => 1952,
                    _ => 2592,
                };
                let tr = shake(&[&der[der.len() - public_len..]]);
                let mu = shake(&[&tr, &[0, 0], &message]);
                let by_mu = ok(
                    &client,
                    "Sign",
                    json!({"KeyId": key, "Message": b64(&mu), "MessageType": "EXTERNAL_MU",
                           "SigningAlgorithm": algorithm}),
                )
                .await;
                assert!(
                    ml_dsa_verifies(spec, &der, &message, &unb64(&by_mu["Signature"])),
                    "RustCrypto ml-dsa does not verify an EXTERNAL_MU signature ({spec})"
                );
                ok(
                    &client,
                    "Verify",
                    json!({"KeyId": key, "Message": b64(&mu), "MessageType": "EXTERNAL_MU",
                           "Signature": b64(&signature), "SigningAlgorithm": algorithm}),
                )
                .await;
                assert!(
                    ml_dsa_verifies(spec, &der, &message, &signature),
                    "RustCrypto ml-dsa does not verify {spec}"
                );
                assert!(
                    !ml_dsa_verifies(spec, &der, &tampered, &signature),
                    "RustCrypto ml-dsa verifies a tampered message ({spec})"
                );
            }
            if openssl_has(algorithm) {
                assert!(
                    openssl_verifies(scratch.path(), spec, algorithm, &message, &signature),
                    "OpenSSL does not verify {spec} {algorithm}"
                );
                assert!(
                    !openssl_verifies(scratch.path(), spec, algorithm, &tampered, &signature),
                    "OpenSSL verifies a tampered message ({spec} {algorithm})"
                );
            }
            if algorithm == "ED25519_PH_SHA_512" {
                // DIGEST is the SHA-512 of the message: the same signature as RAW.
                let digest = digest_of("SHA_512", &message);
                let by_digest = ok(
                    &client,
                    "Sign",
                    json!({"KeyId": key, "Message": b64(&digest), "MessageType": "DIGEST",
                           "SigningAlgorithm": algorithm}),
                )
                .await;
                assert_eq!(unb64(&by_digest["Signature"]), signature);
            }
            if !spec.starts_with("ML_DSA") && spec != "ECC_NIST_EDWARDS25519" {
                // DIGEST: kmsd signs the digest; OpenSSL checks it over the message.
                let digest = digest_of(algorithm, &message);
                let by_digest = ok(
                    &client,
                    "Sign",
                    json!({"KeyId": key, "Message": b64(&digest), "MessageType": "DIGEST",
                           "SigningAlgorithm": algorithm}),
                )
                .await;
                let signature = unb64(&by_digest["Signature"]);
                assert!(
                    openssl_verifies(scratch.path(), spec, algorithm, &message, &signature),
                    "OpenSSL does not verify a DIGEST signature ({spec} {algorithm})"
                );
                ok(
                    &client,
                    "Verify",
                    json!({"KeyId": key, "Message": b64(&digest), "MessageType": "DIGEST",
                           "Signature": b64(&signature), "SigningAlgorithm": algorithm}),
                )
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_keys_generate_and_verify_macs() {
    let fx = Fixture::start();
    let client = fx.client();
    for (spec, algorithm, len) in [
        ("HMAC_224", "HMAC_SHA_224", 28),
        ("HMAC_256", "HMAC_SHA_256", 32),
        ("HMAC_384", "HMAC_SHA_384", 48),
        ("HMAC_512", "HMAC_SHA_512", 64),
    ] {
        let key = create(&client, spec, "GENERATE_VERIFY_MAC").await;
        let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
        assert_eq!(
            described["KeyMetadata"]["MacAlgorithms"],
            json!([algorithm])
        );
        let message = b64(b"a token to protect");
        let made = ok(
            &client,
            "GenerateMac",
            json!({"KeyId": key, "Message": message, "MacAlgorithm": algorithm}),
        )
        .await;
        let mac = unb64(&made["Mac"]);
        assert_eq!(mac.len(), len, "{spec}");
        // Deterministic: the same message gives the same MAC.
        let again = ok(
            &client,
            "GenerateMac",
            json!({"KeyId": key, "Message": message, "MacAlgorithm": algorithm}),
        )
        .await;
        assert_eq!(unb64(&again["Mac"]), mac);
        let verified = ok(
            &client,
            "VerifyMac",
            json!({"KeyId": key, "Message": message, "MacAlgorithm": algorithm, "Mac": b64(&mac)}),
        )
        .await;
        assert_eq!(verified["MacValid"], true);
        let mut bad = mac.clone();
        bad[0] ^= 0x80;
        fails(
            &client,
            "VerifyMac",
            json!({"KeyId": key, "Message": message, "MacAlgorithm": algorithm, "Mac": b64(&bad)}),
            "KMSInvalidMacException",
        )
        .await;
        let other = if algorithm == "HMAC_SHA_256" {
            "HMAC_SHA_512"
        } else {
            "HMAC_SHA_256"
        };
        fails(
            &client,
            "GenerateMac",
            json!({"KeyId": key, "Message": message, "MacAlgorithm": other}),
            "InvalidKeyUsageException",
        )
        .await;
        fails(
            &client,
            "GetPublicKey",
            json!({"KeyId": key}),
            "UnsupportedOperationException",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bounds_and_exceptions_follow_the_api_reference() {
    let fx = Fixture::start();
    let client = fx.client();
    let symmetric = create_key(&client).await;
    let ecc = create(&client, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let ed = create(&client, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY").await;
    let hmac = create(&client, "HMAC_256", "GENERATE_VERIFY_MAC").await;
    let ml_dsa = create(&client, "ML_DSA_44", "SIGN_VERIFY").await;
    let sign = |key: &str, message: Vec<u8>, extra: serde_json::Value| {
        let mut body =
            json!({"KeyId": key, "Message": b64(&message), "SigningAlgorithm": "ECDSA_SHA_256"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "CreateKey",
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "ENCRYPT_DECRYPT"}),
            "ValidationException",
            "not compatible",
        ),
        (
            "CreateKey",
            json!({"KeySpec": "HMAC_256"}),
            "ValidationException",
            "GENERATE_VERIFY_MAC",
        ),
        (
            "CreateKey",
            json!({"KeySpec": "ECC_SECG_P256K1", "KeyUsage": "KEY_AGREEMENT"}),
            "ValidationException",
            "not compatible",
        ),
        (
            "CreateKey",
            json!({"KeySpec": "RSA_9999", "KeyUsage": "SIGN_VERIFY"}),
            "ValidationException",
            "'keySpec'",
        ),
        (
            "CreateKey",
            json!({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"}),
            "UnsupportedOperationException",
            "SM2",
        ),
        (
            "CreateKey",
            json!({"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "CustomerMasterKeySpec": "RSA_4096"}),
            "ValidationException",
            "differ",
        ),
        (
            "Sign",
            sign(&ecc, vec![], json!({})),
            "ValidationException",
            "length greater than or equal to 1",
        ),
        (
            "Sign",
            sign(&ecc, vec![1; 4097], json!({})),
            "ValidationException",
            "4096",
        ),
        (
            "Sign",
            sign(&ecc, vec![1; 31], json!({"MessageType": "DIGEST"})),
            "ValidationException",
            "32 bytes",
        ),
        (
            "Sign",
            sign(&ecc, vec![1; 32], json!({"MessageType": "HASHED"})),
            "ValidationException",
            "MessageType",
        ),
        (
            "Sign",
            sign(
                &ecc,
                vec![1; 32],
                json!({"SigningAlgorithm": "ECDSA_SHA_384"}),
            ),
            "InvalidKeyUsageException",
            "ECDSA_SHA_384",
        ),
        (
            "Sign",
            sign(
                &ecc,
                vec![1; 32],
                json!({"SigningAlgorithm": "ECDSA_SHA_999"}),
            ),
            "ValidationException",
            "SigningAlgorithm",
        ),
        (
            "Sign",
            json!({"KeyId": ecc, "Message": b64(b"m")}),
            "ValidationException",
            "SigningAlgorithm",
        ),
        (
            "Sign",
            sign(
                &ed,
                vec![1; 63],
                json!({"SigningAlgorithm": "ED25519_PH_SHA_512", "MessageType": "DIGEST"}),
            ),
            "ValidationException",
            "64 bytes",
        ),
        (
            "Sign",
            sign(
                &ml_dsa,
                vec![1; 63],
                json!({"SigningAlgorithm": "ML_DSA_SHAKE_256", "MessageType": "EXTERNAL_MU"}),
            ),
            "ValidationException",
            "64 bytes",
        ),
        (
            "Sign",
            sign(&ecc, vec![1; 64], json!({"MessageType": "EXTERNAL_MU"})),
            "ValidationException",
            "EXTERNAL_MU",
        ),
        (
            "Sign",
            sign(
                &ed,
                vec![1; 64],
                json!({"SigningAlgorithm": "ED25519_SHA_512", "MessageType": "DIGEST"}),
            ),
            "ValidationException",
            "DIGEST",
        ),
        (
            "Sign",
            sign(&symmetric, b"m".to_vec(), json!({})),
            "InvalidKeyUsageException",
            "SYMMETRIC_DEFAULT",
        ),
        (
            "Sign",
            sign(&hmac, b"m".to_vec(), json!({})),
            "InvalidKeyUsageException",
            "GENERATE_VERIFY_MAC",
        ),
        (
            "Encrypt",
            json!({"KeyId": ecc, "Plaintext": b64(b"x")}),
            "InvalidKeyUsageException",
            "SIGN_VERIFY",
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": hmac, "KeySpec": "AES_256"}),
            "InvalidKeyUsageException",
            "HMAC_256",
        ),
        (
            "GenerateMac",
            json!({"KeyId": ecc, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
            "InvalidKeyUsageException",
            "SIGN_VERIFY",
        ),
        (
            "GenerateMac",
            json!({"KeyId": hmac, "Message": b64(&[0; 4097]), "MacAlgorithm": "HMAC_SHA_256"}),
            "ValidationException",
            "4096",
        ),
        (
            "VerifyMac",
            json!({"KeyId": hmac, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"}),
            "ValidationException",
            "Mac",
        ),
        (
            "Verify",
            json!({"KeyId": ecc, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256", "Signature": b64(&[0; 6145])}),
            "ValidationException",
            "6144",
        ),
        (
            "GetPublicKey",
            json!({"KeyId": symmetric}),
            "UnsupportedOperationException",
            "no public key",
        ),
        (
            "EnableKeyRotation",
            json!({"KeyId": ecc}),
            "UnsupportedOperationException",
            "only SYMMETRIC_DEFAULT keys rotate",
        ),
        (
            "RotateKeyOnDemand",
            json!({"KeyId": hmac}),
            "UnsupportedOperationException",
            "only SYMMETRIC_DEFAULT keys rotate",
        ),
    ];
    for (operation, body, exception, needle) in cases {
        let message = fails(&client, operation, body.clone(), exception).await;
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{operation} {body}: {message}"
        );
    }
    // A disabled signing key refuses to sign.
    ok(&client, "DisableKey", json!({"KeyId": ecc})).await;
    fails(
        &client,
        "Sign",
        sign(&ecc, b"m".to_vec(), json!({})),
        "DisabledException",
    )
    .await;
    // Through an alias.
    ok(&client, "EnableKey", json!({"KeyId": ecc})).await;
    ok(
        &client,
        "CreateAlias",
        json!({"AliasName": "alias/signer", "TargetKeyId": ecc}),
    )
    .await;
    ok(
        &client,
        "Sign",
        sign("alias/signer", b"m".to_vec(), json!({})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_survive_a_restart_and_the_trail_holds_no_message() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let rsa = create(&client, "RSA_2048", "SIGN_VERIFY").await;
    let hmac = create(&client, "HMAC_512", "GENERATE_VERIFY_MAC").await;
    let message = b64(b"the-secret-message-kmsd-must-not-log");
    let signed = ok(
        &client,
        "Sign",
        json!({"KeyId": rsa, "Message": message, "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
    )
    .await;
    let public = ok(&client, "GetPublicKey", json!({"KeyId": rsa})).await;
    let mac = ok(
        &client,
        "GenerateMac",
        json!({"KeyId": hmac, "Message": message, "MacAlgorithm": "HMAC_SHA_512"}),
    )
    .await;
    fx.restart();
    let client = fx.client();
    let after = ok(&client, "GetPublicKey", json!({"KeyId": rsa})).await;
    assert_eq!(after["PublicKey"], public["PublicKey"]);
    ok(
        &client,
        "Verify",
        json!({"KeyId": rsa, "Message": message, "Signature": signed["Signature"],
               "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
    )
    .await;
    ok(
        &client,
        "VerifyMac",
        json!({"KeyId": hmac, "Message": message, "Mac": mac["Mac"], "MacAlgorithm": "HMAC_SHA_512"}),
    )
    .await;
    let trail: String = std::fs::read_dir(fx.dir.state_dir().join("audit"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(trail.contains("\"eventName\":\"Sign\""), "no Sign record");
    assert!(
        trail.contains("\"eventName\":\"VerifyMac\""),
        "no VerifyMac record"
    );
    assert!(trail.contains("\"signingAlgorithm\":\"RSASSA_PSS_SHA_256\""));
    assert!(!trail.contains(&message), "the trail holds the message");
    let signature = signed["Signature"].as_str().unwrap();
    assert!(!trail.contains(signature), "the trail holds the signature");
    assert!(
        !trail.contains(mac["Mac"].as_str().unwrap()),
        "the trail holds the MAC"
    );
}

/// Runs kmsctl against `socket`; returns stdout, failing the test on a non-zero exit.
fn kmsctl(socket: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kmsctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kmsctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn kmsctl_signs_verifies_and_macs_like_aws_kms() {
    let fx = Fixture::start();
    let socket = fx.kmsd.socket.clone();
    let scratch = tempfile::tempdir().unwrap();
    let message = scratch.path().join("message.txt");
    std::fs::write(&message, b"release-1.2.3.tar.gz sha256 ...").unwrap();
    let message_arg = format!("fileb://{}", message.display());
    let key = kmsctl(
        &socket,
        &[
            "create-key",
            "--key-spec",
            "ECC_NIST_P384",
            "--key-usage",
            "SIGN_VERIFY",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    );
    let signature = kmsctl(
        &socket,
        &[
            "sign",
            "--key-id",
            &key,
            "--message",
            &message_arg,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--query",
            "Signature",
            "--output",
            "text",
        ],
    );
    let verified = kmsctl(
        &socket,
        &[
            "verify",
            "--key-id",
            &key,
            "--message",
            &message_arg,
            "--signature",
            &signature,
            "--signing-algorithm",
            "ECDSA_SHA_384",
            "--query",
            "SignatureValid",
            "--output",
            "text",
        ],
    );
    assert_eq!(verified, "True");
    let public = kmsctl(
        &socket,
        &[
            "get-public-key",
            "--key-id",
            &key,
            "--query",
            "PublicKey",
            "--output",
            "text",
        ],
    );
    // OpenSSL checks the signature kmsctl got with the public key kmsctl got.
    let der = unb64(&serde_json::Value::String(public));
    std::fs::write(scratch.path().join("public.der"), der).unwrap();
    let signature_bytes = unb64(&serde_json::Value::String(signature));
    std::fs::write(scratch.path().join("signature.bin"), signature_bytes).unwrap();
    let openssl = Command::new("openssl")
        .args(["dgst", "-sha384", "-keyform", "DER", "-verify"])
        .arg(scratch.path().join("public.der"))
        .arg("-signature")
        .arg(scratch.path().join("signature.bin"))
        .arg(&message)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&openssl.stdout).contains("Verified OK"),
        "{openssl:?}"
    );
    let hmac = kmsctl(
        &socket,
        &[
            "create-key",
            "--key-spec",
            "HMAC_256",
            "--key-usage",
            "GENERATE_VERIFY_MAC",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    );
    let mac = kmsctl(
        &socket,
        &[
            "generate-mac",
            "--key-id",
            &hmac,
            "--message",
            &message_arg,
            "--mac-algorithm",
            "HMAC_SHA_256",
            "--query",
            "Mac",
            "--output",
            "text",
        ],
    );
    let valid = kmsctl(
        &socket,
        &[
            "verify-mac",
            "--key-id",
            &hmac,
            "--message",
            &message_arg,
            "--mac",
            &mac,
            "--mac-algorithm",
            "HMAC_SHA_256",
            "--query",
            "MacValid",
            "--output",
            "text",
        ],
    );
    assert_eq!(valid, "True");
    let symmetric = kmsctl(
        &socket,
        &[
            "create-key",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    );
    let pair_public = kmsctl(
        &socket,
        &[
            "generate-data-key-pair-without-plaintext",
            "--key-id",
            &symmetric,
            "--key-pair-spec",
            "ECC_NIST_P256",
            "--encryption-context",
            "app=web",
            "--query",
            "PublicKey",
            "--output",
            "text",
        ],
    );
    let peer_der = scratch.path().join("peer.der");
    std::fs::write(&peer_der, unb64(&serde_json::Value::String(pair_public))).unwrap();
    let agreement = kmsctl(
        &socket,
        &[
            "create-key",
            "--key-spec",
            "ECC_NIST_P256",
            "--key-usage",
            "KEY_AGREEMENT",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ],
    );
    let secret = kmsctl(
        &socket,
        &[
            "derive-shared-secret",
            "--key-id",
            &agreement,
            "--key-agreement-algorithm",
            "ECDH",
            "--public-key",
            &format!("fileb://{}", peer_der.display()),
            "--query",
            "SharedSecret",
            "--output",
            "text",
        ],
    );
    assert_eq!(unb64(&serde_json::Value::String(secret)).len(), 32);
}

fn openssl(args: &[&str]) -> std::process::Output {
    let output = Command::new("openssl").args(args).output().unwrap();
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
    output
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_oaep_interoperates_with_openssl() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let symmetric = create_key(&client).await;
    for (spec, sha1_max, sha256_max) in [("RSA_2048", 214, 190), ("RSA_3072", 342, 318)] {
        let key = create(&client, spec, "ENCRYPT_DECRYPT").await;
        let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
        assert_eq!(
            described["KeyMetadata"]["EncryptionAlgorithms"],
            json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        );
        let public = ok(&client, "GetPublicKey", json!({"KeyId": key})).await;
        assert_eq!(
            public["EncryptionAlgorithms"],
            json!(["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
        );
        let der = scratch.path().join("rsa.der");
        let pem = scratch.path().join("rsa.pem");
        std::fs::write(&der, unb64(&public["PublicKey"])).unwrap();
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            path(&der),
            "-out",
            path(&pem),
        ]);
        for (algorithm, md, max) in [
            ("RSAES_OAEP_SHA_1", "sha1", sha1_max),
            ("RSAES_OAEP_SHA_256", "sha256", sha256_max),
        ] {
            // OpenSSL encrypts with the public key, kmsd decrypts.
            let plaintext = vec![0x5a; max];
            let input = scratch.path().join("plain.bin");
            let output = scratch.path().join("cipher.bin");
            std::fs::write(&input, &plaintext).unwrap();
            openssl(&[
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                path(&pem),
                "-pkeyopt",
                "rsa_padding_mode:oaep",
                "-pkeyopt",
                &format!("rsa_oaep_md:{md}"),
                "-pkeyopt",
                &format!("rsa_mgf1_md:{md}"),
                "-in",
                path(&input),
                "-out",
                path(&output),
            ]);
            let ciphertext = std::fs::read(&output).unwrap();
            let decrypted = ok(
                &client,
                "Decrypt",
                json!({"KeyId": key, "CiphertextBlob": b64(&ciphertext), "EncryptionAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(
                unb64(&decrypted["Plaintext"]),
                plaintext,
                "{spec} {algorithm}"
            );
            assert_eq!(decrypted["EncryptionAlgorithm"], algorithm);
            assert!(decrypted.get("KeyMaterialId").is_none());
            // kmsd encrypts, kmsd decrypts; one byte over the limit is refused.
            let encrypted = ok(
                &client,
                "Encrypt",
                json!({"KeyId": key, "Plaintext": b64(&plaintext), "EncryptionAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(encrypted["EncryptionAlgorithm"], algorithm);
            let blob = unb64(&encrypted["CiphertextBlob"]);
            let back = ok(
                &client,
                "Decrypt",
                json!({"KeyId": key, "CiphertextBlob": b64(&blob), "EncryptionAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(unb64(&back["Plaintext"]), plaintext);
            let message = fails(
                &client,
                "Encrypt",
                json!({"KeyId": key, "Plaintext": b64(&vec![1; max + 1]), "EncryptionAlgorithm": algorithm}),
                "ValidationException",
            )
            .await;
            assert!(
                message.contains(&format!("less than or equal to {max}")),
                "{message}"
            );
            let mut tampered = blob.clone();
            tampered[7] ^= 1;
            fails(
                &client,
                "Decrypt",
                json!({"KeyId": key, "CiphertextBlob": b64(&tampered), "EncryptionAlgorithm": algorithm}),
                "InvalidCiphertextException",
            )
            .await;
            // ReEncrypt from RSA to a symmetric key and back.
            let moved = ok(
                &client,
                "ReEncrypt",
                json!({"CiphertextBlob": b64(&blob), "SourceKeyId": key,
                       "SourceEncryptionAlgorithm": algorithm, "DestinationKeyId": symmetric}),
            )
            .await;
            assert_eq!(moved["SourceEncryptionAlgorithm"], algorithm);
            assert!(moved.get("SourceKeyMaterialId").is_none());
            let returned = ok(
                &client,
                "ReEncrypt",
                json!({"CiphertextBlob": moved["CiphertextBlob"], "DestinationKeyId": key,
                       "DestinationEncryptionAlgorithm": algorithm}),
            )
            .await;
            let again = ok(
                &client,
                "Decrypt",
                json!({"KeyId": key, "CiphertextBlob": returned["CiphertextBlob"], "EncryptionAlgorithm": algorithm}),
            )
            .await;
            assert_eq!(unb64(&again["Plaintext"]), plaintext);
        }
        let cases = [
            (
                json!({"KeyId": key, "Plaintext": b64(b"x")}),
                "Encrypt",
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                       "EncryptionContext": {"a": "b"}}),
                "Encrypt",
                "ValidationException",
            ),
            (
                json!({"CiphertextBlob": b64(&[1; 256]), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
                "Decrypt",
                "ValidationException",
            ),
            (
                json!({"KeyId": symmetric, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
                "Encrypt",
                "InvalidKeyUsageException",
            ),
            (
                json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "SM2PKE"}),
                "Encrypt",
                "UnsupportedOperationException",
            ),
            (
                json!({"KeyId": key, "KeySpec": "AES_256"}),
                "GenerateDataKey",
                "InvalidKeyUsageException",
            ),
        ];
        for (body, operation, exception) in cases {
            fails(&client, operation, body, exception).await;
        }
    }
    // An RSA KeyId that does not exist answers like one the caller may not use.
    let missing = fails(
        &client,
        "Decrypt",
        json!({"KeyId": "00000000-0000-4000-8000-000000000000", "CiphertextBlob": b64(&[1; 256]),
               "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
        "AccessDeniedException",
    )
    .await;
    assert!(missing.contains("not allowed to access"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ecdh_secret_matches_openssl_derive() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    for (spec, curve) in [
        ("ECC_NIST_P256", "P-256"),
        ("ECC_NIST_P384", "P-384"),
        ("ECC_NIST_P521", "P-521"),
    ] {
        let key = create(&client, spec, "KEY_AGREEMENT").await;
        let described = ok(&client, "DescribeKey", json!({"KeyId": key})).await;
        assert_eq!(
            described["KeyMetadata"]["KeyAgreementAlgorithms"],
            json!(["ECDH"])
        );
        let peer = dir.join("peer.pem");
        let peer_der = dir.join("peer.der");
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            path(&peer),
        ]);
        openssl(&[
            "pkey",
            "-in",
            path(&peer),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            path(&peer_der),
        ]);
        let derived = ok(
            &client,
            "DeriveSharedSecret",
            json!({"KeyId": key, "KeyAgreementAlgorithm": "ECDH",
                   "PublicKey": b64(&std::fs::read(&peer_der).unwrap())}),
        )
        .await;
        assert_eq!(derived["KeyOrigin"], "AWS_KMS");
        let public = ok(&client, "GetPublicKey", json!({"KeyId": key})).await;
        let kmsd_der = dir.join("kmsd.der");
        let kmsd_pem = dir.join("kmsd.pem");
        std::fs::write(&kmsd_der, unb64(&public["PublicKey"])).unwrap();
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            path(&kmsd_der),
            "-out",
            path(&kmsd_pem),
        ]);
        let secret = dir.join("secret.bin");
        openssl(&[
            "pkeyutl",
            "-derive",
            "-inkey",
            path(&peer),
            "-peerkey",
            path(&kmsd_pem),
            "-out",
            path(&secret),
        ]);
        assert_eq!(
            unb64(&derived["SharedSecret"]),
            std::fs::read(&secret).unwrap(),
            "{spec}: kmsd and OpenSSL disagree"
        );
        // A peer key on another curve, or no key at all.
        let other = if curve == "P-256" { "P-384" } else { "P-256" };
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{other}"),
            "-out",
            path(&peer),
        ]);
        openssl(&[
            "pkey",
            "-in",
            path(&peer),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            path(&peer_der),
        ]);
        for bad in [std::fs::read(&peer_der).unwrap(), b"not a key".to_vec()] {
            fails(
                &client,
                "DeriveSharedSecret",
                json!({"KeyId": key, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(&bad)}),
                "ValidationException",
            )
            .await;
        }
        fails(
            &client,
            "Sign",
            json!({"KeyId": key, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"}),
            "InvalidKeyUsageException",
        )
        .await;
    }
    let signer = create(&client, "ECC_NIST_P256", "SIGN_VERIFY").await;
    fails(
        &client,
        "DeriveSharedSecret",
        json!({"KeyId": signer, "KeyAgreementAlgorithm": "ECDH", "PublicKey": b64(b"x")}),
        "InvalidKeyUsageException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_key_pairs_load_in_openssl_and_match_their_public_keys() {
    let fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let key = create_key(&client).await;
    let context = json!({"device": "sensor-17"});
    for spec in [
        "RSA_2048",
        "ECC_NIST_P256",
        "ECC_NIST_P384",
        "ECC_NIST_P521",
        "ECC_SECG_P256K1",
    ] {
        let pair = ok(
            &client,
            "GenerateDataKeyPair",
            json!({"KeyId": key, "KeyPairSpec": spec, "EncryptionContext": context}),
        )
        .await;
        assert_eq!(pair["KeyPairSpec"], spec);
        assert!(pair["KeyMaterialId"].is_string());
        let private = unb64(&pair["PrivateKeyPlaintext"]);
        let private_der = dir.join("private.der");
        let derived_public = dir.join("public.der");
        std::fs::write(&private_der, &private).unwrap();
        openssl(&[
            "pkey",
            "-inform",
            "DER",
            "-in",
            path(&private_der),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            path(&derived_public),
        ]);
        assert_eq!(
            std::fs::read(&derived_public).unwrap(),
            unb64(&pair["PublicKey"]),
            "{spec}: the public key is not the private key's"
        );
        let opened = ok(
            &client,
            "Decrypt",
            json!({"CiphertextBlob": pair["PrivateKeyCiphertextBlob"], "EncryptionContext": context}),
        )
        .await;
        assert_eq!(unb64(&opened["Plaintext"]), private, "{spec}");
        let without = ok(
            &client,
            "GenerateDataKeyPairWithoutPlaintext",
            json!({"KeyId": key, "KeyPairSpec": spec}),
        )
        .await;
        assert!(without.get("PrivateKeyPlaintext").is_none(), "{without}");
        assert!(without["PublicKey"].is_string());
    }
    let signer = create(&client, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let cases = [
        (
            json!({"KeyId": key, "KeyPairSpec": "RSA_1024"}),
            "ValidationException",
        ),
        (json!({"KeyId": key}), "ValidationException"),
        (
            json!({"KeyId": key, "KeyPairSpec": "SM2"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"KeyId": signer, "KeyPairSpec": "ECC_NIST_P256"}),
            "InvalidKeyUsageException",
        ),
        (
            json!({"KeyId": key, "KeyPairSpec": "ECC_NIST_P256", "Recipient": {"AttestationDocument": "eA=="}}),
            "UnsupportedOperationException",
        ),
    ];
    for (body, exception) in cases {
        fails(&client, "GenerateDataKeyPair", body, exception).await;
    }
    let trail: String = std::fs::read_dir(fx.dir.state_dir().join("audit"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(trail.contains("\"eventName\":\"GenerateDataKeyPair\""));
    assert!(trail.contains("\"keyPairSpec\":\"ECC_NIST_P256\""));
    assert!(!trail.contains("PrivateKeyPlaintext") && !trail.contains("privateKeyPlaintext"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tpm_resident_keys_sign_in_the_tpm_and_openssl_verifies() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let scratch = tempfile::tempdir().unwrap();
    let message = b"signed inside the TPM".to_vec();
    let mut keys = Vec::new();
    for (spec, algorithms) in [
        ("ECC_NIST_P256", vec!["ECDSA_SHA_256"]),
        (
            "RSA_2048",
            vec![
                "RSASSA_PKCS1_V1_5_SHA_256",
                "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PSS_SHA_256",
                "RSASSA_PSS_SHA_384",
            ],
        ),
    ] {
        let created = ok(
            &client,
            "CreateKey",
            json!({"KeySpec": spec, "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-tpm"}),
        )
        .await;
        let metadata = &created["KeyMetadata"];
        assert_eq!(metadata["CustomKeyStoreId"], "cks-tpm");
        assert_eq!(metadata["Origin"], "AWS_CLOUDHSM");
        let key = metadata["KeyId"].as_str().unwrap().to_string();
        let public = ok(&client, "GetPublicKey", json!({"KeyId": key})).await;
        let der = unb64(&public["PublicKey"]);
        let der_file = scratch.path().join("public.der");
        std::fs::write(&der_file, &der).unwrap();
        openssl(&[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            path(&der_file),
            "-out",
            path(&scratch.path().join("public.pem")),
        ]);
        for algorithm in algorithms {
            let signed = ok(
                &client,
                "Sign",
                json!({"KeyId": key, "Message": b64(&message), "SigningAlgorithm": algorithm}),
            )
            .await;
            let signature = unb64(&signed["Signature"]);
            assert!(
                openssl_verifies(scratch.path(), spec, algorithm, &message, &signature),
                "OpenSSL does not verify the TPM's {spec} {algorithm} signature"
            );
            ok(
                &client,
                "Verify",
                json!({"KeyId": key, "Message": b64(&message), "Signature": b64(&signature),
                       "SigningAlgorithm": algorithm}),
            )
            .await;
            let digest = digest_of(algorithm, &message);
            let by_digest = ok(
                &client,
                "Sign",
                json!({"KeyId": key, "Message": b64(&digest), "MessageType": "DIGEST",
                       "SigningAlgorithm": algorithm}),
            )
            .await;
            assert!(openssl_verifies(
                scratch.path(),
                spec,
                algorithm,
                &message,
                &unb64(&by_digest["Signature"])
            ));
            keys.push((key.clone(), algorithm, signature));
        }
        keys.push((key.clone(), "public", der));
    }
    // The stored key is the TPM's blob: the state dir holds no PKCS#8 private key.
    let bad = [
        (
            json!({"KeySpec": "ECC_NIST_P384", "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-tpm"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"KeySpec": "SYMMETRIC_DEFAULT", "CustomKeyStoreId": "cks-tpm"}),
            "UnsupportedOperationException",
        ),
        (
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-nope"}),
            "CustomKeyStoreNotFoundException",
        ),
        (
            json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "CustomKeyStoreId": "cks-tpm", "Origin": "AWS_KMS"}),
            "ValidationException",
        ),
    ];
    for (body, exception) in bad {
        fails(&client, "CreateKey", body, exception).await;
    }
    // After a restart the TPM still signs with the same keys.
    fx.restart();
    let client = fx.client();
    for (key, algorithm, bytes) in &keys {
        if *algorithm == "public" {
            let public = ok(&client, "GetPublicKey", json!({"KeyId": key})).await;
            assert_eq!(unb64(&public["PublicKey"]), *bytes);
            continue;
        }
        ok(
            &client,
            "Verify",
            json!({"KeyId": key, "Message": b64(&message), "Signature": b64(bytes),
                   "SigningAlgorithm": algorithm}),
        )
        .await;
        ok(
            &client,
            "Sign",
            json!({"KeyId": key, "Message": b64(&message), "SigningAlgorithm": algorithm}),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_prices_requests_by_the_keys_spec() {
    let mut fx = Fixture::start();
    let client = fx.client();
    let rsa = create(&client, "RSA_2048", "SIGN_VERIFY").await;
    let ecc = create(&client, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let rsa_encrypt = create(&client, "RSA_3072", "ENCRYPT_DECRYPT").await;
    for _ in 0..3 {
        ok(
            &client,
            "Sign",
            json!({"KeyId": rsa, "Message": b64(b"m"), "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
        )
        .await;
    }
    for _ in 0..2 {
        ok(
            &client,
            "Sign",
            json!({"KeyId": ecc, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"}),
        )
        .await;
    }
    ok(
        &client,
        "Encrypt",
        json!({"KeyId": rsa_encrypt, "Plaintext": b64(b"x"), "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    )
    .await;
    let symmetric = create_key(&client).await;
    for spec in ["RSA_2048", "RSA_2048", "ECC_NIST_P256"] {
        ok(
            &client,
            "GenerateDataKeyPairWithoutPlaintext",
            json!({"KeyId": symmetric, "KeyPairSpec": spec}),
        )
        .await;
    }
    let report = ok(&client, "KmsdGetUsage", json!({})).await;
    let by_class = &report["Totals"]["Requests"]["ByClass"];
    assert_eq!(by_class["asymmetric_rsa_2048"], 3, "{report}");
    assert_eq!(by_class["data_key_pair_rsa"], 2, "{report}");
    assert_eq!(by_class["data_key_pair"], 1, "{report}");
    // Reports and metrics name the AWS operation, whatever the pair.
    let pairs = &report["Totals"]["Requests"]["ByOperation"]["GenerateDataKeyPairWithoutPlaintext"];
    assert_eq!(pairs["success"], 3, "{report}");
    // Two P-256 signatures and the RSA_3072 Encrypt.
    assert_eq!(by_class["asymmetric"], 3, "{report}");
    let key_cost = |key: &str| {
        report["Keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["KeyId"] == key)
            .map(|k| k["MonthToDate"]["Requests"].as_f64().unwrap())
            .unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    // Each key's CreateKey is a symmetric-rate request too.
    let create = 0.03 / 10_000.0;
    assert!(
        close(key_cost(&rsa), 3.0 * 0.03 / 10_000.0 + create),
        "{report}"
    );
    assert!(
        close(key_cost(&ecc), 2.0 * 0.15 / 10_000.0 + create),
        "{report}"
    );
    assert!(
        close(key_cost(&rsa_encrypt), 0.15 / 10_000.0 + create),
        "{report}"
    );
    assert!(
        close(
            key_cost(&symmetric),
            (2.0 * 12.0 + 0.10) / 10_000.0 + create
        ),
        "{report}"
    );
    // The usage ledger keeps the RSA pairs apart across a restart.
    fx.restart();
    let after = ok(&fx.client(), "KmsdGetUsage", json!({})).await;
    let by_class = &after["Totals"]["Requests"]["ByClass"];
    assert_eq!(by_class["data_key_pair_rsa"], 2, "{after}");
    assert_eq!(by_class["data_key_pair"], 1, "{after}");
}

/// kmsd's HMAC (the code GenerateMac and VerifyMac run) against Python's `hmac`, with random
/// keys of every HMAC spec's length: a key made by CreateKey never leaves kmsd, so the
/// comparison runs on the library layer with a key both sides know.
#[test]
fn hmac_matches_pythons_hmac() {
    use kmsd::crypto::asymmetric::HmacKey;
    use kmsd::crypto::keyspec::KeySpec;
    for (spec, name) in [
        (KeySpec::Hmac224, "sha224"),
        (KeySpec::Hmac256, "sha256"),
        (KeySpec::Hmac384, "sha384"),
        (KeySpec::Hmac512, "sha512"),
    ] {
        let key = kmsd::crypto::asymmetric::generate_hmac_key(spec).unwrap();
        let message: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let ours = HmacKey::from_bytes(spec, &key).unwrap().mac(&message);
        let output = Command::new("python3")
            .arg("-c")
            .arg("import hmac,sys\nk,m,d=bytes.fromhex(sys.argv[1]),bytes.fromhex(sys.argv[2]),sys.argv[3]\nprint(hmac.new(k,m,d).hexdigest())")
            .arg(hex::encode(&*key))
            .arg(hex::encode(&message))
            .arg(name)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            hex::encode(&ours),
            "{spec:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rust_client_decodes_the_new_responses() {
    let fx = Fixture::start();
    let client = fx.client();
    let key = create(&client, "ECC_NIST_P256", "SIGN_VERIFY").await;
    let signed: kmsd::api::SignResponse = client
        .call(
            "Sign",
            &json!({"KeyId": key, "Message": b64(b"typed"), "SigningAlgorithm": "ECDSA_SHA_256"}),
        )
        .await
        .unwrap();
    assert_eq!(signed.signing_algorithm, "ECDSA_SHA_256");
    let public: kmsd::api::GetPublicKeyResponse = client
        .call("GetPublicKey", &json!({"KeyId": key}))
        .await
        .unwrap();
    assert_eq!(public.key_spec, "ECC_NIST_P256");
    let verified: kmsd::api::VerifyResponse = client
        .call(
            "Verify",
            &json!({"KeyId": key, "Message": b64(b"typed"), "SigningAlgorithm": "ECDSA_SHA_256",
                    "Signature": b64(signed.signature.as_bytes())}),
        )
        .await
        .unwrap();
    assert!(verified.signature_valid);
    let err = client
        .call::<_, kmsd::api::VerifyResponse>(
            "Verify",
            &json!({"KeyId": key, "Message": b64(b"other"), "SigningAlgorithm": "ECDSA_SHA_256",
                    "Signature": b64(signed.signature.as_bytes())}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.exception(), Some("KMSInvalidSignatureException"));
}
