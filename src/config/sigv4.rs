//! The `[sigv4]` table: access key ids that kmsd verifies SigV4 signatures for on its
//! loopback TCP endpoint, each with the file holding its secret and the Unix uid it stands
//! for. `crate::server::sigv4` decides requests with the loaded keys.
//!
//! The config file (0644 in the package) names only the secret's file, never the secret:
//! [`SigV4Section::load_keys`] reads each file once, at start-up (the table is restart-only,
//! so a changed secret file takes a restart, like a changed table). A secret file must be
//! owned by kmsd's user or root and be neither readable nor writable by group or others.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Longest access key id accepted (AWS's are 20 characters; the SDKs send any text).
pub const MAX_ACCESS_KEY_ID_LEN: usize = 128;
/// Longest secret accepted (AWS's are 40 characters).
pub const MAX_SECRET_LEN: usize = 256;

/// The `[sigv4]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SigV4Section {
    /// `false` (the default): a request signed with a configured access key id must verify,
    /// any other access key id is accepted on the header's shape when the kernel names the
    /// caller. `true`: every request over TCP must be signed with a configured key.
    pub verify_all: bool,
    /// The `[[sigv4.credentials]]` entries.
    pub credentials: Vec<SigV4CredentialEntry>,
}

/// One `[[sigv4.credentials]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4CredentialEntry {
    /// The access key id clients send (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Absolute path of the file holding the secret access key (one line).
    pub secret_file: PathBuf,
    /// The Unix uid a request signed with this key is made as.
    pub uid: u32,
}

/// A secret access key: zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretAccessKey(Zeroizing<String>);

impl SecretAccessKey {
    /// Wraps a secret (the caller checked its form; tests use AWS's example secret).
    pub fn new(secret: String) -> SecretAccessKey {
        SecretAccessKey(Zeroizing::new(secret))
    }

    /// The secret's text, for deriving a signing key.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretAccessKey(<redacted>)")
    }
}

/// One configured key with its secret read from its file.
#[derive(Debug, Clone)]
pub struct SigV4Key {
    /// The access key id.
    pub access_key_id: String,
    /// The uid it stands for.
    pub uid: u32,
    /// The secret access key.
    pub secret: SecretAccessKey,
}

/// The `[sigv4]` table with every secret loaded: what `crate::server::sigv4` is built from.
#[derive(Debug, Clone, Default)]
pub struct SigV4Keys {
    /// See [`SigV4Section::verify_all`].
    pub verify_all: bool,
    /// The keys, in the file's order.
    pub keys: Vec<SigV4Key>,
}

/// Whether `id` is an acceptable access key id: 1 to 128 of `A-Z a-z 0-9 - _ .` (no `/`,
/// which separates the credential scope, no space, comma or `=`).
fn access_key_id_is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ACCESS_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SigV4Section {
    /// Checks the entries: well-formed, unique access key ids, absolute secret paths, and
    /// at least one key when `verify_all` is set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.verify_all && self.credentials.is_empty() {
            return Err(ConfigError::Invalid {
                field: "sigv4.verify_all",
                value: "true".into(),
                reason: "needs at least one [[sigv4.credentials]] entry (no request could be \
                         signed)"
                    .into(),
            });
        }
        let mut seen = HashSet::new();
        for entry in &self.credentials {
            if !access_key_id_is_valid(&entry.access_key_id) {
                return Err(ConfigError::Invalid {
                    field: "sigv4.credentials.access_key_id",
                    value: entry.access_key_id.clone(),
                    reason: format!(
                        "must be 1 to {MAX_ACCESS_KEY_ID_LEN} of A-Z, a-z, 0-9, '-', '_', '.'"
                    ),
                });
            }
            if !seen.insert(entry.access_key_id.as_str()) {
                return Err(ConfigError::Invalid {
                    field: "sigv4.credentials.access_key_id",
                    value: entry.access_key_id.clone(),
                    reason: "appears twice".into(),
                });
            }
            if !entry.secret_file.is_absolute() {
                return Err(ConfigError::Invalid {
                    field: "sigv4.credentials.secret_file",
                    value: entry.secret_file.display().to_string(),
                    reason: "must be an absolute path".into(),
                });
            }
        }
        Ok(())
    }

    /// Reads every entry's secret file (see the module documentation for what a secret file
    /// must look like). The error names the file, never its content.
    pub fn load_keys(&self) -> Result<SigV4Keys, ConfigError> {
        self.validate()?;
        let euid = rustix::process::geteuid().as_raw();
        let mut keys = Vec::with_capacity(self.credentials.len());
        for entry in &self.credentials {
            let secret = read_secret_file(&entry.secret_file, euid)?;
            keys.push(SigV4Key {
                access_key_id: entry.access_key_id.clone(),
                uid: entry.uid,
                secret,
            });
        }
        Ok(SigV4Keys {
            verify_all: self.verify_all,
            keys,
        })
    }
}

/// Reads one secret file owned by `euid` or root, with no group or other permission bits.
fn read_secret_file(path: &Path, euid: u32) -> Result<SecretAccessKey, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        field: "sigv4.credentials.secret_file",
        value: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|err| invalid(format!("cannot open: {err}")))?;
    let meta = file
        .metadata()
        .map_err(|err| invalid(format!("cannot stat: {err}")))?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".into()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(invalid(format!(
            "has mode {:04o}: a secret file must not be accessible to group or others \
             (chmod 600)",
            meta.mode() & 0o7777
        )));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(invalid(format!(
            "is owned by uid {}: a secret file must be owned by kmsd's user (uid {euid}) or root",
            meta.uid()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_LEN as u64 + 2)
        .read_to_end(&mut bytes)
        .map_err(|err| invalid(format!("cannot read: {err}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("is not UTF-8 text".into()))?;
    // One line; a trailing newline (`echo SECRET > file`) is not part of the secret.
    let secret = text.strip_suffix('\n').unwrap_or(text);
    let secret = secret.strip_suffix('\r').unwrap_or(secret);
    if secret.is_empty() {
        return Err(invalid("is empty".into()));
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(invalid(format!(
            "holds more than {MAX_SECRET_LEN} bytes (one secret access key expected)"
        )));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "the secret must be one line of printable ASCII without spaces".into(),
        ));
    }
    Ok(SecretAccessKey::new(secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(id: &str, file: &Path, uid: u32) -> SigV4CredentialEntry {
        SigV4CredentialEntry {
            access_key_id: id.into(),
            secret_file: file.to_path_buf(),
            uid,
        }
    }

    #[test]
    fn entries_are_checked() {
        let file = Path::new("/etc/kmsd/sigv4/a.secret");
        let cases: [(SigV4Section, Option<(&str, &str)>); 6] = [
            (SigV4Section::default(), None),
            (
                SigV4Section {
                    verify_all: true,
                    credentials: vec![],
                },
                Some(("sigv4.verify_all", "true")),
            ),
            (
                SigV4Section {
                    verify_all: true,
                    credentials: vec![entry("AKIDEXAMPLE", file, 1000)],
                },
                None,
            ),
            (
                SigV4Section {
                    verify_all: false,
                    credentials: vec![entry("AKID/X", file, 1000)],
                },
                Some(("sigv4.credentials.access_key_id", "AKID/X")),
            ),
            (
                SigV4Section {
                    verify_all: false,
                    credentials: vec![entry("A", file, 1), entry("A", file, 2)],
                },
                Some(("sigv4.credentials.access_key_id", "A")),
            ),
            (
                SigV4Section {
                    verify_all: false,
                    credentials: vec![entry("A", Path::new("a.secret"), 1)],
                },
                Some(("sigv4.credentials.secret_file", "a.secret")),
            ),
        ];
        for (section, expected) in cases {
            match (section.validate(), expected) {
                (Ok(()), None) => {}
                (Err(ConfigError::Invalid { field, value, .. }), Some((f, v))) => {
                    assert_eq!((field, value.as_str()), (f, v), "{section:?}");
                }
                (got, _) => panic!("{section:?}: {got:?}"),
            }
        }
        let empty_id = SigV4Section {
            verify_all: false,
            credentials: vec![entry("", file, 1)],
        };
        assert!(empty_id.validate().is_err());
    }

    #[test]
    fn secret_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let euid = rustix::process::geteuid().as_raw();
        let write = |name: &str, content: &[u8], mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let good = write("good", b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n", 0o600);
        let secret = read_secret_file(&good, euid).unwrap();
        assert_eq!(secret.expose(), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(format!("{secret:?}"), "SecretAccessKey(<redacted>)");
        let bad: [(PathBuf, &str); 5] = [
            (write("open", b"s3cr3t-value", 0o644), "mode 0644"),
            (write("group", b"s3cr3t-value", 0o640), "mode 0640"),
            (write("empty", b"\n", 0o600), "is empty"),
            (write("spaces", b"s3cr3t value\n", 0o400), "printable ASCII"),
            (dir.path().join("absent"), "cannot open"),
        ];
        for (path, needle) in bad {
            let err = read_secret_file(&path, euid).unwrap_err().to_string();
            assert!(err.contains(needle), "{}: {err}", path.display());
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        // Owned by someone else (neither kmsd's user nor root).
        let other = read_secret_file(&good, euid.wrapping_add(1));
        if euid == 0 {
            // The file is root's, which is always accepted.
            assert!(other.is_ok());
        } else {
            let err = other.unwrap_err().to_string();
            assert!(err.contains("owned by uid"), "{err}");
        }
        let section = SigV4Section {
            verify_all: false,
            credentials: vec![entry("AKIDEXAMPLE", &good, 1000)],
        };
        let keys = section.load_keys().unwrap();
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].uid, 1000);
        assert!(!format!("{keys:?}").contains("EXAMPLEKEY"));
    }
}
