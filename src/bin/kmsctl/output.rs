//! Responses as the user sees them: an order-preserving JSON value (so `--output json` shows
//! kmsd's answer field for field, in kmsd's order), the `--query` subset of JMESPath, and
//! aws cli's `--output text` layout.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;

/// A JSON value whose objects keep their fields in the order they arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The first field named `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Takes the field named `key` out of an object.
    pub fn take(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Object(fields) => {
                let index = fields.iter().position(|(k, _)| k == key)?;
                Some(fields.remove(index).1)
            }
            _ => None,
        }
    }

    fn is_scalar(&self) -> bool {
        !matches!(self, Json::Array(_) | Json::Object(_))
    }

    /// How aws cli's text output writes a value (Python's `str()`): strings bare,
    /// `True`/`False`, `None`.
    fn text(&self) -> String {
        match self {
            Json::Null => "None".to_string(),
            Json::Bool(true) => "True".to_string(),
            Json::Bool(false) => "False".to_string(),
            Json::Number(n) => n.to_string(),
            Json::String(s) => s.clone(),
            Json::Array(_) | Json::Object(_) => serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        Json::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut fields = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            fields.push((key, value));
        }
        Ok(Json::Object(fields))
    }
}

/// What `--output` selects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The response JSON, pretty-printed (4-space indent, as aws cli).
    #[default]
    Json,
    /// aws cli's text layout: tab-separated values; with --query, bare values.
    Text,
    /// Aligned columns (`audit query`); other commands show it as text.
    Table,
}

/// Renders a (queried) response. Like aws cli, an empty object (e.g. EnableKey's `{}`)
/// prints nothing at all.
pub fn render(doc: &Json, format: OutputFormat) -> String {
    if matches!(doc, Json::Object(fields) if fields.is_empty()) {
        return String::new();
    }
    match format {
        OutputFormat::Json => {
            let mut out = Vec::new();
            let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            match doc.serialize(&mut serializer) {
                Ok(()) => {
                    let mut text = String::from_utf8_lossy(&out).into_owned();
                    text.push('\n');
                    text
                }
                Err(_) => String::new(),
            }
        }
        OutputFormat::Text | OutputFormat::Table => render_text(doc),
    }
}

/// One step of a `--query` path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// `Name` or `"Quoted Name"`.
    Field(String),
    /// `[N]`, negative from the end.
    Index(i64),
    /// `[*]`: apply the rest to each element, dropping nulls.
    Wildcard,
    /// `[]`: flatten one level, then as `[*]`.
    Flatten,
}

/// A `--query` expression: the small subset of JMESPath that covers scripting needs —
/// field names and dotted paths (`KeyMetadata.KeyId`), indexes (`Keys[0]`) and list
/// projections (`Keys[].KeyId`, `Aliases[*].AliasName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    steps: Vec<Step>,
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, String> {
        let chars: Vec<char> = text.trim().chars().collect();
        let unsupported = || {
            format!(
                "unsupported --query '{text}': kmsctl understands field names, dotted paths \
                 (KeyMetadata.KeyId), indexes (Keys[0]) and projections (Keys[].KeyId)"
            )
        };
        if chars.is_empty() {
            return Err("the --query expression is empty".to_string());
        }
        let mut steps = Vec::new();
        let mut i = 0;
        let mut expect_field = true;
        while i < chars.len() {
            let c = chars[i];
            if expect_field {
                if c == '"' {
                    let mut name = String::new();
                    i += 1;
                    loop {
                        match chars.get(i) {
                            None => return Err(unsupported()),
                            Some('"') => break,
                            Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\')) => {
                                name.push(chars[i + 1]);
                                i += 2;
                            }
                            Some(&c) => {
                                name.push(c);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                    steps.push(Step::Field(name));
                } else if c.is_ascii_alphabetic() || c == '_' {
                    let start = i;
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    steps.push(Step::Field(chars[start..i].iter().collect()));
                } else if c != '[' {
                    return Err(unsupported());
                }
                expect_field = false;
                continue;
            }
            match c {
                '.' => {
                    expect_field = true;
                    i += 1;
                    if i == chars.len() || chars[i] == '[' {
                        return Err(unsupported());
                    }
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or_else(unsupported)?;
                    let inner: String = chars[i + 1..i + close].iter().collect();
                    let step = match inner.trim() {
                        "" => Step::Flatten,
                        "*" => Step::Wildcard,
                        number => Step::Index(number.parse().map_err(|_| unsupported())?),
                    };
                    steps.push(step);
                    i += close + 1;
                }
                _ => return Err(unsupported()),
            }
        }
        Ok(Query { steps })
    }

    /// Evaluates the query; a missing field is `null`, as in JMESPath.
    pub fn apply(&self, doc: &Json) -> Json {
        evaluate(doc, &self.steps)
    }
}

fn evaluate(value: &Json, steps: &[Step]) -> Json {
    let Some((step, rest)) = steps.split_first() else {
        return value.clone();
    };
    match (step, value) {
        (Step::Field(name), Json::Object(_)) => match value.get(name) {
            Some(inner) => evaluate(inner, rest),
            None => Json::Null,
        },
        (Step::Index(index), Json::Array(items)) => {
            let len = items.len() as i64;
            let position = if *index < 0 { len + index } else { *index };
            match usize::try_from(position).ok().and_then(|p| items.get(p)) {
                Some(inner) => evaluate(inner, rest),
                None => Json::Null,
            }
        }
        (Step::Wildcard, Json::Array(items)) => project(items.iter(), rest),
        (Step::Flatten, Json::Array(items)) => project(
            items.iter().flat_map(|item| match item {
                Json::Array(inner) => inner.iter().collect::<Vec<_>>(),
                other => vec![other],
            }),
            rest,
        ),
        _ => Json::Null,
    }
}

fn project<'a>(items: impl Iterator<Item = &'a Json>, rest: &[Step]) -> Json {
    Json::Array(
        items
            .map(|item| evaluate(item, rest))
            .filter(|v| *v != Json::Null)
            .collect(),
    )
}

/// aws cli's text output (awscli/formatter.py + text.py): an object's scalar fields,
/// sorted by name, on one tab-separated line (prefixed by the upper-cased name of the field
/// that holds it, when nested); then its list and object fields, each under its own name.
/// A list of objects writes one line per object; a list of scalars is one `NAME\tvalue`
/// line each, or one tab-separated line at top level; a top-level scalar is written bare.
pub fn render_text(doc: &Json) -> String {
    let mut out = String::new();
    format_item(doc, None, None, &mut out);
    out
}

fn format_item(
    item: &Json,
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
    out: &mut String,
) {
    match item {
        Json::Object(fields) => format_object(fields, identifier, scalar_keys, out),
        Json::Array(items) => format_list(items, identifier, out),
        scalar => {
            out.push_str(&scalar.text());
            out.push('\n');
        }
    }
}

fn format_list(items: &[Json], identifier: Option<&str>, out: &mut String) {
    if items.is_empty() {
        return;
    }
    if items.iter().any(|item| matches!(item, Json::Object(_))) {
        let mut keys: Vec<String> = items
            .iter()
            .filter_map(|item| match item {
                Json::Object(fields) => Some(fields),
                _ => None,
            })
            .flatten()
            .filter(|(_, v)| v.is_scalar())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys.dedup();
        for item in items {
            format_item(item, identifier, Some(&keys), out);
        }
    } else if items.iter().any(|item| matches!(item, Json::Array(_))) {
        let (scalars, lists): (Vec<&Json>, Vec<&Json>) =
            items.iter().partition(|item| item.is_scalar());
        if !scalars.is_empty() {
            format_scalar_list(scalars.into_iter(), identifier, out);
        }
        for list in lists {
            format_item(list, identifier, None, out);
        }
    } else {
        format_scalar_list(items.iter(), identifier, out);
    }
}

fn format_scalar_list<'a>(
    items: impl Iterator<Item = &'a Json>,
    identifier: Option<&str>,
    out: &mut String,
) {
    match identifier {
        Some(identifier) => {
            let identifier = identifier.to_uppercase();
            for item in items {
                out.push_str(&identifier);
                out.push('\t');
                out.push_str(&item.text());
                out.push('\n');
            }
        }
        None => {
            let line: Vec<String> = items.map(Json::text).collect();
            out.push_str(&line.join("\t"));
            out.push('\n');
        }
    }
}

fn format_object(
    fields: &[(String, Json)],
    identifier: Option<&str>,
    scalar_keys: Option<&[String]>,
    out: &mut String,
) {
    let mut sorted: Vec<&(String, Json)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut scalars, nested): (Vec<String>, Vec<&(String, Json)>) = match scalar_keys {
        Some(keys) => (
            keys.iter()
                .map(|key| {
                    fields
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.text())
                        .unwrap_or_default()
                })
                .collect(),
            sorted
                .into_iter()
                .filter(|(k, _)| !keys.contains(k))
                .collect(),
        ),
        None => {
            let (scalars, nested): (Vec<_>, Vec<_>) =
                sorted.into_iter().partition(|(_, v)| v.is_scalar());
            (scalars.into_iter().map(|(_, v)| v.text()).collect(), nested)
        }
    };
    if !scalars.is_empty() {
        if let Some(identifier) = identifier {
            scalars.insert(0, identifier.to_uppercase());
        }
        out.push_str(&scalars.join("\t"));
        out.push('\n');
    }
    for (key, value) in nested {
        format_item(value, Some(key), None, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    const DESCRIBE: &str = r#"{"KeyMetadata": {"AWSAccountId": "111122223333",
        "KeyId": "1234", "Arn": "arn:aws:kms:local:111122223333:key/1234",
        "CreationDate": 1700000000.25, "Enabled": true, "Description": "",
        "KeyState": "Enabled", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": false}}"#;

    const LIST_KEYS: &str = r#"{"Keys": [
        {"KeyId": "k1", "KeyArn": "arn:k1"},
        {"KeyId": "k2", "KeyArn": "arn:k2"}], "Truncated": false}"#;

    #[test]
    fn json_keeps_field_order_and_numbers() {
        let text = r#"{"Zeta":1,"Alpha":{"B":1700000000.0,"A":[true,null,"x"]},"Mid":-2}"#;
        let parsed = doc(text);
        assert_eq!(serde_json::to_string(&parsed).unwrap(), text);
        assert_eq!(
            render(&parsed, OutputFormat::Json),
            "{\n    \"Zeta\": 1,\n    \"Alpha\": {\n        \"B\": 1700000000.0,\n        \
             \"A\": [\n            true,\n            null,\n            \"x\"\n        ]\n    \
             },\n    \"Mid\": -2\n}\n"
        );
    }

    #[test]
    fn empty_responses_print_nothing() {
        assert_eq!(render(&doc("{}"), OutputFormat::Json), "");
        assert_eq!(render(&doc("{}"), OutputFormat::Text), "");
        assert_eq!(render(&Json::Null, OutputFormat::Json), "null\n");
        assert_eq!(render(&doc("[]"), OutputFormat::Json), "[]\n");
    }

    #[test]
    fn query_paths() {
        let describe = doc(DESCRIBE);
        let list = doc(LIST_KEYS);
        let nested = doc(r#"{"A": [[1, 2], [3], 4], "B": {"c d": {"e": "f"}}}"#);
        let cases: &[(&Json, &str, &str)] = &[
            (&describe, "KeyMetadata.KeyId", r#""1234""#),
            (&describe, " KeyMetadata.Enabled ", "true"),
            (
                &describe,
                "KeyMetadata.EncryptionAlgorithms[0]",
                r#""SYMMETRIC_DEFAULT""#,
            ),
            (
                &describe,
                "KeyMetadata.EncryptionAlgorithms[-1]",
                r#""SYMMETRIC_DEFAULT""#,
            ),
            (&describe, "KeyMetadata.EncryptionAlgorithms[1]", "null"),
            (&describe, "KeyMetadata.Missing", "null"),
            (&describe, "Missing.KeyId", "null"),
            (&describe, "KeyMetadata.KeyId.Deeper", "null"),
            (&list, "Keys[].KeyId", r#"["k1","k2"]"#),
            (&list, "Keys[*].KeyArn", r#"["arn:k1","arn:k2"]"#),
            (&list, "Keys[1].KeyId", r#""k2""#),
            (&list, "Keys[].Missing", "[]"),
            (&list, "Truncated", "false"),
            (&list, "Truncated[0]", "null"),
            (&nested, "A[]", "[1,2,3,4]"),
            (&nested, "A[*]", "[[1,2],[3],4]"),
            (&nested, "A[0][1]", "2"),
            (&nested, r#"B."c d".e"#, r#""f""#),
        ];
        for (input, query, expected) in cases {
            let query_value = Query::parse(query).unwrap();
            let got = serde_json::to_string(&query_value.apply(input)).unwrap();
            assert_eq!(&got, expected, "{query}");
        }
    }

    #[test]
    fn query_syntax_errors() {
        for bad in [
            "", "  ", ".Key", "Key.", "Key..Id", "Keys[", "Keys[x]", "Keys[?a]", "a|b", "a b",
            "Key.[0]", "\"open",
        ] {
            assert!(Query::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_rendering() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            // Bare values under --query, as `aws ... --query X --output text`.
            (DESCRIBE, Some("KeyMetadata.KeyId"), "1234\n"),
            (DESCRIBE, Some("KeyMetadata.Enabled"), "True\n"),
            (
                DESCRIBE,
                Some("KeyMetadata.CreationDate"),
                "1700000000.25\n",
            ),
            (DESCRIBE, Some("KeyMetadata.Missing"), "None\n"),
            (LIST_KEYS, Some("Keys[].KeyId"), "k1\tk2\n"),
            (
                r#"{"Plaintext": "aGVsbG8=", "KeyId": "arn:k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}"#,
                Some("Plaintext"),
                "aGVsbG8=\n",
            ),
            // Whole responses: scalars sorted by name on one line.
            (
                r#"{"Plaintext": "aGVsbG8=", "KeyId": "arn:k", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}"#,
                None,
                "SYMMETRIC_DEFAULT\tarn:k\taGVsbG8=\n",
            ),
            (
                LIST_KEYS,
                None,
                "False\nKEYS\tarn:k1\tk1\nKEYS\tarn:k2\tk2\n",
            ),
            (r#"{"Keys": []}"#, None, ""),
            (
                DESCRIBE,
                None,
                "KEYMETADATA\t111122223333\tarn:aws:kms:local:111122223333:key/1234\t\
                 1700000000.25\t\tTrue\t1234\tEnabled\tFalse\n\
                 ENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n",
            ),
            // Objects in a list share one column set; missing fields are empty.
            (
                r#"{"Aliases": [{"AliasName": "alias/a", "TargetKeyId": "k1"},
                                {"AliasName": "alias/b"}]}"#,
                None,
                "ALIASES\talias/a\tk1\nALIASES\talias/b\t\n",
            ),
            (
                r#"{"Tags": [{"TagKey": "env", "TagValue": "prod"}], "Truncated": false}"#,
                None,
                "False\nTAGS\tenv\tprod\n",
            ),
            (r#"{"L": [[1, 2], 3]}"#, None, "L\t3\nL\t1\nL\t2\n"),
            (r#"[1, "a", null]"#, None, "1\ta\tNone\n"),
            (r#""bare""#, None, "bare\n"),
        ];
        for (input, query, expected) in cases {
            let mut value = doc(input);
            if let Some(query) = query {
                value = Query::parse(query).unwrap().apply(&value);
            }
            assert_eq!(
                render(&value, OutputFormat::Text),
                *expected,
                "{input} {query:?}"
            );
        }
    }

    #[test]
    fn take_removes_a_field() {
        let mut value = doc(r#"{"a": 1, "b": 2}"#);
        assert_eq!(value.take("a"), Some(doc("1")));
        assert_eq!(value.take("a"), None);
        assert_eq!(value, doc(r#"{"b": 2}"#));
    }
}
