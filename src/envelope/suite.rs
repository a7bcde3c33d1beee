//! The algorithm suites kmsd writes and reads: the two committing suites of message format
//! version 2. Every other suite id is known only to name it in a refusal.

use super::EnvelopeError;

/// A committing algorithm suite (AWS Encryption SDK "Supported algorithm suites").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AlgorithmSuite {
    /// 0x0578, `AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384`: AES-256-GCM, HKDF-SHA512 key
    /// derivation with key commitment, an ECDSA P-384 (SHA-384) signature over the message.
    /// The default, as in the AWS Encryption SDKs.
    #[default]
    CommitKeyEcdsaP384,
    /// 0x0478, `AES_256_GCM_HKDF_SHA512_COMMIT_KEY`: the same without the signature.
    CommitKey,
}

/// The suite ids of message format version 1 (none commits to the key).
const NON_COMMITTING: [u16; 9] = [
    0x0014, 0x0046, 0x0078, 0x0114, 0x0146, 0x0178, 0x0214, 0x0346, 0x0378,
];

impl AlgorithmSuite {
    /// The suite's id as written in the header.
    pub const fn id(self) -> u16 {
        match self {
            AlgorithmSuite::CommitKeyEcdsaP384 => 0x0578,
            AlgorithmSuite::CommitKey => 0x0478,
        }
    }

    /// The suite of an id, or why it is refused.
    pub fn from_id(id: u16) -> Result<AlgorithmSuite, EnvelopeError> {
        match id {
            0x0578 => Ok(AlgorithmSuite::CommitKeyEcdsaP384),
            0x0478 => Ok(AlgorithmSuite::CommitKey),
            other if NON_COMMITTING.contains(&other) => {
                Err(EnvelopeError::NonCommittingSuite(other))
            }
            other => Err(EnvelopeError::UnknownSuite(other)),
        }
    }

    /// Parses `0x0578`, `0578`, `578` or the AWS name.
    pub fn parse(text: &str) -> Result<AlgorithmSuite, EnvelopeError> {
        let named = match text {
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384" => {
                Some(AlgorithmSuite::CommitKeyEcdsaP384)
            }
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY" => Some(AlgorithmSuite::CommitKey),
            _ => None,
        };
        if let Some(suite) = named {
            return Ok(suite);
        }
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        let id = u16::from_str_radix(hex, 16).map_err(|_| {
            EnvelopeError::InvalidOption(format!(
                "algorithm '{text}' is not a suite id (0x0578 or 0x0478)"
            ))
        })?;
        AlgorithmSuite::from_id(id)
    }

    /// The AWS name of the suite.
    pub const fn name(self) -> &'static str {
        match self {
            AlgorithmSuite::CommitKeyEcdsaP384 => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
            AlgorithmSuite::CommitKey => "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        }
    }

    /// True when the message ends with an ECDSA P-384 signature.
    pub const fn is_signed(self) -> bool {
        matches!(self, AlgorithmSuite::CommitKeyEcdsaP384)
    }
}

impl std::fmt::Display for AlgorithmSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04x} ({})", self.id(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let cases: &[(&str, Option<AlgorithmSuite>)] = &[
            ("0x0578", Some(AlgorithmSuite::CommitKeyEcdsaP384)),
            ("0578", Some(AlgorithmSuite::CommitKeyEcdsaP384)),
            ("0x478", Some(AlgorithmSuite::CommitKey)),
            (
                "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
                Some(AlgorithmSuite::CommitKey),
            ),
            ("0x0378", None),
            ("0x0014", None),
            ("0x9999", None),
            ("zz", None),
        ];
        for (text, expected) in cases {
            assert_eq!(AlgorithmSuite::parse(text).ok(), *expected, "{text}");
        }
        for suite in [
            AlgorithmSuite::CommitKey,
            AlgorithmSuite::CommitKeyEcdsaP384,
        ] {
            assert_eq!(AlgorithmSuite::from_id(suite.id()).ok(), Some(suite));
        }
        assert!(matches!(
            AlgorithmSuite::from_id(0x0378),
            Err(EnvelopeError::NonCommittingSuite(0x0378))
        ));
        assert!(matches!(
            AlgorithmSuite::from_id(0x1234),
            Err(EnvelopeError::UnknownSuite(0x1234))
        ));
    }
}
