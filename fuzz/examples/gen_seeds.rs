//! Writes the seed corpus (fuzz/seeds/<target>/) and the fixtures (fuzz/fixtures/) that the
//! fuzz targets read. Run from fuzz/: `cargo run --example gen_seeds`. The ciphertext is
//! made with a random nonce, so re-running changes fixtures/known_ciphertext.bin and its
//! seeds (commit them together); everything else is deterministic.

use kmsd::api::operations::OPERATIONS;
use std::path::Path;

fn write(path: &str, bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
}

fn with_mode(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(rest);
    out
}

fn main() {
    // Request decoder: [operation index] + body.
    let requests: &[(&str, &str, &str)] = &[
        (
            "encrypt",
            "Encrypt",
            r#"{"KeyId":"alias/app","Plaintext":"c2VjcmV0IHBsYWludGV4dA==","EncryptionContext":{"Dept":"A"},"GrantTokens":["t"],"EncryptionAlgorithm":"SYMMETRIC_DEFAULT","DryRun":false}"#,
        ),
        (
            "decrypt",
            "Decrypt",
            r#"{"CiphertextBlob":"AQIDBAUGBwgJCgsMDQ4PEBESExQ=","EncryptionContext":{"Dept":"A"},"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab"}"#,
        ),
        (
            "reencrypt",
            "ReEncrypt",
            r#"{"CiphertextBlob":"AQIDBAUGBwgJCgsMDQ4PEBESExQ=","SourceEncryptionContext":{"a":"b"},"DestinationKeyId":"alias/new","DestinationEncryptionContext":{}}"#,
        ),
        (
            "generate-data-key",
            "GenerateDataKey",
            r#"{"KeyId":"alias/app","KeySpec":"AES_256","EncryptionContext":{"purpose":"backup"}}"#,
        ),
        (
            "create-key",
            "CreateKey",
            r#"{"Description":"d","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","Tags":[{"TagKey":"k","TagValue":"v"}],"Policy":"{}"}"#,
        ),
        (
            "create-grant",
            "CreateGrant",
            r#"{"KeyId":"k","GranteePrincipal":"uid:1000","Operations":["Decrypt","Encrypt"],"Constraints":{"EncryptionContextSubset":{"Dept":"A"}},"Name":"n"}"#,
        ),
        (
            "put-key-policy",
            "PutKeyPolicy",
            r#"{"KeyId":"k","PolicyName":"default","Policy":"{\"Version\":\"2012-10-17\",\"Statement\":[]}","BypassPolicyLockoutSafetyCheck":false}"#,
        ),
        ("list-keys", "ListKeys", r#"{"Limit":10,"Marker":"m"}"#),
        (
            "generate-random",
            "GenerateRandom",
            r#"{"NumberOfBytes":32}"#,
        ),
        (
            "bad-plaintext",
            "Encrypt",
            r#"{"KeyId":"k","Plaintext":"not base64 secret!!","plaintext":"x"}"#,
        ),
        ("empty", "DescribeKey", ""),
    ];
    for (file, name, body) in requests {
        let index = OPERATIONS.iter().position(|op| op.name == *name).unwrap() as u8;
        write(
            &format!("seeds/request_decoder/{file}"),
            &with_mode(index, body.as_bytes()),
        );
    }

    // Ciphertext: one known blob, behind each mode.
    let blob = kmsd::crypto::encrypt(
        &kmsd_fuzz::cmk(),
        kmsd_fuzz::header(),
        &kmsd_fuzz::context(),
        kmsd_fuzz::PLAINTEXT,
    )
    .unwrap();
    write("fixtures/known_ciphertext.bin", &blob);
    write("seeds/ciphertext/raw", &with_mode(0, &blob));
    write("seeds/ciphertext/checksum-fixed", &with_mode(1, &blob));
    write(
        "seeds/ciphertext/xor-zero",
        &with_mode(2, &vec![0; blob.len()]),
    );

    // Key policies: the README's worked examples and the default policy.
    let readme = include_str!("../../README.md");
    let examples: Vec<&str> = readme
        .split("```json")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("RootAdministers"))
        .collect();
    assert_eq!(examples.len(), 3, "README worked examples");
    for (i, example) in examples.iter().enumerate() {
        write(
            &format!("seeds/key_policy/readme-example-{}.json", i + 1),
            example.as_bytes(),
        );
    }
    write(
        "seeds/key_policy/default.json",
        kmsd::policy::default_policy_text(1000).as_bytes(),
    );

    // Audit: the known trail behind each mode.
    let trail = kmsd_fuzz::known_trail();
    for mode in 0..3u8 {
        write(
            &format!("seeds/audit_verify/trail-mode{mode}"),
            &with_mode(mode, &trail),
        );
    }
}
