//! Typed values of the top-level settings: each is parsed once, from its text in the config
//! file (or the command line), and cannot hold an invalid value afterwards. Each type
//! serializes back to the text the file uses, so a serialized [`super::Config`] is a
//! valid config file.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Why a text is not a valid value (the caller names the field and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidValue {
    /// Why the text is refused.
    pub reason: String,
}

impl InvalidValue {
    fn new(reason: impl Into<String>) -> InvalidValue {
        InvalidValue {
            reason: reason.into(),
        }
    }
}

/// Serializes through `Display` (the text the config file uses).
macro_rules! serialize_as_text {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

/// Permission bits of the socket file, written in octal (`"0660"`, `"660"` or `"0o660"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(u32);

impl SocketMode {
    /// rw for the owner and the group: the default.
    pub const DEFAULT: SocketMode = SocketMode(0o660);

    /// The permission bits (at most 0o777).
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl Default for SocketMode {
    fn default() -> Self {
        SocketMode::DEFAULT
    }
}

impl FromStr for SocketMode {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<SocketMode, InvalidValue> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(InvalidValue::new("must be an octal mode such as \"0660\""));
        }
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .map(SocketMode)
            .ok_or_else(|| InvalidValue::new("must be a permission mode from \"0000\" to \"0777\""))
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}
serialize_as_text!(SocketMode);

/// The region part of ARNs: letters, digits and '-'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region(String);

impl Region {
    /// The region as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Region {
    fn default() -> Self {
        Region("local".to_string())
    }
}

impl FromStr for Region {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Region, InvalidValue> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(InvalidValue::new("must be letters, digits and '-'"));
        }
        Ok(Region(text.to_string()))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_text!(Region);

/// The account part of ARNs: 12 decimal digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountId(String);

impl AccountId {
    /// The account id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AccountId {
    fn default() -> Self {
        AccountId("000000000000".to_string())
    }
}

impl FromStr for AccountId {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<AccountId, InvalidValue> {
        if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidValue::new("must be 12 decimal digits"));
        }
        Ok(AccountId(text.to_string()))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_text!(AccountId);

/// A `tracing` filter (`"info"`, `"info,kmsd::server=debug"` ...), checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(String);

impl LogFilter {
    /// The filter directive as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogFilter {
    fn default() -> Self {
        LogFilter("info".to_string())
    }
}

impl FromStr for LogFilter {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<LogFilter, InvalidValue> {
        tracing_subscriber::EnvFilter::try_new(text)
            .map_err(|err| InvalidValue::new(err.to_string()))?;
        Ok(LogFilter(text.to_string()))
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
serialize_as_text!(LogFilter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_modes() {
        for (text, bits) in [("0660", 0o660), ("660", 0o660), ("0o600", 0o600), ("0", 0)] {
            assert_eq!(text.parse::<SocketMode>().unwrap().bits(), bits, "{text}");
        }
        for text in ["", "999", "0o", "1000", "-1", "0x1f", "06 60", "rw-rw----"] {
            assert!(text.parse::<SocketMode>().is_err(), "{text}");
        }
        assert_eq!(SocketMode::DEFAULT.to_string(), "0660");
        assert_eq!("0o7".parse::<SocketMode>().unwrap().to_string(), "0007");
        // The defaults are valid values.
        assert_eq!(
            SocketMode::default().to_string().parse(),
            Ok(SocketMode::default())
        );
        assert_eq!(Region::default().to_string().parse(), Ok(Region::default()));
        assert_eq!(
            AccountId::default().to_string().parse(),
            Ok(AccountId::default())
        );
        assert_eq!(
            LogFilter::default().to_string().parse(),
            Ok(LogFilter::default())
        );
    }

    #[test]
    fn arn_parts_and_filters() {
        assert!("eu-west-1".parse::<Region>().is_ok());
        assert!("a b".parse::<Region>().is_err());
        assert!("".parse::<Region>().is_err());
        assert!("123456789012".parse::<AccountId>().is_ok());
        assert!("12345678901a".parse::<AccountId>().is_err());
        assert!("12".parse::<AccountId>().is_err());
        assert!("info,kmsd=debug".parse::<LogFilter>().is_ok());
        assert!("kmsd=loud".parse::<LogFilter>().is_err());
    }
}
