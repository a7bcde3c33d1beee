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

/// Shorthand for a validation error naming a field and its value.
pub fn invalid(field: &str, value: impl std::fmt::Display, rule: &str) -> ServiceError {
    ServiceError::Validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {rule}"
    ))
}

/// A required parameter was absent.
pub fn missing(field: &str) -> ServiceError {
    ServiceError::Validation(format!(
        "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
    ))
}
