//! The error enum of the service layer. Each variant is one AWS exception; the HTTP layer
//! turns variants into exception names. Messages never contain secrets.

/// What went wrong in an operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServiceError {
    /// A parameter is missing or out of bounds; the message names the field and the value.
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("the ciphertext is invalid, corrupted, or its encryption context does not match")]
    InvalidCiphertext,
    #[error("{0}")]
    IncorrectKey(String),
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    InvalidAliasName(String),
    #[error("{0}")]
    InvalidMarker(String),
    #[error("{0}")]
    InvalidArn(String),
    #[error("{0}")]
    InvalidKeyUsage(String),
    #[error("{0}")]
    Tag(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidGrantToken(String),
    #[error("{0}")]
    InvalidGrantId(String),
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
