//! Canonical, unambiguous byte encoding of an AWS-style encryption context (a string map),
//! used as additional authenticated data. Order-independent: pairs are sorted by key bytes.

use std::collections::BTreeMap;

/// An encryption context. A `BTreeMap` keeps keys sorted by their UTF-8 bytes.
pub type EncryptionContext = BTreeMap<String, String>;

/// Encodes the context as `count:u32be` then, for each pair in key order,
/// `len(key):u32be key len(value):u32be value`. The empty context encodes as four zero bytes.
pub fn canonical_context(context: &EncryptionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + context
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(context.len() as u32).to_be_bytes());
    for (key, value) in context {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    type Pairs<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn encodings_are_distinct_where_concatenation_would_collide() {
        let cases: &[(Pairs<'_>, Pairs<'_>)] = &[
            (&[("ab", "c")], &[("a", "bc")]),
            (&[("a", "b"), ("c", "d")], &[("a", "bcd")]),
            (&[("", "ab")], &[("ab", "")]),
            (&[], &[("", "")]),
        ];
        for (left, right) in cases {
            assert_ne!(
                canonical_context(&ctx(left)),
                canonical_context(&ctx(right))
            );
        }
    }

    #[test]
    fn order_does_not_matter() {
        assert_eq!(
            canonical_context(&ctx(&[("b", "2"), ("a", "1")])),
            canonical_context(&ctx(&[("a", "1"), ("b", "2")]))
        );
    }

    #[test]
    fn layout_is_stable() {
        assert_eq!(
            canonical_context(&ctx(&[("k", "v")])),
            vec![0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'v']
        );
        assert_eq!(canonical_context(&ctx(&[])), vec![0, 0, 0, 0]);
    }
}
