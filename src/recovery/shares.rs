//! The m-of-n shares of a recovery key as text an operator can write down: Shamir secret
//! sharing over GF(256) (the `blahaj` crate), one share per line, each with its escrow id,
//! threshold, share number and a checksum, so that a typo is reported as
//! `share 2: checksum mismatch` instead of rebuilding a wrong key.
//!
//! ```text
//! kmsd-r1-<escrow id, 8 hex>-<threshold>-<share number>-<64 hex in groups of 4>-<check, 8 hex>
//! check = first 4 bytes of SHA-256("kmsd/v1/recovery-share\0" || escrow id (4 bytes)
//!                                  || threshold || share number || y (32 bytes))
//! ```
//!
//! Parsing ignores case, spaces and line breaks; the groups' dashes are optional.

use super::RecoveryError;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The text every share starts with.
pub const PREFIX: &str = "kmsd-r1-";
/// Length of the shared secret (the recovery key).
const SECRET_LEN: usize = 32;

/// One share, parsed and checked.
pub struct Share {
    /// The escrow it belongs to (8 hex digits).
    pub escrow_id: String,
    /// Shares needed to rebuild the key.
    pub threshold: u8,
    /// Share number (Shamir's x, 1..=255).
    pub index: u8,
    /// Shamir's y, one byte per secret byte.
    y: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("escrow_id", &self.escrow_id)
            .field("threshold", &self.threshold)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

fn checksum(escrow: &[u8], threshold: u8, index: u8, y: &[u8]) -> [u8; 4] {
    let mut hash = Sha256::new();
    hash.update(b"kmsd/v1/recovery-share\0");
    hash.update(escrow);
    hash.update([threshold, index]);
    hash.update(y);
    let digest = hash.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Splits `secret` into `count` shares, any `threshold` of which rebuild it; returns them
/// as text, numbered 1..=count.
pub fn split(
    escrow_id: &str,
    secret: &[u8; SECRET_LEN],
    threshold: u8,
    count: u8,
) -> Result<Vec<Zeroizing<String>>, RecoveryError> {
    if threshold == 0 || count == 0 || threshold > count {
        return Err(RecoveryError::Invalid(format!(
            "--threshold {threshold} of --shares {count}: the threshold must be between 1 and the number of shares"
        )));
    }
    let escrow = hex::decode(escrow_id)
        .map_err(|_| RecoveryError::Invalid(format!("escrow id {escrow_id:?} is not hex")))?;
    let dealer = blahaj::Sharks(threshold).dealer(secret);
    let mut out = Vec::with_capacity(usize::from(count));
    for share in dealer.take(usize::from(count)) {
        let bytes = Zeroizing::new(Vec::<u8>::from(&share));
        let (index, y) = (bytes[0], &bytes[1..]);
        let check = checksum(&escrow, threshold, index, y);
        let hex_y = Zeroizing::new(hex::encode_upper(y));
        let groups: Vec<&str> = hex_y
            .as_bytes()
            .chunks(4)
            .map(|chunk| std::str::from_utf8(chunk).unwrap_or(""))
            .collect();
        out.push(Zeroizing::new(format!(
            "{PREFIX}{escrow_id}-{threshold}-{index}-{}-{}",
            groups.join("-"),
            hex::encode_upper(check)
        )));
    }
    Ok(out)
}

/// Parses share number `position` (1-based, in the order given) of what the operator
/// typed.
pub fn parse(position: usize, text: &str) -> Result<Share, RecoveryError> {
    let bad = |reason: String| RecoveryError::BadShare { position, reason };
    let compact: Zeroizing<String> = Zeroizing::new(
        text.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase(),
    );
    let Some(rest) = compact.strip_prefix(PREFIX) else {
        return Err(bad(format!(
            "not a kmsd recovery share (it must start with {PREFIX})"
        )));
    };
    let fields: Vec<&str> = rest.split('-').filter(|f| !f.is_empty()).collect();
    if fields.len() < 5 {
        return Err(bad(
            "too short: a share has an escrow id, a threshold, a share number, 64 hex digits and a checksum".into(),
        ));
    }
    let escrow_id = fields[0];
    let threshold: u8 = fields[1]
        .parse()
        .map_err(|_| bad(format!("threshold {:?} is not a number", fields[1])))?;
    let index: u8 = fields[2]
        .parse()
        .map_err(|_| bad(format!("share number {:?} is not a number", fields[2])))?;
    let check_hex = fields[fields.len() - 1];
    let y_hex: Zeroizing<String> = Zeroizing::new(fields[3..fields.len() - 1].concat());
    let not_hex = |what: &str, value: &str| {
        value
            .chars()
            .find(|c| !c.is_ascii_hexdigit())
            .map(|c| bad(format!("{what}: {c:?} is not a hex digit (0-9, A-F)")))
    };
    for (what, value) in [
        ("escrow id", escrow_id),
        ("share digits", y_hex.as_str()),
        ("checksum", check_hex),
    ] {
        if let Some(err) = not_hex(what, value) {
            return Err(err);
        }
    }
    if escrow_id.len() != 8 || check_hex.len() != 8 {
        return Err(bad(
            "checksum mismatch (the escrow id and the checksum have 8 hex digits each; check the share for a typo)".into(),
        ));
    }
    if y_hex.len() != 2 * SECRET_LEN {
        return Err(bad(format!(
            "checksum mismatch ({} share digits, expected {}; check the share for a missing or extra digit)",
            y_hex.len(),
            2 * SECRET_LEN
        )));
    }
    let escrow = hex::decode(escrow_id).map_err(|_| bad("escrow id is not hex".into()))?;
    let y = Zeroizing::new(
        hex::decode(y_hex.as_bytes()).map_err(|_| bad("share digits are not hex".into()))?,
    );
    let check = hex::decode(check_hex).map_err(|_| bad("checksum is not hex".into()))?;
    if check != checksum(&escrow, threshold, index, &y) {
        return Err(bad(
            "checksum mismatch (check the share for a typo)".to_string()
        ));
    }
    if index == 0 || threshold == 0 {
        return Err(bad("share number and threshold start at 1".into()));
    }
    Ok(Share {
        escrow_id: escrow_id.to_string(),
        threshold,
        index,
        y,
    })
}

/// Rebuilds the secret of escrow `escrow_id` from parsed shares: they must all belong to
/// it, be distinct, and be at least as many as the threshold.
pub fn combine(
    escrow_id: &str,
    shares: &[Share],
) -> Result<Zeroizing<[u8; SECRET_LEN]>, RecoveryError> {
    let escrow_id = escrow_id.to_ascii_lowercase();
    let Some(first) = shares.first() else {
        return Err(RecoveryError::TooFewShares {
            given: 0,
            needed: 1,
        });
    };
    let threshold = first.threshold;
    let mut seen = std::collections::BTreeMap::new();
    for (i, share) in shares.iter().enumerate() {
        let position = i + 1;
        if share.escrow_id != escrow_id {
            return Err(RecoveryError::BadShare {
                position,
                reason: format!(
                    "belongs to escrow {}, not to this state dir's escrow {escrow_id}",
                    share.escrow_id
                ),
            });
        }
        if share.threshold != threshold {
            return Err(RecoveryError::BadShare {
                position,
                reason: format!(
                    "says {} shares are needed, share 1 says {threshold}",
                    share.threshold
                ),
            });
        }
        if let Some(earlier) = seen.insert(share.index, position) {
            return Err(RecoveryError::BadShare {
                position,
                reason: format!(
                    "is share number {} again (already given as share {earlier})",
                    share.index
                ),
            });
        }
    }
    if shares.len() < usize::from(threshold) {
        return Err(RecoveryError::TooFewShares {
            given: shares.len(),
            needed: usize::from(threshold),
        });
    }
    let parsed: Vec<blahaj::Share> = shares
        .iter()
        .map(|share| {
            let mut bytes = Zeroizing::new(Vec::with_capacity(1 + share.y.len()));
            bytes.push(share.index);
            bytes.extend_from_slice(&share.y);
            blahaj::Share::try_from(bytes.as_slice())
                .map_err(|reason| RecoveryError::Invalid(reason.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let secret = Zeroizing::new(
        blahaj::Sharks(threshold)
            .recover(&parsed)
            .map_err(|reason| RecoveryError::Invalid(reason.to_string()))?,
    );
    let mut out = Zeroizing::new([0u8; SECRET_LEN]);
    if secret.len() != SECRET_LEN {
        return Err(RecoveryError::Invalid(format!(
            "the shares rebuild {} bytes, expected {SECRET_LEN}",
            secret.len()
        )));
    }
    out.copy_from_slice(&secret);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const ESCROW: &str = "1f2e3d4c";

    fn secret() -> [u8; 32] {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8 * 7 + 3;
        }
        s
    }

    fn parse_all(texts: &[&str]) -> Result<Vec<Share>, RecoveryError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| parse(i + 1, t))
            .collect()
    }

    #[test]
    fn any_threshold_subset_rebuilds_the_secret() {
        let shares = split(ESCROW, &secret(), 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        for picks in [[0, 1, 2], [4, 2, 0], [1, 3, 4], [0, 3, 4]] {
            let texts: Vec<&str> = picks.iter().map(|&i| shares[i].as_str()).collect();
            let parsed = parse_all(&texts).unwrap();
            assert_eq!(*combine(ESCROW, &parsed).unwrap(), secret(), "{picks:?}");
        }
        // Four or five work too.
        let texts: Vec<&str> = shares.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            *combine(ESCROW, &parse_all(&texts).unwrap()).unwrap(),
            secret()
        );
    }

    #[test]
    fn shares_are_forgiving_about_case_and_spaces() {
        let shares = split(ESCROW, &secret(), 2, 2).unwrap();
        let sloppy: Vec<String> = shares
            .iter()
            .map(|s| {
                s.to_ascii_lowercase()
                    .replace('-', "- ")
                    .replacen(' ', "\n", 3)
            })
            .collect();
        let texts: Vec<&str> = sloppy.iter().map(String::as_str).collect();
        assert_eq!(
            *combine(ESCROW, &parse_all(&texts).unwrap()).unwrap(),
            secret()
        );
    }

    #[test]
    fn mistakes_are_named() {
        let shares = split(ESCROW, &secret(), 2, 3).unwrap();
        let one = shares[0].to_string();
        // Change one digit of the share body (after the header).
        let mut typo = one.clone().into_bytes();
        let at = PREFIX.len() + 8 + 5 + 2;
        typo[at] = if typo[at] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        let other_escrow = split("aaaaaaaa", &secret(), 2, 3).unwrap();
        let not_hex = one.replacen(ESCROW, "1f2e3d4g", 1);
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec![&shares[1], &typo], "share 2: checksum mismatch"),
            (vec!["hello"], "share 1: not a kmsd recovery share"),
            (vec![&shares[0]], "too few shares: 1 given, 2 needed"),
            (
                vec![&shares[0], &shares[0]],
                "share 2: is share number 1 again",
            ),
            (
                vec![&shares[0], &other_escrow[1]],
                "share 2: belongs to escrow aaaaaaaa",
            ),
            (
                vec![&shares[0], &one[..one.len() - 12]],
                "share 2: checksum mismatch",
            ),
            (
                vec![&shares[0], &not_hex],
                "share 2: escrow id: 'g' is not a hex digit",
            ),
        ];
        for (texts, expected) in cases {
            let got = parse_all(&texts)
                .and_then(|parsed| combine(ESCROW, &parsed).map(|_| ()))
                .expect_err(expected)
                .to_string();
            assert!(got.contains(expected), "{texts:?}: {got}");
        }
    }

    #[test]
    fn bad_split_parameters_are_refused() {
        for (t, n) in [(0, 3), (4, 3), (1, 0)] {
            assert!(split(ESCROW, &secret(), t, n).is_err(), "{t} of {n}");
        }
        assert_eq!(split(ESCROW, &secret(), 1, 1).unwrap().len(), 1);
    }
}
