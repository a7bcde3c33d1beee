//! The `[tpm]` table: how kmsd reaches the TPM and which PCRs a new root key is bound to.
//! `crate::tpm` takes these typed values ([`PcrBank`] is its bank type too).

use super::values::InvalidValue;
use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Highest PCR index of a TPM 2.0 PC client (PCRs 0 to 23).
pub const MAX_PCR: u8 = 23;

/// PCR bank (hash algorithm) used for a PCR binding. Its serde form (`"sha256"`) is also
/// the one stored in the state dir's TPM binding record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PcrBank {
    /// SHA-1 bank (older TPMs and firmware).
    Sha1,
    /// SHA-256 bank, the usual one.
    Sha256,
    /// SHA-384 bank.
    Sha384,
}

impl fmt::Display for PcrBank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PcrBank::Sha1 => "sha1",
            PcrBank::Sha256 => "sha256",
            PcrBank::Sha384 => "sha384",
        })
    }
}

impl FromStr for PcrBank {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<PcrBank, InvalidValue> {
        match text {
            "sha1" => Ok(PcrBank::Sha1),
            "sha256" => Ok(PcrBank::Sha256),
            "sha384" => Ok(PcrBank::Sha384),
            _ => Err(InvalidValue {
                reason: "must be sha1, sha256 or sha384".into(),
            }),
        }
    }
}

/// The `[tpm]` table, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmSection {
    /// TCTI string: `device:/dev/tpmrm0`, or `swtpm:host=127.0.0.1,port=2321` for a software TPM.
    pub tcti: String,
    /// PCR bank for binding the root key.
    pub pcr_bank: PcrBank,
    /// PCRs (0 to 23) the root key is bound to at initialisation. Empty (the default) means
    /// no binding.
    pub pcrs: Vec<u8>,
}

impl Default for TpmSection {
    fn default() -> Self {
        TpmSection {
            tcti: "device:/dev/tpmrm0".to_string(),
            pcr_bank: PcrBank::Sha256,
            pcrs: Vec::new(),
        }
    }
}

/// The `[tpm]` table as written in the file, before its values are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct TpmFile {
    tcti: String,
    pcr_bank: String,
    pcrs: Vec<u8>,
}

impl Default for TpmFile {
    fn default() -> Self {
        let typed = TpmSection::default();
        TpmFile {
            tcti: typed.tcti,
            pcr_bank: typed.pcr_bank.to_string(),
            pcrs: typed.pcrs,
        }
    }
}

impl TryFrom<TpmFile> for TpmSection {
    type Error = ConfigError;

    fn try_from(file: TpmFile) -> Result<TpmSection, ConfigError> {
        let pcr_bank = super::parse("tpm.pcr_bank", &file.pcr_bank)?;
        let section = TpmSection {
            tcti: file.tcti,
            pcr_bank,
            pcrs: file.pcrs,
        };
        section.validate()?;
        Ok(section)
    }
}

impl TpmSection {
    /// Checks the PCR indexes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(bad) = self.pcrs.iter().find(|pcr| **pcr > MAX_PCR) {
            return Err(ConfigError::Invalid {
                field: "tpm.pcrs",
                value: bad.to_string(),
                reason: format!("PCR indexes are 0 to {MAX_PCR}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banks_round_trip() {
        for bank in [PcrBank::Sha1, PcrBank::Sha256, PcrBank::Sha384] {
            assert_eq!(bank.to_string().parse::<PcrBank>().unwrap(), bank);
            // The serde form (stored in the state dir) is the config text.
            let json = serde_json::to_string(&bank).unwrap();
            assert_eq!(json, format!("\"{bank}\""));
        }
        assert!("SHA256".parse::<PcrBank>().is_err());
        assert!("md5".parse::<PcrBank>().is_err());
    }
}
