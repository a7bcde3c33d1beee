//! Binary fields of the protocol (plaintexts, ciphertext blobs, data keys), carried as
//! base64 strings on the wire and zeroized in memory when dropped.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Bytes that are base64 in JSON. Debug never prints the content, only the length.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Blob(pub Zeroizing<Vec<u8>>);

impl Blob {
    /// Takes ownership of the bytes (they are zeroized when the blob is dropped).
    pub fn new(bytes: Vec<u8>) -> Self {
        Blob(Zeroizing::new(bytes))
    }

    /// The decoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length of the decoded bytes (what the AWS size bounds apply to).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for a zero-length blob.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STANDARD.encode(self.0.as_slice()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        STANDARD
            .decode(text.trim().as_bytes())
            .map(Blob::new)
            // The value may be secret: describe it, never echo it.
            .map_err(|err| {
                serde::de::Error::custom(format!(
                    "not valid base64 ({err}); binary fields must be standard base64"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        let blob: Blob = serde_json::from_str("\"aGVsbG8=\"").unwrap();
        assert_eq!(blob.as_bytes(), b"hello");
        assert_eq!(serde_json::to_string(&blob).unwrap(), "\"aGVsbG8=\"");
        let err = serde_json::from_str::<Blob>("\"secret!!\"").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        assert_eq!(format!("{blob:?}"), "Blob(5 bytes)");
    }
}
