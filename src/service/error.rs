//! The error enum of the service layer. Each variant is one AWS exception; the HTTP layer
//! turns variants into exception names. Messages never contain secrets.

/// What went wrong in an operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    /// A parameter is missing or out of bounds; the message names the field and the value.
    #[error("{0}")]
    Validation(String),
    /// No such key, alias or grant (`NotFoundException`).
    #[error("{0}")]
    NotFound(String),
    /// The key is disabled (`DisabledException`).
    #[error("{0}")]
    Disabled(String),
    /// The key state does not allow the operation (`KMSInvalidStateException`).
    #[error("{0}")]
    InvalidState(String),
    /// The blob is not a kmsd ciphertext or fails authentication (`InvalidCiphertextException`).
    #[error("the ciphertext is invalid, corrupted, or its encryption context does not match")]
    InvalidCiphertext,
    /// The ciphertext was made under another key than the one named (`IncorrectKeyException`).
    #[error("{0}")]
    IncorrectKey(String),
    /// Neither policy, grant nor daemon access allows the call (`AccessDeniedException`).
    #[error("{0}")]
    AccessDenied(String),
    /// The alias or grant name is taken (`AlreadyExistsException`).
    #[error("{0}")]
    AlreadyExists(String),
    /// A per-key or per-host limit is reached (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// The alias name uses the reserved `alias/aws/` prefix (`InvalidAliasNameException`).
    #[error("{0}")]
    InvalidAliasName(String),
    /// The pagination marker is not one kmsd returned (`InvalidMarkerException`).
    #[error("{0}")]
    InvalidMarker(String),
    /// A KeyId ARN names neither a key nor an alias (`InvalidArnException`).
    #[error("{0}")]
    InvalidArn(String),
    /// The signature does not verify (`KMSInvalidSignatureException`).
    #[error("the signature is not valid for this message, key and signing algorithm")]
    InvalidSignature,
    /// The MAC does not verify (`KMSInvalidMacException`).
    #[error("the MAC is not valid for this message, key and MAC algorithm")]
    InvalidMac,
    /// The key's key store cannot use it now (`KeyUnavailableException`): the TPM of a
    /// TPM-resident key is down or refused.
    #[error("{0}")]
    KeyUnavailable(String),
    /// No such custom key store (`CustomKeyStoreNotFoundException`).
    #[error("{0}")]
    CustomKeyStoreNotFound(String),
    /// The key cannot be used for this operation (`InvalidKeyUsageException`).
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// A tag is malformed or too many are given (`TagException`).
    #[error("{0}")]
    Tag(String),
    /// The operation or option is not supported by kmsd (`UnsupportedOperationException`).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The key policy does not parse or is not allowed (`MalformedPolicyDocumentException`).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// The grant token is malformed or names no live grant (`InvalidGrantTokenException`).
    #[error("{0}")]
    InvalidGrantToken(String),
    /// No such grant on the key (`InvalidGrantIdException`).
    #[error("{0}")]
    InvalidGrantId(String),
    /// The import token is not the key's current one (`InvalidImportTokenException`).
    #[error("{0}")]
    InvalidImportToken(String),
    /// The import token's 24 hours have passed (`ExpiredImportTokenException`).
    #[error("{0}")]
    ExpiredImportToken(String),
    /// The imported material is invalid for the key, or not the material imported before
    /// (`IncorrectKeyMaterialException`).
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// DryRun was set and the request would have succeeded (`DryRunOperationException`).
    #[error("the request would have succeeded, but DryRun was set")]
    DryRun,
    /// The audit trail cannot record the change, so it was not made (fail closed); the
    /// reason goes to the log, not to the client.
    #[error("the request was refused because kmsd cannot write its audit trail (fail closed); the operator must check the kmsd log and the audit directory")]
    AuditUnavailable(String),
    /// A fault of the daemon; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::keystore::StoreError> for ServiceError {
    fn from(err: crate::keystore::StoreError) -> Self {
        tracing::error!(error = %err, "key database failure");
        ServiceError::Internal("the key database failed; see the daemon log".into())
    }
}

impl From<crate::crypto::asymmetric::KeyOpError> for ServiceError {
    fn from(err: crate::crypto::asymmetric::KeyOpError) -> Self {
        use crate::crypto::asymmetric::KeyOpError;
        match err {
            KeyOpError::WrongAlgorithm { .. } => ServiceError::InvalidKeyUsage(err.to_string()),
            KeyOpError::DigestLength { .. } | KeyOpError::MessageType { .. } => {
                ServiceError::Validation(err.to_string())
            }
            other => {
                tracing::error!(error = %other, "asymmetric key operation failed");
                ServiceError::Internal(format!("{other}; see the daemon log"))
            }
        }
    }
}

impl From<crate::crypto::CryptoError> for ServiceError {
    fn from(err: crate::crypto::CryptoError) -> Self {
        match err {
            crate::crypto::CryptoError::InvalidCiphertext => ServiceError::InvalidCiphertext,
            other => {
                tracing::error!(error = %other, "crypto failure");
                ServiceError::Internal(
                    "a cryptographic operation failed; see the daemon log".into(),
                )
            }
        }
    }
}

/// AWS's name of a request field in validation messages: lowerCamelCase, each part of a
/// dotted path (`Constraints.EncryptionContextEquals` → `constraints.encryptionContextEquals`).
pub fn aws_field(field: &str) -> String {
    field
        .split('.')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(".")
}

/// A validation error in AWS's form, naming the field (as AWS writes it) and the value:
/// `1 validation error detected: Value '<value>' at '<field>' failed to satisfy
/// constraint: <rule>`. `rule` starts with `Member must`.
pub fn invalid(field: &str, value: impl std::fmt::Display, rule: &str) -> ServiceError {
    ServiceError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: {rule}",
        aws_field(field)
    ))
}

/// A validation error of a field whose value must not be echoed (plaintext, ciphertext,
/// policies): AWS's form without the value, `Value at '<field>' failed to satisfy ...`.
pub fn invalid_hidden(field: &str, rule: &str) -> ServiceError {
    ServiceError::Validation(format!(
        "1 validation error detected: Value at '{}' failed to satisfy constraint: {rule}",
        aws_field(field)
    ))
}

/// A required parameter was absent: `Value null at '<field>' ... Member must not be null`.
pub fn missing(field: &str) -> ServiceError {
    ServiceError::Validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
        aws_field(field)
    ))
}

/// The constraint of a length below `min`.
pub fn min_length_rule(min: usize) -> String {
    format!("Member must have length greater than or equal to {min}")
}

/// The constraint of a length above `max`.
pub fn max_length_rule(max: usize) -> String {
    format!("Member must have length less than or equal to {max}")
}

/// The constraint a length outside `min..=max` breaks (the lower bound when below it).
pub fn length_rule(len: usize, min: usize, max: usize) -> String {
    if len < min {
        min_length_rule(min)
    } else {
        max_length_rule(max)
    }
}

/// The constraint a number outside `min..=max` breaks (the lower bound when below it).
pub fn value_rule(value: i64, min: i64, max: i64) -> String {
    if value < min {
        format!("Member must have value greater than or equal to {min}")
    } else {
        format!("Member must have value less than or equal to {max}")
    }
}
