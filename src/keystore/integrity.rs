//! Authentication of the key database: a tag on every row kmsd acts on, and a MAC'd
//! manifest of every row's tag, so that a changed, swapped, deleted, resurrected or
//! rolled-back row is noticed when kmsd starts.
//!
//! * Row tag: `HMAC-SHA256(K_state, encoding)` with `K_state = HKDF(root key,
//!   "kmsd/v1/state-mac")`, stored in the row's `mac` column. The encoding is
//!   `"kmsd/v1/row\0"`, then the table name and every column of the row (primary key
//!   included, so a row cannot be moved to another key) as length-prefixed fields
//!   ([`RowEncoder`]).
//! * Manifest: the rows are spread over up to 256 buckets by the first byte of SHA-256 of
//!   their key id (all rows of a key share one). The meta row `state-manifest/XX` lists, per
//!   table, every row of bucket `XX` with the first 16 bytes of its tag; the top row
//!   `state-manifest` holds a generation number and the first 16 bytes of each bucket's MAC
//!   (`HMAC(K_state, "kmsd/v1/manifest-bucket\0" || bucket || body)`), and
//!   `state-manifest-mac` the hex `HMAC(K_state, "kmsd/v1/manifest\0" || top)`. A change
//!   rewrites the buckets it touched and the top, in its own transaction.
//!
//! The layout is described in `docs/state-dir.md` ("Integrity").

use crate::crypto::KeyMaterial;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Meta row holding the manifest body (JSON).
pub const MANIFEST_META: &str = "state-manifest";
/// Meta row holding the hex MAC of the manifest body.
pub const MANIFEST_MAC_META: &str = "state-manifest-mac";
/// Length of the tag prefix kept in the manifest.
const MANIFEST_TAG_LEN: usize = 16;
const ROW_DOMAIN: &[u8] = b"kmsd/v1/row\0";
const MANIFEST_DOMAIN: &[u8] = b"kmsd/v1/manifest\0";
const BUCKET_DOMAIN: &[u8] = b"kmsd/v1/manifest-bucket\0";

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

    /// The MAC of the body of manifest bucket `bucket`.
    pub(crate) fn bucket_mac(&self, bucket: u8, body: &[u8]) -> [u8; 32] {
        let mut encoded = Vec::with_capacity(BUCKET_DOMAIN.len() + 1 + body.len());
        encoded.extend_from_slice(BUCKET_DOMAIN);
        encoded.push(bucket);
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
    /// `keys`: one row per key.
    Keys,
    /// `key_versions`: one row per material version.
    KeyVersions,
    /// `aliases`: one row per alias.
    Aliases,
    /// `grants`: one row per grant.
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
    /// The table.
    pub table: Table,
    /// The primary key as text (`key_id/version` for a material version).
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
    /// The key the row belongs to (itself for a key row); it decides the row's bucket.
    pub key_id: String,
}

/// The manifest bucket of the rows of key `key_id`: the first byte of its SHA-256, so all
/// rows of one key share a bucket and a change rewrites one bucket.
pub(crate) fn bucket_of(key_id: &str) -> u8 {
    Sha256::digest(key_id.as_bytes())[0]
}

/// The meta row name of bucket `bucket`.
pub(crate) fn bucket_meta(bucket: u8) -> String {
    format!("{MANIFEST_META}/{bucket:02x}")
}

type Bucket = BTreeMap<RowId, RowEntry>;

/// One manifest bucket row to write: its meta name and its body, or None to delete it.
pub(crate) type ManifestWrite = (String, Option<Vec<u8>>);

/// Every authenticated row of the database as kmsd last committed it, in manifest buckets
/// (copy-on-write, so a change copies only the buckets it touches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rows {
    /// The generation of the manifest these rows were (or will be) written with.
    pub generation: u64,
    buckets: BTreeMap<u8, Arc<Bucket>>,
    /// The stored MAC prefix (hex) of each non-empty bucket.
    bucket_macs: BTreeMap<u8, String>,
    /// Buckets changed since the manifest was last written.
    dirty: BTreeSet<u8>,
}

impl Rows {
    /// Records (or replaces) a row.
    pub(crate) fn insert(&mut self, id: RowId, entry: RowEntry) {
        self.remove(&id);
        let bucket = bucket_of(&entry.key_id);
        Arc::make_mut(self.buckets.entry(bucket).or_default()).insert(id, entry);
        self.dirty.insert(bucket);
    }

    /// Forgets a row, wherever it is.
    pub(crate) fn remove(&mut self, id: &RowId) {
        let found = self
            .buckets
            .iter()
            .find(|(_, rows)| rows.contains_key(id))
            .map(|(bucket, _)| *bucket);
        if let Some(bucket) = found {
            if let Some(rows) = self.buckets.get_mut(&bucket) {
                Arc::make_mut(rows).remove(id);
            }
            self.dirty.insert(bucket);
        }
    }

    /// Forgets every row of key `key_id`.
    pub(crate) fn remove_key(&mut self, key_id: &str) {
        let bucket = bucket_of(key_id);
        if let Some(rows) = self.buckets.get_mut(&bucket) {
            Arc::make_mut(rows).retain(|_, entry| entry.key_id != key_id);
            self.dirty.insert(bucket);
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.buckets.values().map(|rows| rows.len()).sum()
    }

    /// Rows found in the database, with the bucket MACs of the manifest that listed them.
    pub(crate) fn verified(
        generation: u64,
        found: BTreeMap<RowId, RowEntry>,
        bucket_macs: BTreeMap<u8, String>,
    ) -> Rows {
        let mut rows = Rows {
            generation,
            ..Rows::default()
        };
        for (id, entry) in found {
            // Primary keys are unique, so no row needs looking for in other buckets.
            let bucket = bucket_of(&entry.key_id);
            Arc::make_mut(rows.buckets.entry(bucket).or_default()).insert(id, entry);
        }
        rows.bucket_macs = bucket_macs;
        rows
    }

    /// The manifest rows to write for the changed buckets: `(meta name, Some(body))` to
    /// store, `(meta name, None)` to delete; then the top body. Marks them clean.
    pub(crate) fn manifest_writes(
        &mut self,
        mac: &StateMac,
    ) -> Result<(Vec<ManifestWrite>, Vec<u8>), String> {
        let mut writes = Vec::new();
        for bucket in std::mem::take(&mut self.dirty) {
            let rows = self.buckets.get(&bucket).filter(|rows| !rows.is_empty());
            match rows {
                None => {
                    self.buckets.remove(&bucket);
                    self.bucket_macs.remove(&bucket);
                    writes.push((bucket_meta(bucket), None));
                }
                Some(rows) => {
                    let mut tables: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
                    for (id, entry) in rows.iter() {
                        tables
                            .entry(id.table.name())
                            .or_default()
                            .insert(id.id.as_str(), manifest_tag(&entry.tag));
                    }
                    let body = serde_json::to_vec(&BucketBody { tables })
                        .map_err(|err| format!("cannot encode the state manifest: {err}"))?;
                    self.bucket_macs
                        .insert(bucket, manifest_tag(&mac.bucket_mac(bucket, &body)));
                    writes.push((bucket_meta(bucket), Some(body)));
                }
            }
        }
        let top = serde_json::to_vec(&TopBody {
            format: 2,
            generation: self.generation,
            buckets: self
                .bucket_macs
                .iter()
                .map(|(bucket, tag)| (format!("{bucket:02x}"), tag.clone()))
                .collect(),
        })
        .map_err(|err| format!("cannot encode the state manifest: {err}"))?;
        Ok((writes, top))
    }
}

/// The stored top manifest body (meta `state-manifest`).
#[derive(Debug, Serialize, Deserialize)]
struct TopBody {
    format: u32,
    generation: u64,
    /// Bucket (two hex digits) → hex prefix of the bucket body's MAC.
    buckets: BTreeMap<String, String>,
}

/// A stored bucket body (meta `state-manifest/XX`).
#[derive(Debug, Serialize, Deserialize)]
struct BucketBody<'a> {
    /// Table name → primary key → hex tag prefix.
    #[serde(borrow)]
    tables: BTreeMap<&'a str, BTreeMap<&'a str, String>>,
}

/// A parsed top manifest: generation and the MAC prefix of every bucket.
#[derive(Debug)]
pub(crate) struct Top {
    /// The manifest's generation.
    pub generation: u64,
    /// Bucket → hex prefix of its body's MAC.
    pub buckets: BTreeMap<u8, String>,
}

/// Parses an (authenticated) top manifest body.
pub(crate) fn parse_top(body: &[u8]) -> Result<Top, String> {
    let parsed: TopBody = serde_json::from_slice(body)
        .map_err(|err| format!("the state manifest does not parse: {err}"))?;
    if parsed.format != 2 {
        return Err(format!(
            "the state manifest has format {}, this kmsd knows 2",
            parsed.format
        ));
    }
    let mut buckets = BTreeMap::new();
    for (name, tag) in parsed.buckets {
        let bucket = u8::from_str_radix(&name, 16)
            .map_err(|_| format!("the state manifest names a bucket {name:?}"))?;
        buckets.insert(bucket, tag);
    }
    Ok(Top {
        generation: parsed.generation,
        buckets,
    })
}

/// Parses an (authenticated) bucket body into row → tag prefix.
pub(crate) fn parse_bucket(body: &[u8]) -> Result<BTreeMap<RowId, String>, String> {
    let parsed: BucketBody<'_> = serde_json::from_slice(body)
        .map_err(|err| format!("a state manifest bucket does not parse: {err}"))?;
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
    Ok(rows)
}

/// The manifest's form of a tag.
pub(crate) fn manifest_tag(tag: &[u8; 32]) -> String {
    hex::encode(&tag[..MANIFEST_TAG_LEN])
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
        rows.insert(
            RowId::new(Table::Keys, "k1"),
            RowEntry {
                tag: [1; 32],
                key_id: "k1".into(),
            },
        );
        rows.insert(
            RowId::version("k1", 1),
            RowEntry {
                tag: [2; 32],
                key_id: "k1".into(),
            },
        );
        rows.generation = 5;
        let (writes, top) = rows.manifest_writes(&mac()).unwrap();
        assert_eq!(writes.len(), 1);
        let (name, body) = &writes[0];
        assert_eq!(*name, bucket_meta(bucket_of("k1")));
        let body = body.as_ref().unwrap();
        let parsed = parse_top(&top).unwrap();
        assert_eq!(parsed.generation, 5);
        assert_eq!(
            parsed.buckets[&bucket_of("k1")],
            manifest_tag(&mac().bucket_mac(bucket_of("k1"), body))
        );
        let bucket = parse_bucket(body).unwrap();
        assert_eq!(bucket[&RowId::version("k1", 1)], manifest_tag(&[2; 32]));
        // Removing the key empties its bucket: the bucket row is deleted.
        rows.remove_key("k1");
        let (writes, top) = rows.manifest_writes(&mac()).unwrap();
        assert_eq!(writes, vec![(bucket_meta(bucket_of("k1")), None)]);
        assert!(parse_top(&top).unwrap().buckets.is_empty());
        assert_eq!(rows.len(), 0);
    }
}
