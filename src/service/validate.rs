//! Parameter bounds from the AWS KMS API reference (docs.aws.amazon.com/kms/latest/APIReference),
//! checked in one place so that every error names the field and the bad value.

use super::error::{invalid, missing, ServiceError};
use crate::crypto::EncryptionContext;

/// Encrypt/GenerateDataKey Plaintext: 1–4096 bytes (API reference, Encrypt).
pub const MAX_PLAINTEXT: usize = 4096;
/// CiphertextBlob: 1–6144 bytes (API reference, Decrypt).
pub const MAX_CIPHERTEXT: usize = 6144;
/// Description: 0–8192 characters (API reference, CreateKey).
pub const MAX_DESCRIPTION: usize = 8192;
/// GrantTokens: at most 10 (API reference, Encrypt).
pub const MAX_GRANT_TOKENS: usize = 10;

/// A required parameter.
pub fn required<'a, T>(field: &str, value: &'a Option<T>) -> Result<&'a T, ServiceError> {
    value.as_ref().ok_or_else(|| missing(field))
}

/// A required KeyId-like string parameter.
pub fn required_key_id<'a>(
    field: &str,
    value: &'a Option<String>,
) -> Result<&'a str, ServiceError> {
    let value = required(field, value)?;
    if value.is_empty() || value.len() > 2048 {
        return Err(key_id_length(field, value));
    }
    Ok(value)
}

pub fn key_id_length(field: &str, value: &str) -> ServiceError {
    invalid(field, value, "Member must have length between 1 and 2048")
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
        Some(v) => Err(invalid(
            field,
            v,
            &format!("Member must have value between {min} and {max}"),
        )),
    }
}

/// The only encryption algorithm of symmetric keys.
pub fn symmetric_algorithm(field: &str, value: &Option<String>) -> Result<(), ServiceError> {
    match value.as_deref() {
        None | Some("SYMMETRIC_DEFAULT") => Ok(()),
        Some(other @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => {
            Err(ServiceError::InvalidKeyUsage(format!(
                "{field} '{other}' is not valid for a SYMMETRIC_DEFAULT key; use SYMMETRIC_DEFAULT"
            )))
        }
        Some(other) => Err(invalid(
            field,
            other,
            "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
}

/// GrantTokens: at most 10, each 1–8192 characters (whether each names a live grant is
/// checked by `Kms::check_grant_tokens`).
pub fn grant_tokens(value: &Option<Vec<String>>) -> Result<(), ServiceError> {
    let Some(tokens) = value else { return Ok(()) };
    if tokens.len() > MAX_GRANT_TOKENS {
        return Err(invalid(
            "GrantTokens",
            format!("{} tokens", tokens.len()),
            "Member must have length less than or equal to 10",
        ));
    }
    if let Some(bad) = tokens.iter().find(|t| t.is_empty() || t.len() > 8192) {
        return Err(invalid(
            "GrantTokens",
            format!("a token of {} characters", bad.len()),
            "Member must have length between 1 and 8192",
        ));
    }
    Ok(())
}

/// EncryptionContext: keys must be non-empty, values may be empty (as in AWS). Keys and
/// values together are capped at 8 KiB, so a request cannot make the AAD arbitrarily large
/// (the request body limit bounds it anyway).
pub fn encryption_context(field: &str, context: &EncryptionContext) -> Result<(), ServiceError> {
    if context.keys().any(|k| k.is_empty()) {
        return Err(invalid(
            field,
            "\"\"",
            "encryption context keys must not be empty",
        ));
    }
    let size: usize = context.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > 8192 {
        return Err(invalid(
            field,
            format!("{size} bytes of keys and values"),
            "the encryption context must not exceed 8192 bytes",
        ));
    }
    Ok(())
}

/// Description: 0–8192 characters.
pub fn description(value: &str) -> Result<(), ServiceError> {
    let chars = value.chars().count();
    if chars > MAX_DESCRIPTION {
        return Err(invalid(
            "Description",
            format!("{chars} characters"),
            "Member must have length less than or equal to 8192",
        ));
    }
    Ok(())
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
                    assert!(text.contains("PendingWindowInDays"), "{text}");
                    assert!(text.contains(&input.unwrap().to_string()), "{text}");
                }
                (got, expected) => panic!("{input:?}: {got:?} vs {expected:?}"),
            }
        }
    }

    #[test]
    fn algorithms() {
        assert!(symmetric_algorithm("EncryptionAlgorithm", &None).is_ok());
        assert!(
            symmetric_algorithm("EncryptionAlgorithm", &Some("SYMMETRIC_DEFAULT".into())).is_ok()
        );
        assert!(matches!(
            symmetric_algorithm("EncryptionAlgorithm", &Some("RSAES_OAEP_SHA_1".into())),
            Err(ServiceError::InvalidKeyUsage(_))
        ));
        assert!(matches!(
            symmetric_algorithm("EncryptionAlgorithm", &Some("AES".into())),
            Err(ServiceError::Validation(_))
        ));
    }
}
