//! Authentication of the key database: a tag on every row kmsd acts on, and a MAC'd
//! manifest of every row's tag, so that a changed, swapped, deleted, resurrected or
//! rolled-back row is noticed when kmsd starts.
//!
//! * Row tag: `HMAC-SHA256(K_state, encoding)` with `K_state = HKDF(root key,
//!   "kmsd/v1/state-mac")`, stored in the row's `mac` column. The encoding is
//!   `"kmsd/v1/row\0"`, then the table name and every column of the row (primary key
//!   included, so a row cannot be moved to another key) as length-prefixed fields
//!   ([`RowEncoder`]).
//! * Manifest: the meta row `state-manifest` holds a JSON body listing, per table, every
//!   row's primary key and the first 16 bytes of its tag, and a generation number; the meta
//!   row `state-manifest-mac` holds `HMAC-SHA256(K_state, "kmsd/v1/manifest\0" || body)`.
//!   It is rewritten in the transaction of every change.
//!
//! The layout is described in `docs/state-dir.md` ("Integrity").

use crate::crypto::KeyMaterial;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

/// Meta row holding the manifest body (JSON).
pub const MANIFEST_META: &str = "state-manifest";
/// Meta row holding the hex MAC of the manifest body.
pub const MANIFEST_MAC_META: &str = "state-manifest-mac";
/// Length of the tag prefix kept in the manifest.
const MANIFEST_TAG_LEN: usize = 16;
const ROW_DOMAIN: &[u8] = b"kmsd/v1/row\0";
const MANIFEST_DOMAIN: &[u8] = b"kmsd/v1/manifest\0";

/// The key that authenticates the rows of the key database, derived from the TPM-sealed
/// root key. Zeroized on drop (it holds a [`KeyMaterial`]); never printed.
pub struct StateMac(KeyMaterial);

impl StateMac {
    /// The HKDF label of the state MAC key.
    pub const LABEL: &'static [u8] = b"kmsd/v1/state-mac";

    /// Derives the state MAC key from the root key.
    pub fn derive(root: &KeyMaterial) -> StateMac {
        StateMac(root.derive(Self::LABEL))
    }

    /// Wraps already derived material (tests).
    pub fn from_material(material: KeyMaterial) -> StateMac {
        StateMac(material)
    }

    fn hmac(&self) -> Option<Hmac<Sha256>> {
        // HMAC accepts keys of any length, so this never fails.
        Hmac::<Sha256>::new_from_slice(self.0.expose()).ok()
    }

    /// The tag of one encoded row.
    pub(crate) fn tag(&self, encoded: &[u8]) -> [u8; 32] {
        match self.hmac() {
            Some(mut mac) => {
                mac.update(encoded);
                mac.finalize().into_bytes().into()
            }
            None => [0; 32],
        }
    }

    /// Whether `tag` is the tag of `encoded` (constant time).
    pub(crate) fn check(&self, encoded: &[u8], tag: &[u8]) -> bool {
        let Some(mut mac) = self.hmac() else {
            return false;
        };
        mac.update(encoded);
        mac.verify_slice(tag).is_ok()
    }

    /// The MAC of a manifest body.
    pub(crate) fn manifest_mac(&self, body: &[u8]) -> [u8; 32] {
        let mut encoded = Vec::with_capacity(MANIFEST_DOMAIN.len() + body.len());
        encoded.extend_from_slice(MANIFEST_DOMAIN);
        encoded.extend_from_slice(body);
        self.tag(&encoded)
    }

    /// Whether `mac` authenticates the manifest `body`.
    pub(crate) fn check_manifest(&self, body: &[u8], mac: &[u8]) -> bool {
        let mut encoded = Vec::with_capacity(MANIFEST_DOMAIN.len() + body.len());
        encoded.extend_from_slice(MANIFEST_DOMAIN);
        encoded.extend_from_slice(body);
        self.check(&encoded, mac)
    }
}

impl std::fmt::Debug for StateMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMac(redacted)")
    }
}

/// The canonical encoding of a row: the domain, the table name, then each field as a
/// 4-byte big-endian length and its bytes (integers as 8-byte big-endian two's complement,
/// an absent optional value as the one byte `0`, a present one as `1` and the value).
pub(crate) struct RowEncoder(Vec<u8>);

impl RowEncoder {
    /// Starts the encoding of a row of `table`.
    pub(crate) fn new(table: Table) -> RowEncoder {
        let mut encoder = RowEncoder(Vec::with_capacity(256));
        encoder.0.extend_from_slice(ROW_DOMAIN);
        encoder.bytes(table.name().as_bytes())
    }

    /// A length-prefixed byte field.
    pub(crate) fn bytes(mut self, value: &[u8]) -> RowEncoder {
        // Fields are far below 4 GiB (request bodies are limited to 64 KiB).
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(value);
        self
    }

    /// A text field.
    pub(crate) fn text(self, value: &str) -> RowEncoder {
        self.bytes(value.as_bytes())
    }

    /// An integer field.
    pub(crate) fn int(self, value: i64) -> RowEncoder {
        self.bytes(&value.to_be_bytes())
    }

    /// An optional text field.
    pub(crate) fn opt_text(self, value: Option<&str>) -> RowEncoder {
        match value {
            None => self.bytes(&[0]),
            Some(text) => {
                let mut field = Vec::with_capacity(1 + text.len());
                field.push(1);
                field.extend_from_slice(text.as_bytes());
                self.bytes(&field)
            }
        }
    }

    /// The encoded row.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// The authenticated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    Keys,
    KeyVersions,
    Aliases,
    Grants,
}

impl Table {
    /// Every authenticated table.
    pub const ALL: [Table; 4] = [
        Table::Keys,
        Table::KeyVersions,
        Table::Aliases,
        Table::Grants,
    ];

    /// The SQL table name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Keys => "keys",
            Table::KeyVersions => "key_versions",
            Table::Aliases => "aliases",
            Table::Grants => "grants",
        }
    }

    /// How an operator would call one row of it.
    pub fn what(self) -> &'static str {
        match self {
            Table::Keys => "key",
            Table::KeyVersions => "material version",
            Table::Aliases => "alias",
            Table::Grants => "grant",
        }
    }
}

/// A row's identity: its table and primary key (`key_id`, `key_id/version`, alias name,
/// grant id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowId {
    pub table: Table,
    pub id: String,
}

impl RowId {
    /// A row of `table` with primary key `id`.
    pub fn new(table: Table, id: impl Into<String>) -> RowId {
        RowId {
            table,
            id: id.into(),
        }
    }

    /// The primary key of a material version row.
    pub fn version(key_id: &str, version: u32) -> RowId {
        RowId::new(Table::KeyVersions, format!("{key_id}/{version}"))
    }
}

impl std::fmt::Display for RowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} (table {})",
            self.table.what(),
            self.id,
            self.table.name()
        )
    }
}

/// What the manifest knows of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowEntry {
    /// The row's full tag.
    pub tag: [u8; 32],
    /// The key the row belongs to (itself for a key row).
    pub key_id: String,
}

/// Every authenticated row of the database as kmsd last committed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    pub generation: u64,
    pub rows: BTreeMap<RowId, RowEntry>,
}

/// The stored manifest body.
#[derive(Debug, Serialize, Deserialize)]
struct ManifestBody {
    format: u32,
    generation: u64,
    /// Table name → primary key → hex tag prefix.
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

impl Rows {
    /// The manifest body of these rows, with `generation`.
    pub(crate) fn manifest_body(&self, generation: u64) -> Result<Vec<u8>, String> {
        let mut tables: BTreeMap<String, BTreeMap<String, String>> = Table::ALL
            .iter()
            .map(|t| (t.name().to_string(), BTreeMap::new()))
            .collect();
        for (id, entry) in &self.rows {
            tables
                .entry(id.table.name().to_string())
                .or_default()
                .insert(id.id.clone(), hex(&entry.tag[..MANIFEST_TAG_LEN]));
        }
        serde_json::to_vec(&ManifestBody {
            format: 1,
            generation,
            tables,
        })
        .map_err(|err| format!("cannot encode the state manifest: {err}"))
    }
}

/// A parsed manifest: generation and, per row, the tag prefix.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub rows: BTreeMap<RowId, String>,
}

/// Parses an (authenticated) manifest body.
pub(crate) fn parse_manifest(body: &[u8]) -> Result<Manifest, String> {
    let parsed: ManifestBody = serde_json::from_slice(body)
        .map_err(|err| format!("the state manifest does not parse: {err}"))?;
    if parsed.format != 1 {
        return Err(format!(
            "the state manifest has format {}, this kmsd knows 1",
            parsed.format
        ));
    }
    let mut rows = BTreeMap::new();
    for (name, entries) in parsed.tables {
        let table = Table::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| format!("the state manifest names an unknown table {name:?}"))?;
        for (id, tag) in entries {
            rows.insert(RowId::new(table, id), tag);
        }
    }
    Ok(Manifest {
        generation: parsed.generation,
        rows,
    })
}

/// The manifest's form of a tag.
pub(crate) fn manifest_tag(tag: &[u8; 32]) -> String {
    hex(&tag[..MANIFEST_TAG_LEN])
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}

/// Parses lower-case hex.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> StateMac {
        StateMac::from_material(KeyMaterial::from_bytes(&[7; 32]))
    }

    #[test]
    fn encoding_separates_fields_and_tables() {
        let a = RowEncoder::new(Table::Keys).text("ab").text("c").finish();
        let b = RowEncoder::new(Table::Keys).text("a").text("bc").finish();
        let c = RowEncoder::new(Table::Grants).text("ab").text("c").finish();
        assert_ne!(a, b);
        assert_ne!(a, c);
        let none = RowEncoder::new(Table::Keys).opt_text(None).finish();
        let empty = RowEncoder::new(Table::Keys).opt_text(Some("")).finish();
        assert_ne!(none, empty);
        let tag = mac().tag(&a);
        assert!(mac().check(&a, &tag));
        assert!(!mac().check(&b, &tag));
        let other = StateMac::from_material(KeyMaterial::from_bytes(&[8; 32]));
        assert!(!other.check(&a, &tag));
    }

    #[test]
    fn manifest_round_trip() {
        let mut rows = Rows::default();
        rows.rows.insert(
            RowId::new(Table::Keys, "k1"),
            RowEntry {
                tag: [1; 32],
                key_id: "k1".into(),
            },
        );
        rows.rows.insert(
            RowId::version("k1", 1),
            RowEntry {
                tag: [2; 32],
                key_id: "k1".into(),
            },
        );
        let body = rows.manifest_body(5).unwrap();
        let tag = mac().manifest_mac(&body);
        assert!(mac().check_manifest(&body, &tag));
        assert!(!mac().check(&body, &tag));
        let parsed = parse_manifest(&body).unwrap();
        assert_eq!(parsed.generation, 5);
        assert_eq!(
            parsed.rows[&RowId::version("k1", 1)],
            manifest_tag(&[2; 32])
        );
        assert_eq!(unhex(&hex(&[0, 255, 16])).unwrap(), vec![0, 255, 16]);
    }
}
