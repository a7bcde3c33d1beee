//! Parameter bounds from the AWS KMS API reference (docs.aws.amazon.com/kms/latest/APIReference),
//! checked in one place so that every error names the field and the bad value.

use super::error::{
    invalid, invalid_hidden, length_rule, max_length_rule, min_length_rule, missing, value_rule,
    ServiceError,
};
use crate::crypto::EncryptionContext;

/// Encrypt/GenerateDataKey Plaintext: 1–4096 bytes (API reference, Encrypt).
pub const MAX_PLAINTEXT: usize = 4096;
/// CiphertextBlob: 1–6144 bytes (API reference, Decrypt).
pub const MAX_CIPHERTEXT: usize = 6144;
/// Description: 0–8192 characters (API reference, CreateKey).
pub const MAX_DESCRIPTION: usize = 8192;
/// GrantTokens: at most 10 (API reference, Encrypt).
pub const MAX_GRANT_TOKENS: usize = 10;

/// KeyId and the other KeyId-like parameters: 1–2048 characters (API reference).
pub const MAX_KEY_ID: usize = 2048;
/// Marker: 1–1024 characters (API reference, ListKeys).
pub const MAX_MARKER: usize = 1024;
/// GrantToken: 1–8192 characters (API reference, RetireGrant).
pub const MAX_GRANT_TOKEN: usize = 8192;
/// GrantId: 1–128 characters (API reference, RevokeGrant).
pub const MAX_GRANT_ID: usize = 128;
/// GranteePrincipal, RetiringPrincipal: 1–256 characters (API reference, CreateGrant).
pub const MAX_PRINCIPAL: usize = 256;

/// A required parameter.
pub fn required<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T, ServiceError> {
    value.as_ref().ok_or_else(|| missing(field))
}

/// A required KeyId-like string parameter (1–2048 characters).
pub fn required_key_id<'a>(
    field: &str,
    value: &'a Option<String>,
) -> Result<&'a str, ServiceError> {
    let value = required(field, value)?;
    length(field, value, 1, MAX_KEY_ID)?;
    Ok(value)
}

/// The error of a KeyId-like parameter whose length is outside 1–2048.
pub fn key_id_length(field: &str, value: &str) -> ServiceError {
    invalid(
        field,
        value,
        &length_rule(value.chars().count(), 1, MAX_KEY_ID),
    )
}

/// A string parameter of `min..=max` characters; the error echoes the value (use
/// [`hidden_length`] for values that must not be echoed).
pub fn length(field: &str, value: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    let len = value.chars().count();
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(invalid(field, value, &length_rule(len, min, max)))
    }
}

/// A parameter of `min..=max` bytes whose value is never echoed (plaintext, ciphertext,
/// policy documents): AWS's form without the value.
pub fn hidden_length(field: &str, len: usize, min: usize, max: usize) -> Result<(), ServiceError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(invalid_hidden(field, &length_rule(len, min, max)))
    }
}

/// An optional integer with inclusive bounds and a default.
pub fn int_in_range(
    field: &str,
    value: Option<i64>,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, ServiceError> {
    match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(invalid(field, v, &value_rule(v, min, max))),
    }
}

/// A pagination Marker, when given: 1–1024 characters (API reference, ListKeys).
pub fn marker(value: Option<&str>) -> Result<(), ServiceError> {
    match value {
        Some(m) => length("Marker", m, 1, MAX_MARKER),
        None => Ok(()),
    }
}

/// EncryptionAlgorithm (and its Source/Destination forms): SYMMETRIC_DEFAULT when absent;
/// SM2PKE (AWS China regions only) is UnsupportedOperationException.
pub fn encryption_algorithm(
    field: &str,
    value: &Option<String>,
) -> Result<crate::crypto::keyspec::EncryptionAlgorithm, ServiceError> {
    use crate::crypto::keyspec::EncryptionAlgorithm;
    match value.as_deref() {
        None => Ok(EncryptionAlgorithm::SymmetricDefault),
        Some("SM2PKE") => Err(ServiceError::UnsupportedOperation(format!(
            "{field} 'SM2PKE' is offered by AWS only in its China regions; kmsd does not support it"
        ))),
        Some(text) => EncryptionAlgorithm::parse(text).ok_or_else(|| {
            invalid(
                field,
                text,
                "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
            )
        }),
    }
}

/// GrantTokens: at most 10, each 1–8192 characters (whether each names a live grant is
/// checked by `Kms::check_grant_tokens`). The list is echoed as AWS does (`[a, b]`); grant
/// tokens are logged request parameters, not secrets.
pub fn grant_tokens(value: &Option<Vec<String>>) -> Result<(), ServiceError> {
    let Some(tokens) = value else { return Ok(()) };
    let shown = || format!("[{}]", tokens.join(", "));
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(invalid(
            "GrantTokens",
            shown(),
            &max_length_rule(MAX_GRANT_TOKENS),
        ));
    }
    if tokens
        .iter()
        .any(|t| t.is_empty() || t.chars().count() > MAX_GRANT_TOKEN)
    {
        return Err(invalid(
            "GrantTokens",
            shown(),
            &format!(
                "Member must satisfy constraint: [{}, {}]",
                max_length_rule(MAX_GRANT_TOKEN),
                min_length_rule(1)
            ),
        ));
    }
    Ok(())
}

/// EncryptionContext: keys must be non-empty, values may be empty (as in AWS). Keys and
/// values together are capped at 8 KiB, so a request cannot make the AAD arbitrarily large
/// (the request body limit bounds it anyway). The context is not secret (AWS logs it).
pub fn encryption_context(field: &str, context: &EncryptionContext) -> Result<(), ServiceError> {
    if context.keys().any(|k| k.is_empty()) {
        return Err(invalid(
            field,
            "",
            "Member must have keys of length greater than or equal to 1",
        ));
    }
    let size: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 8192 {
        return Err(invalid_hidden(
            field,
            &format!("Member must have keys and values of at most 8192 bytes in all (has {size})"),
        ));
    }
    Ok(())
}

/// Description: 0–8192 characters.
pub fn description(value: &str) -> Result<(), ServiceError> {
    length("Description", value, 0, MAX_DESCRIPTION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let cases: &[(Option<i64>, Result<i64, ()>)] = &[
            (None, Ok(30)),
            (Some(7), Ok(7)),
            (Some(30), Ok(30)),
            (Some(6), Err(())),
            (Some(31), Err(())),
            (Some(-1), Err(())),
        ];
        for (input, expected) in cases {
            let got = int_in_range("PendingWindowInDays", *input, 7, 30, 30);
            match (got, expected) {
                (Ok(v), Ok(e)) => assert_eq!(v, *e),
                (Err(err), Err(())) => {
                    let text = err.to_string();
                    assert!(text.contains("'pendingWindowInDays'"), "{text}");
                    assert!(text.contains(&input.unwrap().to_string()), "{text}");
                }
                (got, expected) => panic!("{input:?}: {got:?} vs {expected:?}"),
            }
        }
    }

    /// Every helper speaks AWS's one message form, with AWS's field names.
    #[test]
    fn message_form() {
        let v = |e: Result<(), ServiceError>| match e {
            Err(ServiceError::Validation(message)) => message,
            other => panic!("not a ValidationException: {other:?}"),
        };
        let long_key = "k".repeat(2049);
        let cases: Vec<(String, String)> = vec![
            (
                v(int_in_range("NumberOfBytes", Some(0), 1, 1024, 32).map(|_| ())),
                "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
            ),
            (
                v(int_in_range("NumberOfBytes", Some(1025), 1, 1024, 32).map(|_| ())),
                "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024".into(),
            ),
            (
                v(int_in_range("PendingWindowInDays", Some(3), 7, 30, 30).map(|_| ())),
                "1 validation error detected: Value '3' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value greater than or equal to 7".into(),
            ),
            (
                v(int_in_range("Limit", Some(0), 1, 1000, 100).map(|_| ())),
                "1 validation error detected: Value '0' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1".into(),
            ),
            (
                v(required_key_id("KeyId", &Some(String::new())).map(|_| ())),
                "1 validation error detected: Value '' at 'keyId' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ),
            (
                v(required_key_id("KeyId", &Some(long_key.clone())).map(|_| ())),
                format!("1 validation error detected: Value '{long_key}' at 'keyId' failed to satisfy constraint: Member must have length less than or equal to 2048"),
            ),
            (
                v(required_key_id("KeyId", &None).map(|_| ())),
                "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null".into(),
            ),
            (
                v(hidden_length("Plaintext", 0, 1, MAX_PLAINTEXT)),
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ),
            (
                v(hidden_length("Plaintext", 4097, 1, MAX_PLAINTEXT)),
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096".into(),
            ),
            (
                v(marker(Some(""))),
                "1 validation error detected: Value '' at 'marker' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ),
            (
                v(description(&"d".repeat(8193))),
                format!("1 validation error detected: Value '{}' at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192", "d".repeat(8193)),
            ),
            (
                v(length("Constraints.EncryptionContextEquals", "", 1, 2)),
                "1 validation error detected: Value '' at 'constraints.encryptionContextEquals' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ),
            (
                v(grant_tokens(&Some(vec![String::new()]))),
                "1 validation error detected: Value '[]' at 'grantTokens' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 8192, Member must have length greater than or equal to 1]".into(),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert!(description("").is_ok());
        assert!(marker(None).is_ok());
        assert!(length("GrantId", &"g".repeat(128), 1, MAX_GRANT_ID).is_ok());
    }

    #[test]
    fn algorithms() {
        use crate::crypto::keyspec::EncryptionAlgorithm as A;
        let cases: &[(Option<&str>, Result<A, &str>)] = &[
            (None, Ok(A::SymmetricDefault)),
            (Some("SYMMETRIC_DEFAULT"), Ok(A::SymmetricDefault)),
            (Some("RSAES_OAEP_SHA_1"), Ok(A::RsaesOaepSha1)),
            (Some("RSAES_OAEP_SHA_256"), Ok(A::RsaesOaepSha256)),
            (Some("SM2PKE"), Err("China regions")),
            (Some("AES"), Err("enum value set")),
        ];
        for (value, expected) in cases {
            let got = encryption_algorithm("EncryptionAlgorithm", &value.map(String::from));
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, *expected),
                (Err(err), Err(needle)) => assert!(err.to_string().contains(needle), "{err}"),
                (got, expected) => panic!("{value:?}: {got:?}, expected {expected:?}"),
            }
        }
    }
}
