//! AWS Signature Version 4 on the loopback TCP endpoint: the `Authorization` header's shape
//! (every TCP request must have it: a browser cannot send one to another origin without a
//! CORS preflight that kmsd never answers), signature verification for the access keys of
//! the `[sigv4]` table, a replay window for verified signatures that are the only proof of
//! the caller, and the policy that combines them with the uid the kernel saw
//! ([`SigV4Policy::authenticate`]).
//!
//! Pure logic: the caller passes the request's parts and the time; nothing here reads a
//! socket, a file or the clock.
//!
//! # Why the verification is written here
//!
//! The `aws-sigv4` crate *signs*: given a request and credentials it chooses the headers to
//! sign itself (all but a deny list), takes the time from its own parameters and adds its own
//! `X-Amz-Date`. Verifying a received request means recomputing the signature over exactly the
//! headers the *client* listed in `SignedHeaders`, with the client's `X-Amz-Date`, which it
//! has no API for (one would have to rebuild a filtered copy of the request and hope its
//! normalisation matches the client's). It would also bring the smithy runtime crates. The
//! algorithm is short and fully specified, so it is implemented here, and checked against
//! AWS's published test vectors and against requests signed by botocore
//! (`tests/sigv4_botocore.rs`).
//!
//! # The algorithm (AWS's SigV4, as every SDK implements it for services other than S3)
//!
//! * canonical request: `METHOD\nURI\nQUERY\nHEADERS\n\nSIGNED\nPAYLOAD_HASH`, where URI is
//!   the path as received with dot segments and empty segments removed, then URI-encoded
//!   (so an already percent-encoded path is encoded a second time, AWS's rule for non-S3
//!   services); QUERY the decoded, re-encoded and sorted `name=value` pairs; HEADERS one
//!   `name:value` line per signed header (lowercase name, the values trimmed, inner runs of
//!   whitespace collapsed to one space, repeated headers joined with `,` in request order);
//!   PAYLOAD_HASH the hex SHA-256 of the body (or `x-amz-content-sha256`, which must then be
//!   that hash: an unsigned payload is refused);
//! * string to sign: `AWS4-HMAC-SHA256\nX-Amz-Date\nDATE/REGION/SERVICE/aws4_request\n`
//!   and the hex SHA-256 of the canonical request;
//! * signing key: HMAC-SHA256 chained from `"AWS4" + secret` over the date, region,
//!   service and `aws4_request`; the signature is compared in constant time
//!   (`hmac`'s `verify_slice`).

use crate::clock::UnixMillis;
use crate::config::sigv4::{SecretAccessKey, SigV4Key, SigV4Keys};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, PoisonError};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The one signing algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service name a request's credential scope must carry.
pub const SERVICE: &str = "kms";
/// How far (seconds, either way) `X-Amz-Date` may be from kmsd's clock, as AWS allows.
pub const MAX_SKEW_SECS: i64 = 300;
/// Signatures the [`ReplayWindow`] of a [`SigV4Policy`] remembers at most (about 12 MB at
/// worst): 870 verified requests per second sustained over the window.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 18;
/// Most names in `SignedHeaders`.
pub const MAX_SIGNED_HEADERS: usize = 64;

const MAX_SKEW_MS: i64 = MAX_SKEW_SECS * 1000;
/// The longest client-supplied text an error message repeats.
const SHOWN_LEN: usize = 64;

/// Errors of SigV4 checking. Messages name what is wrong; they may name the access key id,
/// never a secret, and show at most the first 8 hex digits of a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The request has no `Authorization` header.
    #[error(
        "the request has no Authorization header: requests over TCP must be signed with SigV4 \
         (AWS4-HMAC-SHA256), as the AWS SDKs and CLI do"
    )]
    Missing,
    /// More than one `Authorization` header.
    #[error("the request has more than one Authorization header")]
    Duplicate,
    /// An algorithm other than AWS4-HMAC-SHA256.
    #[error("Authorization algorithm {algorithm:?} is not supported: {hint}")]
    UnsupportedAlgorithm {
        /// The algorithm as sent (shortened).
        algorithm: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// The header is not of the SigV4 shape.
    #[error("the Authorization header is not SigV4: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// `SignedHeaders` lacks a header that must be signed.
    #[error("SignedHeaders must include {header}")]
    NotSigned {
        /// The header's name.
        header: &'static str,
    },
    /// The credential scope names another service.
    #[error("the credential scope names service {service:?}; kmsd serves {expected:?}")]
    WrongService {
        /// The service as sent (shortened).
        service: String,
        /// The service expected.
        expected: String,
    },
    /// A header needed for the signature is not in the request.
    #[error("header {name} is signed but not in the request")]
    HeaderMissing {
        /// The header's name (shortened).
        name: String,
    },
    /// A header that must appear once appears more than once.
    #[error("header {name} appears more than once")]
    HeaderRepeated {
        /// The header's name.
        name: &'static str,
    },
    /// `X-Amz-Date` is not `YYYYMMDDTHHMMSSZ`.
    #[error("X-Amz-Date {value:?} is not a date of the form YYYYMMDDTHHMMSSZ")]
    BadDate {
        /// The value as sent (shortened).
        value: String,
    },
    /// The credential scope's date is not X-Amz-Date's.
    #[error("the credential scope's date {scope_date} is not X-Amz-Date's ({amz_date})")]
    ScopeDateMismatch {
        /// The scope's date.
        scope_date: String,
        /// X-Amz-Date.
        amz_date: String,
    },
    /// X-Amz-Date is too far from kmsd's clock.
    #[error(
        "X-Amz-Date {amz_date} is {offset_secs} s from kmsd's clock; at most {MAX_SKEW_SECS} s \
         either way is accepted (check the client's clock)"
    )]
    Skewed {
        /// X-Amz-Date.
        amz_date: String,
        /// X-Amz-Date minus now, in seconds.
        offset_secs: i64,
    },
    /// `x-amz-content-sha256` is not a SHA-256 (UNSIGNED-PAYLOAD, streaming).
    #[error(
        "x-amz-content-sha256 {value:?} is not accepted: kmsd requires the payload to be signed \
         (its hex SHA-256)"
    )]
    UnsignedPayload {
        /// The value as sent (shortened).
        value: String,
    },
    /// `x-amz-content-sha256` is not the hash of the body.
    #[error("x-amz-content-sha256 is not the SHA-256 of the body")]
    PayloadHashMismatch,
    /// The signature is not the one the secret gives.
    #[error(
        "the signature does not match for access key id {access_key_id} (a wrong secret, or \
         the request was changed after signing)"
    )]
    SignatureMismatch {
        /// The access key id.
        access_key_id: String,
    },
    /// The signature was seen before within the skew window.
    #[error(
        "signature {signature_prefix}… of access key id {access_key_id} was already used: a \
         replayed request is refused"
    )]
    Replayed {
        /// The access key id.
        access_key_id: String,
        /// The signature's first 8 hex digits.
        signature_prefix: String,
    },
    /// The replay window is full: refusing rather than forgetting.
    #[error(
        "the SigV4 replay window is full ({capacity} signatures within the last \
         {MAX_SKEW_SECS} s); signed requests are refused until older ones expire"
    )]
    ReplayWindowFull {
        /// The window's capacity.
        capacity: usize,
    },
    /// The access key id is not configured and nothing else names the caller.
    #[error("access key id {access_key_id} is not in the [sigv4] table, and {reason}")]
    UnknownAccessKey {
        /// The access key id (shortened).
        access_key_id: String,
        /// Why a configured key is needed.
        reason: &'static str,
    },
    /// A configured key used by a connection of another uid.
    #[error(
        "access key id {access_key_id} stands for uid {key_uid}, but the connection is uid \
         {caller_uid}: a caller may not use another user's credentials"
    )]
    OtherUsersKey {
        /// The access key id.
        access_key_id: String,
        /// The uid the key stands for.
        key_uid: u32,
        /// The uid the kernel saw.
        caller_uid: u32,
    },
}

/// At most [`SHOWN_LEN`] characters of client-supplied text, for an error message.
fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_LEN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn malformed(reason: impl Into<String>) -> SigV4Error {
    SigV4Error::Malformed {
        reason: reason.into(),
    }
}

/// The parts of a received request that SigV4 covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method, as received (`POST`).
    pub method: &'a str,
    /// The path of the request target, as received (percent-encoded), e.g. `/`.
    pub path: &'a str,
    /// The query string, as received, without the `?` (empty when none).
    pub query: &'a str,
    /// Every header line in request order (names in any case; a repeated header appears
    /// once per line).
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The body.
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// The values of header `name` (ASCII case-insensitive), in request order.
    fn values(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The one value of header `name`; `None` when absent.
    fn single(&self, name: &'static str) -> Result<Option<&'a [u8]>, SigV4Error> {
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(SigV4Error::HeaderRepeated { name });
        }
        Ok(first)
    }
}

/// A header value as text for an error message (shortened).
fn lossy(value: &[u8]) -> String {
    shown(&String::from_utf8_lossy(value))
}

/// The `Credential=` part: the access key id and the credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialScope {
    /// The access key id.
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// The region the client signed for.
    pub region: String,
    /// The service the client signed for (`kms`).
    pub service: String,
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4Header {
    /// The credential and its scope.
    pub credential: CredentialScope,
    /// `SignedHeaders`: lowercase names in ascending order, `host` and `x-amz-date` among them.
    pub signed_headers: Vec<String>,
    signature: [u8; 32],
}

impl SigV4Header {
    /// The signature's first 8 hex digits (enough to tell requests apart in a log).
    pub fn signature_prefix(&self) -> String {
        hex::encode(&self.signature[..4])
    }

    /// Finds the one `Authorization` header among `headers` and parses it.
    pub fn from_headers(headers: &[(&str, &[u8])]) -> Result<SigV4Header, SigV4Error> {
        let mut values = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| *value);
        let value = values.next().ok_or(SigV4Error::Missing)?;
        if values.next().is_some() {
            return Err(SigV4Error::Duplicate);
        }
        let text = std::str::from_utf8(value).map_err(|_| malformed("the value is not UTF-8"))?;
        parse_authorization(text)
    }
}

impl fmt::Debug for SigV4Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4Header")
            .field("credential", &self.credential)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &format_args!("{}…", self.signature_prefix()))
            .finish()
    }
}

/// HTTP's optional whitespace (and the other ASCII blanks SDKs never send but may).
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Characters of a header name (RFC 9110 `tchar`), lowercase only.
fn is_lower_tchar(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Characters of a region or service name.
fn is_scope_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b;c, Signature=<64 lowercase hex>` (spaces or tabs around the parts and
/// after commas are tolerated; the three parts may come in any order). `SignedHeaders` must
/// be lowercase, sorted, without repeats, and include `host` and `x-amz-date`.
pub fn parse_authorization(value: &str) -> Result<SigV4Header, SigV4Error> {
    let value = value.trim_matches(is_ows);
    let (algorithm, rest) = match value.find(is_ows) {
        Some(at) => (&value[..at], &value[at..]),
        None => (value, ""),
    };
    if algorithm != ALGORITHM {
        let hint = if algorithm.starts_with("AWS4-ECDSA") {
            "SigV4a (multi-region signing) is not supported; configure the client for SigV4 \
             (AWS4-HMAC-SHA256), e.g. do not set AWS_SIGV4A_SIGNING_REGION_SET"
        } else {
            "only SigV4 (AWS4-HMAC-SHA256) is accepted"
        };
        return Err(SigV4Error::UnsupportedAlgorithm {
            algorithm: shown(algorithm),
            hint,
        });
    }
    if rest.trim_matches(is_ows).is_empty() {
        return Err(malformed(
            "Credential, SignedHeaders and Signature are missing",
        ));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(is_ows);
        let Some((name, text)) = part.split_once('=') else {
            return Err(malformed(format!(
                "part {:?} is not Name=Value",
                shown(part)
            )));
        };
        let (name, text) = (name.trim_matches(is_ows), text.trim_matches(is_ows));
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(malformed(format!("unknown part {:?}", shown(other)))),
        };
        if slot.replace(text).is_some() {
            return Err(malformed(format!("{name} appears twice")));
        }
    }
    let credential =
        parse_credential(credential.ok_or_else(|| malformed("Credential is missing"))?)?;
    let signed_headers =
        parse_signed_headers(signed.ok_or_else(|| malformed("SignedHeaders is missing"))?)?;
    let signature = parse_signature(signature.ok_or_else(|| malformed("Signature is missing"))?)?;
    Ok(SigV4Header {
        credential,
        signed_headers,
        signature,
    })
}

fn parse_credential(text: &str) -> Result<CredentialScope, SigV4Error> {
    let parts: Vec<&str> = text.split('/').collect();
    let [access_key_id, date, region, service, terminator] = parts[..] else {
        return Err(malformed(
            "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request",
        ));
    };
    if access_key_id.is_empty()
        || access_key_id.len() > 128
        || !access_key_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b';')
    {
        return Err(malformed(
            "the access key id must be 1 to 128 printable ASCII characters",
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(format!(
            "the credential scope's date {:?} is not YYYYMMDD",
            shown(date)
        )));
    }
    for (what, name) in [("region", region), ("service", service)] {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(is_scope_char) {
            return Err(malformed(format!(
                "the credential scope's {what} {:?} is not a name",
                shown(name)
            )));
        }
    }
    if terminator != "aws4_request" {
        return Err(malformed("the credential scope must end with aws4_request"));
    }
    Ok(CredentialScope {
        access_key_id: access_key_id.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

fn parse_signed_headers(text: &str) -> Result<Vec<String>, SigV4Error> {
    let names: Vec<&str> = text.split(';').collect();
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(malformed(format!(
            "SignedHeaders lists more than {MAX_SIGNED_HEADERS} headers"
        )));
    }
    for name in &names {
        if name.is_empty() || name.len() > 128 || !name.bytes().all(is_lower_tchar) {
            return Err(malformed(format!(
                "SignedHeaders entry {:?} is not a lowercase header name",
                shown(name)
            )));
        }
    }
    if !names.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(malformed(
            "SignedHeaders must be in ascending order, without repeats",
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !names.contains(&required) {
            return Err(SigV4Error::NotSigned { header: required });
        }
    }
    Ok(names.into_iter().map(str::to_string).collect())
}

fn parse_signature(text: &str) -> Result<[u8; 32], SigV4Error> {
    let mut signature = [0u8; 32];
    let lower_hex = text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if text.len() != 64 || !lower_hex || hex::decode_to_slice(text, &mut signature).is_err() {
        return Err(malformed("Signature must be 64 lowercase hex digits"));
    }
    Ok(signature)
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(text: &str) -> Result<i64, SigV4Error> {
    let bad = || SigV4Error::BadDate { value: shown(text) };
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[..8]
            .iter()
            .chain(&bytes[9..15])
            .all(u8::is_ascii_digit);
    if !shaped {
        return Err(bad());
    }
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let date = time::PrimitiveDateTime::parse(text, &format).map_err(|_| bad())?;
    Ok(date.assume_utc().unix_timestamp())
}

/// Checks a request's signature against `secret` (the service must be `kms`, the scope's
/// date X-Amz-Date's, X-Amz-Date within [`MAX_SKEW_SECS`] of `now`).
pub fn verify(
    request: &RequestParts<'_>,
    header: &SigV4Header,
    secret: &SecretAccessKey,
    now: UnixMillis,
) -> Result<(), SigV4Error> {
    verify_for_service(request, header, secret, now, SERVICE).map(|_| ())
}

/// [`verify`] for any service name (AWS's test vectors use `service`); returns X-Amz-Date
/// in milliseconds.
fn verify_for_service(
    request: &RequestParts<'_>,
    header: &SigV4Header,
    secret: &SecretAccessKey,
    now: UnixMillis,
    service: &str,
) -> Result<UnixMillis, SigV4Error> {
    let scope = &header.credential;
    if scope.service != service {
        return Err(SigV4Error::WrongService {
            service: shown(&scope.service),
            expected: service.to_string(),
        });
    }
    let amz_date = request
        .single("x-amz-date")?
        .ok_or_else(|| SigV4Error::HeaderMissing {
            name: "x-amz-date".into(),
        })?;
    let amz_date = std::str::from_utf8(amz_date)
        .map_err(|_| SigV4Error::BadDate {
            value: lossy(amz_date),
        })?
        .trim_matches(is_ows);
    let amz_date_ms = parse_amz_date(amz_date)?.saturating_mul(1000);
    if amz_date[..8] != scope.date {
        return Err(SigV4Error::ScopeDateMismatch {
            scope_date: scope.date.clone(),
            amz_date: amz_date.to_string(),
        });
    }
    let offset = amz_date_ms.saturating_sub(now);
    if offset.unsigned_abs() > MAX_SKEW_MS.unsigned_abs() {
        return Err(SigV4Error::Skewed {
            amz_date: amz_date.to_string(),
            offset_secs: offset / 1000,
        });
    }
    let payload_hash = payload_hash(request)?;
    let canonical = canonical_request(request, &header.signed_headers, &payload_hash)?;
    let to_sign = string_to_sign(amz_date, scope, &canonical);
    let key = signing_key(secret, scope);
    let mismatch = || SigV4Error::SignatureMismatch {
        access_key_id: scope.access_key_id.clone(),
    };
    let mut mac = HmacSha256::new_from_slice(&key[..]).map_err(|_| mismatch())?;
    mac.update(to_sign.as_bytes());
    mac.verify_slice(&header.signature)
        .map_err(|_| mismatch())?;
    Ok(amz_date_ms)
}

/// The payload hash of the canonical request: the body's, or `x-amz-content-sha256` when
/// sent (which must be the body's: an unsigned or streaming payload is refused).
fn payload_hash(request: &RequestParts<'_>) -> Result<String, SigV4Error> {
    let actual = hex::encode(Sha256::digest(request.body));
    match request.single("x-amz-content-sha256")? {
        None => Ok(actual),
        Some(claimed) => {
            let text = std::str::from_utf8(claimed).map_err(|_| SigV4Error::UnsignedPayload {
                value: lossy(claimed),
            })?;
            let claimed = text.trim_matches(is_ows);
            let is_hash = claimed.len() == 64 && claimed.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hash {
                return Err(SigV4Error::UnsignedPayload {
                    value: shown(claimed),
                });
            }
            if !claimed.eq_ignore_ascii_case(&actual) {
                return Err(SigV4Error::PayloadHashMismatch);
            }
            Ok(claimed.to_string())
        }
    }
}

/// The canonical request (bytes: header values need not be UTF-8).
fn canonical_request(
    request: &RequestParts<'_>,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(request.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(request.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(request.query).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut found = false;
        for value in request.values(name) {
            if found {
                out.push(b',');
            }
            found = true;
            trim_all(value, &mut out);
        }
        if !found {
            return Err(SigV4Error::HeaderMissing { name: shown(name) });
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    Ok(out)
}

/// Appends `value` trimmed, with every inner run of whitespace as one space.
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let mut words = value
        .split(|b| b.is_ascii_whitespace() || *b == 0x0b)
        .filter(|word| !word.is_empty());
    if let Some(first) = words.next() {
        out.extend_from_slice(first);
        for word in words {
            out.push(b' ');
            out.extend_from_slice(word);
        }
    }
}

/// The path with `.`/`..` and empty segments removed (a leading and a trailing slash are
/// kept), URI-encoded (keeping `/`).
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    if path.starts_with('/') {
        normalized.push('/');
    }
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The query's `name=value` pairs, each part percent-decoded then URI-encoded, sorted by
/// name then value, joined with `&`.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name), false),
                uri_encode(&percent_decode(value), false),
            )
        })
        .collect();
    pairs.sort();
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    pairs.join("&")
}

/// `%XX` decoded (a `%` not followed by two hex digits stays as it is; `+` stays `+`).
fn percent_decode(text: &str) -> Vec<u8> {
    fn hex_value(b: &u8) -> Option<u8> {
        char::from(*b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = bytes.get(i + 1).and_then(hex_value);
            let low = bytes.get(i + 2).and_then(hex_value);
            if let (Some(high), Some(low)) = (high, low) {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// AWS's URI encoding: unreserved characters (`A-Z a-z 0-9 - _ . ~`) as they are, `/` too
/// when `keep_slash`, every other byte as `%XX` (uppercase hex).
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn string_to_sign(amz_date: &str, scope: &CredentialScope, canonical: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}/{}/{}/aws4_request\n{}",
        scope.date,
        scope.region,
        scope.service,
        hex::encode(Sha256::digest(canonical))
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC takes keys of any length, so this cannot fail; if it did, the all-zero key would
    // only make the signature check fail.
    if let Ok(mut mac) = HmacSha256::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// The signing key of `secret` for the scope's date, region and service.
fn signing_key(secret: &SecretAccessKey, scope: &CredentialScope) -> Zeroizing<[u8; 32]> {
    let start = Zeroizing::new(format!("AWS4{}", secret.expose()));
    let date = hmac_sha256(start.as_bytes(), scope.date.as_bytes());
    let region = hmac_sha256(&date[..], scope.region.as_bytes());
    let service = hmac_sha256(&region[..], scope.service.as_bytes());
    hmac_sha256(&service[..], b"aws4_request")
}

/// The signatures of verified requests seen within the skew window: a second use of one is
/// refused. Each entry is kept until its X-Amz-Date has left the window (when the skew check
/// would refuse the request anyway); at most `capacity` entries are kept, and a new signature
/// is refused while the window is full (never forgetting one early). A check takes one lock
/// and is O(1) amortized. Only the first 16 bytes of a signature are kept: two different
/// signatures sharing them (2^-128) would make the second refused, never accepted.
#[derive(Debug)]
pub struct ReplayWindow {
    capacity: usize,
    inner: Mutex<ReplayInner>,
}

#[derive(Debug, Default)]
struct ReplayInner {
    seen: HashSet<u128>,
    /// (expiry, signature prefix), in insertion order; expiries are nearly ordered (X-Amz-Date
    /// is within the skew of the insertion time), so evicting from the front frees every
    /// entry at most one window late.
    order: VecDeque<(UnixMillis, u128)>,
}

impl ReplayWindow {
    /// A window remembering at most `capacity` signatures.
    pub fn new(capacity: usize) -> ReplayWindow {
        ReplayWindow {
            capacity,
            inner: Mutex::new(ReplayInner::default()),
        }
    }

    /// Records the signature of `header` (a verified request with X-Amz-Date `amz_date`), or
    /// refuses it as a replay or because the window is full.
    pub fn check_and_record(
        &self,
        header: &SigV4Header,
        amz_date: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), SigV4Error> {
        let mut prefix = [0u8; 16];
        prefix.copy_from_slice(&header.signature[..16]);
        let key = u128::from_be_bytes(prefix);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(expiry, old)) = inner.order.front() {
            if expiry >= now {
                break;
            }
            inner.order.pop_front();
            inner.seen.remove(&old);
        }
        if inner.seen.contains(&key) {
            return Err(SigV4Error::Replayed {
                access_key_id: header.credential.access_key_id.clone(),
                signature_prefix: header.signature_prefix(),
            });
        }
        if inner.seen.len() >= self.capacity {
            return Err(SigV4Error::ReplayWindowFull {
                capacity: self.capacity,
            });
        }
        let expiry = amz_date.max(now).saturating_add(MAX_SKEW_MS);
        inner.seen.insert(key);
        inner.order.push_back((expiry, key));
        Ok(())
    }

    /// Signatures remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .len()
    }

    /// Whether no signature is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `[sigv4]` decision for one request over TCP (see [`SigV4Policy::authenticate`]).
/// Shared by every connection.
#[derive(Debug)]
pub struct SigV4Policy {
    verify_all: bool,
    keys: HashMap<String, SigV4Key>,
    replay: ReplayWindow,
}

impl Default for SigV4Policy {
    /// No configured key: shape only.
    fn default() -> Self {
        SigV4Policy::new(SigV4Keys::default())
    }
}

impl SigV4Policy {
    /// The policy of the loaded `[sigv4]` table
    /// ([`crate::config::SigV4Section::load_keys`]).
    pub fn new(keys: SigV4Keys) -> SigV4Policy {
        SigV4Policy::with_replay_capacity(keys, DEFAULT_REPLAY_CAPACITY)
    }

    /// [`SigV4Policy::new`] with a replay window of `capacity` signatures.
    pub fn with_replay_capacity(keys: SigV4Keys, capacity: usize) -> SigV4Policy {
        SigV4Policy {
            verify_all: keys.verify_all,
            keys: keys
                .keys
                .into_iter()
                .map(|key| (key.access_key_id.clone(), key))
                .collect(),
            replay: ReplayWindow::new(capacity),
        }
    }

    /// Whether any access key is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Decides a request whose `Authorization` header parsed as `header`, given the uid the
    /// kernel saw for the connection (`None` when it cannot see the caller):
    ///
    /// * the credential scope's service must be `kms`;
    /// * an access key id of the `[sigv4]` table: the signature must verify and the key must
    ///   stand for `kernel_uid` when there is one; when there is none (the signature is then
    ///   the only proof of the caller) the signature must not have been used before. The
    ///   request is made as the key's uid (`Ok(Some(uid))`);
    /// * any other access key id: refused when `verify_all` is set or `kernel_uid` is `None`;
    ///   otherwise accepted on the header's shape alone (`Ok(None)`: the kernel's uid stands).
    pub fn authenticate(
        &self,
        header: &SigV4Header,
        request: &RequestParts<'_>,
        now: UnixMillis,
        kernel_uid: Option<u32>,
    ) -> Result<Option<u32>, SigV4Error> {
        let scope = &header.credential;
        if scope.service != SERVICE {
            return Err(SigV4Error::WrongService {
                service: shown(&scope.service),
                expected: SERVICE.to_string(),
            });
        }
        let Some(key) = self.keys.get(&scope.access_key_id) else {
            let reason = if self.verify_all {
                "verify_all requires every request to be signed with a configured key"
            } else if kernel_uid.is_none() {
                "the kernel cannot name the caller of this connection"
            } else {
                return Ok(None);
            };
            return Err(SigV4Error::UnknownAccessKey {
                access_key_id: shown(&scope.access_key_id),
                reason,
            });
        };
        let amz_date = verify_for_service(request, header, &key.secret, now, SERVICE)?;
        if let Some(caller_uid) = kernel_uid {
            if caller_uid != key.uid {
                return Err(SigV4Error::OtherUsersKey {
                    access_key_id: key.access_key_id.clone(),
                    key_uid: key.uid,
                    caller_uid,
                });
            }
        }
        // A replay matters only where the signature is the proof: on a connection whose uid
        // the kernel saw, a repeat is that uid's own request (another uid's is refused above).
        // SDKs send identical requests in the same second with the same signature (botocore
        // adds amz-sdk-invocation-id after signing), so the window is not applied there.
        if kernel_uid.is_none() {
            self.replay.check_and_record(header, amz_date, now)?;
        }
        Ok(Some(key.uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20150830T123600Z";
    /// 2015-08-30T12:36:00Z.
    const NOW: UnixMillis = 1_440_938_160_000;
    const HOST: &str = "example.amazonaws.com";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn secret() -> SecretAccessKey {
        SecretAccessKey::new(SECRET.into())
    }

    /// One vector of AWS's SigV4 test suite (aws-sig-v4-test-suite, 2015-08-30, service
    /// `service`, region us-east-1, access key AKIDEXAMPLE).
    struct Vector {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        /// Besides Host and X-Amz-Date (which every vector has, first).
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        signed: &'static str,
        /// The canonical request, where the test checks it (otherwise empty).
        canonical: &'static str,
        signature: &'static str,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            name: "get-vanilla",
            method: "GET",
            path: "/",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                        host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        Vector {
            name: "post-vanilla",
            method: "POST",
            path: "/",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
        Vector {
            name: "get-vanilla-query-order-key-case",
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n\
                        x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        Vector {
            name: "get-vanilla-query-order-key",
            method: "GET",
            path: "/",
            query: "Param1=value2&Param1=Value1",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        },
        Vector {
            name: "get-vanilla-query-order-value",
            method: "GET",
            path: "/",
            query: "Param1=value2&Param1=value1",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        },
        Vector {
            name: "get-vanilla-query-unreserved",
            method: "GET",
            path: "/",
            query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=\
                    -._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        },
        Vector {
            name: "get-vanilla-utf8-query",
            method: "GET",
            path: "/",
            query: "ሴ=bar",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\n\
                        x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        },
        Vector {
            name: "get-vanilla-empty-query-key",
            method: "GET",
            path: "/",
            query: "Param1=value1",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        },
        Vector {
            name: "post-vanilla-query",
            method: "POST",
            path: "/",
            query: "Param1=value1",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        },
        Vector {
            name: "get-header-key-duplicate",
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("My-Header1", "value2"),
                ("My-Header1", "value2"),
                ("My-Header1", "value1"),
            ],
            body: "",
            signed: "host;my-header1;x-amz-date",
            canonical: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n\
                        x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        },
        Vector {
            name: "get-header-value-order",
            method: "GET",
            path: "/",
            query: "",
            headers: &[
                ("My-Header1", "value4"),
                ("My-Header1", "value1"),
                ("My-Header1", "value3"),
                ("My-Header1", "value2"),
            ],
            body: "",
            signed: "host;my-header1;x-amz-date",
            canonical: "",
            signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        },
        Vector {
            name: "get-header-value-trim",
            method: "GET",
            path: "/",
            query: "",
            headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            body: "",
            signed: "host;my-header1;my-header2;x-amz-date",
            canonical: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n\
                        my-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n\
                        host;my-header1;my-header2;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        Vector {
            name: "post-header-key-sort",
            method: "POST",
            path: "/",
            query: "",
            headers: &[("My-Header1", "value1")],
            body: "",
            signed: "host;my-header1;x-amz-date",
            canonical: "",
            signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        },
        Vector {
            name: "post-header-value-case",
            method: "POST",
            path: "/",
            query: "",
            headers: &[("My-Header1", "VALUE1")],
            body: "",
            signed: "host;my-header1;x-amz-date",
            canonical: "",
            signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        },
        Vector {
            name: "post-x-www-form-urlencoded",
            method: "POST",
            path: "/",
            query: "",
            headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            signed: "content-type;host;x-amz-date",
            canonical: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\n\
                        host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                        content-type;host;x-amz-date\n\
                        9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
        Vector {
            name: "post-x-www-form-urlencoded-parameters",
            method: "POST",
            path: "/",
            query: "",
            headers: &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf8",
            )],
            body: "Param1=value1",
            signed: "content-type;host;x-amz-date",
            canonical: "",
            signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        },
        Vector {
            name: "post-sts-token/post-sts-header-before",
            method: "POST",
            path: "/",
            query: "",
            headers: &[(
                "X-Amz-Security-Token",
                "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBu\
                 FqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8\
                 phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38\
                 xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2I\
                 CCR/oLxBA==",
            )],
            body: "",
            signed: "host;x-amz-date;x-amz-security-token",
            canonical: "",
            signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        },
        Vector {
            name: "get-unreserved",
            method: "GET",
            path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        },
        Vector {
            name: "get-utf8",
            method: "GET",
            path: "/ሴ",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\n\
                        x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        },
        Vector {
            name: "normalize-path/get-space",
            method: "GET",
            path: "/example space/",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "GET\n/example%20space/\n\nhost:example.amazonaws.com\n\
                        x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
                        e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        },
        Vector {
            name: "normalize-path/get-slashes",
            method: "GET",
            path: "//example//",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        },
        Vector {
            name: "normalize-path/get-slash",
            method: "GET",
            path: "//",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        Vector {
            name: "normalize-path/get-relative-relative",
            method: "GET",
            path: "/example1/example2/../..",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        Vector {
            name: "normalize-path/get-slash-pointless-dot",
            method: "GET",
            path: "/./example",
            query: "",
            headers: &[],
            body: "",
            signed: "host;x-amz-date",
            canonical: "",
            signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        },
    ];

    fn vector_headers(vector: &Vector) -> Vec<(&'static str, &'static [u8])> {
        let mut headers: Vec<(&str, &[u8])> =
            vec![("Host", HOST.as_bytes()), ("X-Amz-Date", DATE.as_bytes())];
        headers.extend(vector.headers.iter().map(|(n, v)| (*n, v.as_bytes())));
        headers
    }

    fn authorization(scope: &str, signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={signature}"
        )
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        for vector in VECTORS {
            let headers = vector_headers(vector);
            let request = RequestParts {
                method: vector.method,
                path: vector.path,
                query: vector.query,
                headers: &headers,
                body: vector.body.as_bytes(),
            };
            let value = authorization(
                "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request",
                vector.signed,
                vector.signature,
            );
            let header = parse_authorization(&value).unwrap();
            if !vector.canonical.is_empty() {
                let hash = payload_hash(&request).unwrap();
                let canonical = canonical_request(&request, &header.signed_headers, &hash).unwrap();
                assert_eq!(
                    String::from_utf8(canonical).unwrap(),
                    vector.canonical,
                    "{}",
                    vector.name
                );
            }
            let verified = verify_for_service(&request, &header, &secret(), NOW, "service");
            assert_eq!(verified, Ok(NOW), "{}", vector.name);
            // The same request with another secret, or as service kms, does not verify.
            let other = SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ".into());
            assert!(
                matches!(
                    verify_for_service(&request, &header, &other, NOW, "service"),
                    Err(SigV4Error::SignatureMismatch { .. })
                ),
                "{}",
                vector.name
            );
            assert!(matches!(
                verify(&request, &header, &secret(), NOW),
                Err(SigV4Error::WrongService { .. })
            ));
        }
    }

    #[test]
    fn aws_signing_key_and_string_to_sign() {
        // AWS's documented example: the get-vanilla string to sign and signing key.
        let scope = CredentialScope {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "iam".into(),
        };
        let key = signing_key(&secret(), &scope);
        assert_eq!(
            hex::encode(&key[..]),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        let scope = CredentialScope {
            service: "service".into(),
            ..scope
        };
        let canonical = VECTORS[0].canonical.as_bytes();
        assert_eq!(
            string_to_sign(DATE, &scope, canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    #[test]
    fn canonical_parts() {
        let uris = [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/a/./b/../c/", "/a/c/"),
            ("/a%20b", "/a%2520b"),
            ("/a b", "/a%20b"),
            ("/..", "/"),
            ("/~user", "/~user"),
        ];
        for (path, expected) in uris {
            assert_eq!(canonical_uri(path), expected, "{path}");
        }
        let queries = [
            ("", ""),
            ("b=2&a=1", "a=1&b=2"),
            ("a", "a="),
            ("a=%7e&a=~", "a=~&a=~"),
            ("x=a+b", "x=a%2Bb"),
            ("x=a%20b", "x=a%20b"),
            ("x=%zz", "x=%25zz"),
            ("x=%", "x=%25"),
        ];
        for (query, expected) in queries {
            assert_eq!(canonical_query(query), expected, "{query}");
        }
        let trims: [(&[u8], &[u8]); 4] = [
            (b"  a   b  ", b"a b"),
            (b"\ta\t\tb", b"a b"),
            (b"", b""),
            (b"one", b"one"),
        ];
        for (value, expected) in trims {
            let mut out = Vec::new();
            trim_all(value, &mut out);
            assert_eq!(out, expected);
        }
    }

    const SIG: &str = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn authorization_shapes() {
        let scope = "AKID/20150830/us-east-1/kms/aws4_request";
        let good = [
            authorization(scope, "host;x-amz-date", SIG),
            format!("AWS4-HMAC-SHA256 Credential={scope},SignedHeaders=host;x-amz-date,Signature={SIG}"),
            format!("  AWS4-HMAC-SHA256\tCredential={scope} ,\tSignedHeaders=host;x-amz-date ,  Signature={SIG}  "),
            format!("AWS4-HMAC-SHA256 Signature={SIG}, Credential={scope}, SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
        ];
        for value in &good {
            let header = parse_authorization(value).unwrap_or_else(|err| panic!("{value}: {err}"));
            assert_eq!(header.credential.access_key_id, "AKID");
            assert_eq!(header.credential.date, "20150830");
            assert_eq!(header.credential.region, "us-east-1");
            assert_eq!(header.credential.service, "kms");
            assert!(header.signed_headers.contains(&"host".to_string()));
            assert_eq!(header.signature_prefix(), "5fa00fa3");
            assert!(!format!("{header:?}").contains(SIG));
        }
        let bad: Vec<(String, &str)> = vec![
            (
                format!("AWS4-ECDSA-P256-SHA256 Credential=AKID/20150830/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045{}", "0".repeat(60)),
                "SigV4a",
            ),
            ("Bearer abc.def".into(), "only SigV4"),
            ("Basic dXNlcjpwYXNz".into(), "\"Basic\""),
            ("AWS AKID:c2lnbmF0dXJl".into(), "only SigV4"),
            ("AWS4-HMAC-SHA256".into(), "are missing"),
            ("".into(), "only SigV4"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date"), "Signature is missing"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, Signature={SIG}"), "SignedHeaders is missing"),
            (format!("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={SIG}"), "Credential is missing"),
            (authorization(scope, "x-amz-date", SIG), "must include host"),
            (authorization(scope, "host", SIG), "must include x-amz-date"),
            (authorization(scope, "date;host", SIG), "must include x-amz-date"),
            (authorization(scope, "x-amz-date;host", SIG), "ascending order"),
            (authorization(scope, "host;host;x-amz-date", SIG), "ascending order"),
            (authorization(scope, "Host;x-amz-date", SIG), "lowercase header name"),
            (authorization(scope, "host;;x-amz-date", SIG), "lowercase header name"),
            (authorization(scope, "host;x-amz-date", &SIG.to_uppercase()), "64 lowercase hex"),
            (authorization(scope, "host;x-amz-date", &SIG[..63]), "64 lowercase hex"),
            (authorization(scope, "host;x-amz-date", &format!("{SIG}0")), "64 lowercase hex"),
            (authorization(scope, "host;x-amz-date", &format!("{}g", &SIG[..63])), "64 lowercase hex"),
            (authorization("AKID/20150830/us-east-1/kms", "host;x-amz-date", SIG), "Credential must be"),
            (authorization("AKID/20150830/us-east-1/kms/aws4_request/x", "host;x-amz-date", SIG), "Credential must be"),
            (authorization("/20150830/us-east-1/kms/aws4_request", "host;x-amz-date", SIG), "access key id"),
            (authorization("AKID/2015083/us-east-1/kms/aws4_request", "host;x-amz-date", SIG), "not YYYYMMDD"),
            (authorization("AKID/20150830//kms/aws4_request", "host;x-amz-date", SIG), "region"),
            (authorization("AKID/20150830/us-east-1/k ms/aws4_request", "host;x-amz-date", SIG), "service"),
            (authorization("AKID/20150830/us-east-1/kms/aws4_requests", "host;x-amz-date", SIG), "aws4_request"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, Credential={scope}, SignedHeaders=host;x-amz-date, Signature={SIG}"), "appears twice"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature={SIG}, Extra=1"), "unknown part"),
            (format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature={SIG},"), "not Name=Value"),
        ];
        for (value, needle) in &bad {
            let err = parse_authorization(value).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
            assert!(!err.contains(&SIG[8..]), "{err}");
            assert!(!err.contains("dXNlcjpwYXNz"), "{err}");
        }
    }

    #[test]
    fn authorization_from_headers() {
        let value = authorization(
            "AKID/20150830/us-east-1/kms/aws4_request",
            "host;x-amz-date",
            SIG,
        );
        let one: [(&str, &[u8]); 2] = [("host", b"h"), ("Authorization", value.as_bytes())];
        assert!(SigV4Header::from_headers(&one).is_ok());
        let none: [(&str, &[u8]); 1] = [("host", b"h")];
        assert_eq!(SigV4Header::from_headers(&none), Err(SigV4Error::Missing));
        let two: [(&str, &[u8]); 2] = [
            ("authorization", value.as_bytes()),
            ("AUTHORIZATION", value.as_bytes()),
        ];
        assert_eq!(SigV4Header::from_headers(&two), Err(SigV4Error::Duplicate));
        let binary: [(&str, &[u8]); 1] = [("authorization", b"AWS4-HMAC-SHA256 \xff")];
        assert!(SigV4Header::from_headers(&binary).is_err());
    }

    /// A KMS request as an SDK sends it (headers owned, so tests can change them).
    #[derive(Clone)]
    struct Kms {
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    const KMS_SCOPE: &str = "AKIDKMS/20150830/eu-west-1/kms/aws4_request";
    const KMS_SIGNED: &str = "content-type;host;x-amz-date;x-amz-target";

    impl Kms {
        fn new() -> Kms {
            let headers = [
                ("Host", "127.0.0.1:7300"),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "TrentService.Encrypt"),
                ("X-Amz-Date", DATE),
                ("User-Agent", "test/1.0"),
            ];
            Kms {
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                    .collect(),
                body: br#"{"KeyId":"alias/a","Plaintext":"aGVsbG8="}"#.to_vec(),
            }
        }

        fn with<R>(&self, f: impl FnOnce(&RequestParts<'_>) -> R) -> R {
            let headers: Vec<(&str, &[u8])> = self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            f(&RequestParts {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: &self.body,
            })
        }

        /// Signs with the code under test (the vectors above show it signs as AWS does).
        fn sign(&self, scope: &str, signed: &str, secret: &SecretAccessKey) -> SigV4Header {
            let unsigned = parse_authorization(&authorization(scope, signed, SIG)).unwrap();
            let signature = self.with(|request| {
                let hash = payload_hash(request).unwrap();
                let canonical =
                    canonical_request(request, &unsigned.signed_headers, &hash).unwrap();
                let date =
                    std::str::from_utf8(request.single("x-amz-date").unwrap().unwrap()).unwrap();
                let to_sign = string_to_sign(date, &unsigned.credential, &canonical);
                hmac_sha256(
                    &signing_key(secret, &unsigned.credential)[..],
                    to_sign.as_bytes(),
                )
            });
            SigV4Header {
                signature: *signature,
                ..unsigned
            }
        }

        fn set(&mut self, name: &str, value: &str) {
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            self.headers
                .push((name.to_string(), value.as_bytes().to_vec()));
        }
    }

    #[test]
    fn kms_requests_verify_only_as_signed() {
        let base = Kms::new();
        let header = base.sign(KMS_SCOPE, KMS_SIGNED, &secret());
        assert_eq!(base.with(|r| verify(r, &header, &secret(), NOW)), Ok(()));
        let minute = 60_000;
        type Change = fn(&mut Kms);
        let cases: Vec<(&str, Change, UnixMillis, Result<(), &str>)> = vec![
            ("as signed", |_| {}, NOW, Ok(())),
            (
                "unsigned header added",
                |k| k.set("X-Forwarded-For", "1.2.3.4"),
                NOW,
                Ok(()),
            ),
            (
                "unsigned header changed",
                |k| k.set("User-Agent", "other"),
                NOW,
                Ok(()),
            ),
            ("5 min ahead", |_| {}, NOW + 5 * minute, Ok(())),
            ("5 min behind", |_| {}, NOW - 5 * minute, Ok(())),
            (
                "6 min later",
                |_| {},
                NOW + 6 * minute,
                Err("-360 s from kmsd's clock"),
            ),
            (
                "6 min earlier",
                |_| {},
                NOW - 6 * minute,
                Err("360 s from kmsd's clock"),
            ),
            (
                "body changed",
                |k| k.body.push(b' '),
                NOW,
                Err("signature does not match"),
            ),
            (
                "signed header changed",
                |k| k.set("X-Amz-Target", "TrentService.Decrypt"),
                NOW,
                Err("signature does not match"),
            ),
            (
                "signed header repeated",
                |k| k.headers.push(("x-amz-target".into(), b"x".to_vec())),
                NOW,
                Err("signature does not match"),
            ),
            (
                "signed header removed",
                |k| k.headers.retain(|(n, _)| n != "X-Amz-Target"),
                NOW,
                Err("x-amz-target is signed but not in the request"),
            ),
            (
                "date changed",
                |k| k.set("X-Amz-Date", "20150830T123601Z"),
                NOW,
                Err("signature does not match"),
            ),
            (
                "date of another day",
                |k| k.set("X-Amz-Date", "20150831T000000Z"),
                NOW,
                Err("is not X-Amz-Date's"),
            ),
            (
                "date not a date",
                |k| k.set("X-Amz-Date", "20151330T123600Z"),
                NOW,
                Err("YYYYMMDDTHHMMSSZ"),
            ),
            (
                "date in another form",
                |k| k.set("X-Amz-Date", "Sun, 30 Aug 2015 12:36:00 GMT"),
                NOW,
                Err("YYYYMMDDTHHMMSSZ"),
            ),
            (
                "date repeated",
                |k| {
                    k.headers
                        .push(("x-amz-date".into(), DATE.as_bytes().to_vec()));
                },
                NOW,
                Err("appears more than once"),
            ),
            (
                "content hash sent",
                |k| {
                    let hash = hex::encode(Sha256::digest(&k.body));
                    k.set("X-Amz-Content-Sha256", &hash);
                },
                NOW,
                Ok(()),
            ),
            (
                "content hash of another body",
                |k| k.set("X-Amz-Content-Sha256", EMPTY_SHA256),
                NOW,
                Err("not the SHA-256 of the body"),
            ),
            (
                "unsigned payload",
                |k| k.set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
                NOW,
                Err("requires the payload to be signed"),
            ),
        ];
        for (name, change, now, expected) in cases {
            let mut request = base.clone();
            change(&mut request);
            let got = request.with(|r| verify(r, &header, &secret(), now));
            match (got, expected) {
                (Ok(()), Ok(())) => {}
                (Err(err), Err(needle)) => {
                    let text = err.to_string();
                    assert!(text.contains(needle), "{name}: {text}");
                    assert!(
                        !text.contains(SECRET) && !text.contains(&hex::encode(header.signature)),
                        "{name}: {text}"
                    );
                }
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
        }
        let wrong = SecretAccessKey::new("not-the-secret".into());
        let err = base.with(|r| verify(r, &header, &wrong, NOW)).unwrap_err();
        assert_eq!(err.to_string(), "the signature does not match for access key id AKIDKMS (a wrong secret, or the request was changed after signing)");
        let s3 = base.sign(
            "AKIDKMS/20150830/eu-west-1/s3/aws4_request",
            KMS_SIGNED,
            &secret(),
        );
        assert!(matches!(
            base.with(|r| verify(r, &s3, &secret(), NOW)),
            Err(SigV4Error::WrongService { .. })
        ));
    }

    fn policy(verify_all: bool) -> SigV4Policy {
        SigV4Policy::new(SigV4Keys {
            verify_all,
            keys: vec![SigV4Key {
                access_key_id: "AKIDKMS".into(),
                uid: 1000,
                secret: secret(),
            }],
        })
    }

    #[test]
    fn policy_decisions() {
        let request = Kms::new();
        let signed = request.sign(KMS_SCOPE, KMS_SIGNED, &secret());
        let forged = request.sign(KMS_SCOPE, KMS_SIGNED, &SecretAccessKey::new("guess".into()));
        let unknown = request.sign(
            "kmsd/20150830/eu-west-1/kms/aws4_request",
            KMS_SIGNED,
            &SecretAccessKey::new("any".into()),
        );
        let s3 = request.sign(
            "kmsd/20150830/eu-west-1/s3/aws4_request",
            KMS_SIGNED,
            &secret(),
        );
        type Case<'a> = (
            &'a str,
            bool,
            &'a SigV4Header,
            Option<u32>,
            Result<Option<u32>, &'a str>,
        );
        let cases: [Case<'_>; 10] = [
            (
                "configured key, uid seen",
                false,
                &signed,
                Some(1000),
                Ok(Some(1000)),
            ),
            (
                "configured key, uid unseen",
                false,
                &signed,
                None,
                Ok(Some(1000)),
            ),
            (
                "configured key, other uid",
                false,
                &signed,
                Some(1001),
                Err("stands for uid 1000, but the connection is uid 1001"),
            ),
            (
                "forged, uid unseen",
                false,
                &forged,
                None,
                Err("signature does not match"),
            ),
            (
                "forged, uid seen",
                false,
                &forged,
                Some(1000),
                Err("signature does not match"),
            ),
            (
                "unknown key, uid seen",
                false,
                &unknown,
                Some(1001),
                Ok(None),
            ),
            (
                "unknown key, uid unseen",
                false,
                &unknown,
                None,
                Err("kernel cannot name the caller"),
            ),
            (
                "unknown key, verify_all",
                true,
                &unknown,
                Some(1001),
                Err("verify_all requires"),
            ),
            (
                "configured key, verify_all",
                true,
                &signed,
                None,
                Ok(Some(1000)),
            ),
            (
                "another service",
                false,
                &s3,
                Some(1000),
                Err("names service \"s3\""),
            ),
        ];
        for (name, verify_all, header, kernel_uid, expected) in cases {
            let policy = policy(verify_all);
            let got = request.with(|r| policy.authenticate(header, r, NOW, kernel_uid));
            match (got, expected) {
                (Ok(uid), Ok(want)) => assert_eq!(uid, want, "{name}"),
                (Err(err), Err(needle)) => {
                    assert!(err.to_string().contains(needle), "{name}: {err}");
                }
                (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
            }
            assert!(!format!("{policy:?}").contains(SECRET));
        }
    }

    #[test]
    fn policy_refuses_replays() {
        let policy = policy(false);
        let request = Kms::new();
        let header = request.sign(KMS_SCOPE, KMS_SIGNED, &secret());
        assert_eq!(
            request.with(|r| policy.authenticate(&header, r, NOW, None)),
            Ok(Some(1000))
        );
        let again = request
            .with(|r| policy.authenticate(&header, r, NOW + 1000, None))
            .unwrap_err();
        assert!(matches!(again, SigV4Error::Replayed { .. }), "{again}");
        assert!(again.to_string().contains(&header.signature_prefix()));
        assert!(!again.to_string().contains(&hex::encode(header.signature)));
        // The same request on a connection whose uid the kernel saw is that uid's own repeat
        // (SDKs send identical requests within a second): accepted, and not recorded.
        for _ in 0..2 {
            let again = request.with(|r| policy.authenticate(&header, r, NOW, Some(1000)));
            assert_eq!(again, Ok(Some(1000)));
        }
        // Once out of the window the skew check refuses it (and the window forgot it).
        let late = request.with(|r| policy.authenticate(&header, r, NOW + 301_000, None));
        assert!(matches!(late, Err(SigV4Error::Skewed { .. })));
        // A new signature (another second) is accepted.
        let mut next = Kms::new();
        next.set("X-Amz-Date", "20150830T123601Z");
        let header = next.sign(KMS_SCOPE, KMS_SIGNED, &secret());
        assert_eq!(
            next.with(|r| policy.authenticate(&header, r, NOW, None)),
            Ok(Some(1000))
        );
        // Shape-only requests (unknown keys) are not remembered: the kernel's uid is the
        // authority there.
        let unknown = next.sign(
            "kmsd/20150830/eu-west-1/kms/aws4_request",
            KMS_SIGNED,
            &secret(),
        );
        for _ in 0..2 {
            assert_eq!(
                next.with(|r| policy.authenticate(&unknown, r, NOW, Some(7))),
                Ok(None)
            );
        }
        assert_eq!(policy.replay.len(), 2);
    }

    fn header_with(signature: u8) -> SigV4Header {
        let mut header =
            parse_authorization(&authorization(KMS_SCOPE, "host;x-amz-date", SIG)).unwrap();
        header.signature = [signature; 32];
        header
    }

    #[test]
    fn replay_window_is_bounded() {
        let window = ReplayWindow::new(2);
        let (a, b, c) = (header_with(1), header_with(2), header_with(3));
        assert_eq!(window.check_and_record(&a, NOW, NOW), Ok(()));
        assert_eq!(window.check_and_record(&b, NOW + 1000, NOW + 1000), Ok(()));
        assert!(matches!(
            window.check_and_record(&a, NOW, NOW + 2000),
            Err(SigV4Error::Replayed { .. })
        ));
        let full = window.check_and_record(&c, NOW, NOW + 2000).unwrap_err();
        assert_eq!(full, SigV4Error::ReplayWindowFull { capacity: 2 });
        assert!(
            full.to_string()
                .contains("replay window is full (2 signatures"),
            "{full}"
        );
        // a expires at NOW + 300 s (its date plus the skew): then c fits.
        assert!(window.check_and_record(&c, NOW, NOW + MAX_SKEW_MS).is_err());
        assert_eq!(
            window.check_and_record(&c, NOW + MAX_SKEW_MS + 1, NOW + MAX_SKEW_MS + 1),
            Ok(())
        );
        assert_eq!(window.len(), 2);
        // Much later, everything has expired.
        assert_eq!(
            window.check_and_record(&a, NOW + 3_600_000, NOW + 3_600_000),
            Ok(())
        );
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn replay_window_is_shared_across_threads() {
        let window = std::sync::Arc::new(ReplayWindow::new(1024));
        let header = header_with(9);
        let accepted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let window = std::sync::Arc::clone(&window);
                    let header = header.clone();
                    scope.spawn(move || {
                        usize::from(window.check_and_record(&header, NOW, NOW).is_ok())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(accepted, 1);
    }
}
