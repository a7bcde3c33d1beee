//! Turning aws-style argument values into request fields, as `aws kms` does:
//!
//! * blobs (`--plaintext`, `--ciphertext-blob`): `fileb://PATH` is the file's raw bytes
//!   (`fileb://-` reads stdin), `file://PATH` is base64 text read from a file, anything else
//!   is base64 text (aws cli v2's default `--cli-binary-format base64`);
//! * maps (`--encryption-context`): aws shorthand `k1=v1,k2=v2` or a JSON object;
//! * tag lists (`--tags`): shorthand `TagKey=k,TagValue=v` per value, or a JSON array;
//! * `file://PATH` anywhere a text or JSON value is expected reads the value from a file.
//!
//! Nothing here echoes a parameter's value in an error: it may be a secret.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};
use std::io::Read;
use zeroize::Zeroizing;

/// Standard alphabet, padding optional (aws cli accepts both).
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A parameter value that cannot be used (a usage error).
#[derive(Debug, thiserror::Error)]
#[error("Error parsing parameter '{param}': {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

impl ParamError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// How blob arguments that are not `fileb://` are read, like aws cli v2's
/// `--cli-binary-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BinaryFormat {
    /// The argument is base64 text (the default, as in aws cli v2).
    #[default]
    Base64,
    /// The argument's own (UTF-8) bytes are the value; responses stay base64.
    RawInBase64Out,
}

/// Where parameter values come from besides the command line: stdin (read at most once)
/// and the binary format.
pub struct Inputs<'a> {
    pub binary_format: BinaryFormat,
    stdin: &'a mut dyn Read,
    stdin_used_by: Option<String>,
}

impl<'a> Inputs<'a> {
    pub fn new(binary_format: BinaryFormat, stdin: &'a mut dyn Read) -> Self {
        Inputs {
            binary_format,
            stdin,
            stdin_used_by: None,
        }
    }

    /// Reads all of stdin, once per command.
    fn read_stdin(&mut self, param: &str) -> Result<Zeroizing<Vec<u8>>, ParamError> {
        if let Some(first) = &self.stdin_used_by {
            return Err(ParamError::new(
                param,
                format!("stdin is already read by {first}; only one argument can read stdin"),
            ));
        }
        self.stdin_used_by = Some(param.to_string());
        let mut bytes = Zeroizing::new(Vec::new());
        self.stdin
            .read_to_end(&mut bytes)
            .map_err(|err| ParamError::new(param, format!("cannot read stdin: {err}")))?;
        Ok(bytes)
    }

    /// Reads a file's bytes; `-` is stdin.
    fn read_path(&mut self, param: &str, path: &str) -> Result<Zeroizing<Vec<u8>>, ParamError> {
        if path == "-" {
            return self.read_stdin(param);
        }
        if path.is_empty() {
            return Err(ParamError::new(param, "the file path is empty"));
        }
        std::fs::read(path)
            .map(Zeroizing::new)
            .map_err(|err| ParamError::new(param, format!("cannot read file {path}: {err}")))
    }

    /// A text value: `file://PATH` (or `file://-`) is the file's content, anything else
    /// is the value itself.
    pub fn text(&mut self, param: &str, value: &str) -> Result<String, ParamError> {
        match value.strip_prefix("file://") {
            Some(path) => {
                let bytes = self.read_path(param, path)?;
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ParamError::new(
                        param,
                        format!("file {path} is not UTF-8 text; use fileb:// for binary values"),
                    )
                })
            }
            None => Ok(value.to_string()),
        }
    }

    /// A binary value, returned as the base64 text that goes on the wire.
    pub fn blob(&mut self, param: &str, value: &str) -> Result<Zeroizing<String>, ParamError> {
        let bytes = if let Some(path) = value.strip_prefix("fileb://") {
            self.read_path(param, path)?
        } else if let Some(path) = value.strip_prefix("file://") {
            let text = self.read_path(param, path)?;
            self.decode_text(param, &text)?
        } else {
            self.decode_text(param, value.as_bytes())?
        };
        Ok(Zeroizing::new(STANDARD.encode(bytes.as_slice())))
    }

    fn decode_text(&self, param: &str, text: &[u8]) -> Result<Zeroizing<Vec<u8>>, ParamError> {
        match self.binary_format {
            BinaryFormat::RawInBase64Out => Ok(Zeroizing::new(text.to_vec())),
            BinaryFormat::Base64 => decode_base64(text).ok_or_else(|| {
                ParamError::new(
                    param,
                    format!(
                        "the value is not valid base64. Like aws cli v2, kmsctl reads binary \
                         arguments as base64 text: pass a file's raw bytes with \
                         {param} fileb://PATH ({param} fileb://- reads stdin), or add \
                         --cli-binary-format raw-in-base64-out to send the text itself"
                    ),
                )
            }),
        }
    }

    /// An encryption context: aws shorthand `k1=v1,k2=v2`, a JSON object, or `file://`.
    pub fn context(&mut self, param: &str, value: &str) -> Result<Value, ParamError> {
        let text = self.text(param, value)?;
        parse_context(&text)
            .map(Value::Object)
            .map_err(|message| ParamError::new(param, message))
    }

    /// Tags: each value is shorthand `TagKey=k,TagValue=v`, a JSON array of tags, a JSON
    /// tag object, or `file://` holding one of those.
    pub fn tags(&mut self, param: &str, values: &[String]) -> Result<Value, ParamError> {
        let mut tags = Vec::new();
        for value in values {
            let text = self.text(param, value)?;
            tags.extend(parse_tags(&text).map_err(|message| ParamError::new(param, message))?);
        }
        Ok(Value::Array(tags))
    }

    /// A JSON document (`file://` allowed); empty text is the empty object.
    pub fn json(&mut self, param: &str, value: &str) -> Result<Value, ParamError> {
        let text = self.text(param, value)?;
        parse_json_document(&text).map_err(|message| ParamError::new(param, message))
    }

    /// The whole of stdin as a JSON document.
    pub fn json_from_stdin(&mut self, param: &str) -> Result<Value, ParamError> {
        let bytes = self.read_stdin(param)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ParamError::new(param, "stdin is not UTF-8 text"))?;
        parse_json_document(text).map_err(|message| ParamError::new(param, message))
    }
}

/// Standard base64, ASCII whitespace ignored (so wrapped `base64` output works), padding
/// optional. `None` when invalid: the error would quote the (maybe secret) bad byte.
pub fn decode_base64(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
        text.iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect(),
    );
    BASE64_LENIENT
        .decode(compact.as_slice())
        .ok()
        .map(Zeroizing::new)
}

fn parse_json_document(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).map_err(|err| format!("invalid JSON: {err}"))
}

/// Parses aws shorthand `k1=v1,k2=v2` into pairs, in order. A value may be quoted with `'`
/// or `"` to hold commas (a backslash escapes the quote or a backslash inside); outside
/// quotes, `\,` is a literal comma. Spaces around keys and unquoted values are dropped.
pub fn parse_shorthand(text: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    loop {
        // Key, up to '='.
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' {
            if chars[i] == ',' {
                return Err(format!(
                    "expected KEY=VALUE pairs separated by commas, found '{}' without '=' \
                     (quote a value that holds commas: KEY='A,B')",
                    key.trim()
                ));
            }
            key.push(chars[i]);
            i += 1;
        }
        let key = key.trim().to_string();
        if i == chars.len() {
            return Err(if key.is_empty() {
                "expected KEY=VALUE pairs separated by commas, found nothing after a comma"
                    .to_string()
            } else {
                format!(
                    "expected KEY=VALUE, found '{key}' without '=' (quote a value that holds \
                     commas: KEY='A,B')"
                )
            });
        }
        if key.is_empty() {
            return Err("expected KEY=VALUE, found '=' without a key".to_string());
        }
        i += 1; // '='
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && (chars[i] == '"' || chars[i] == '\'') {
            let quote = chars[i];
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "unterminated {quote} quote in the value of '{key}'"
                        ))
                    }
                    Some(&c) if c == quote => {
                        i += 1;
                        break;
                    }
                    Some('\\') if matches!(chars.get(i + 1), Some(&n) if n == quote || n == '\\') =>
                    {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            if i < chars.len() && chars[i] != ',' {
                return Err(format!(
                    "unexpected text after the quoted value of '{key}'; separate pairs with commas"
                ));
            }
        } else {
            while i < chars.len() && chars[i] != ',' {
                if chars[i] == '\\' && matches!(chars.get(i + 1), Some(',' | '\\')) {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            value = value.trim_end().to_string();
        }
        pairs.push((key, value));
        if i == chars.len() {
            return Ok(pairs);
        }
        i += 1; // ','
    }
}

/// An encryption context from shorthand or a JSON object; duplicate keys are an error.
pub fn parse_context(text: &str) -> Result<Map<String, Value>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Map::new());
    }
    if trimmed.starts_with('{') {
        let value: Value =
            serde_json::from_str(trimmed).map_err(|err| format!("invalid JSON object: {err}"))?;
        let Value::Object(map) = value else {
            return Err("expected a JSON object".to_string());
        };
        if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!(
                "the value of '{key}' must be a string; encryption context values are strings"
            ));
        }
        return Ok(map);
    }
    let mut map = Map::new();
    for (key, value) in parse_shorthand(trimmed)? {
        if map.contains_key(&key) {
            return Err(format!("duplicate key '{key}'"));
        }
        map.insert(key, Value::String(value));
    }
    Ok(map)
}

/// Tags from one argument value: shorthand `TagKey=k,TagValue=v`, a JSON array of tag
/// objects, or one JSON tag object.
pub fn parse_tags(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: Value =
            serde_json::from_str(trimmed).map_err(|err| format!("invalid JSON: {err}"))?;
        let items = match value {
            Value::Array(items) => items,
            object @ Value::Object(_) => vec![object],
            _ => return Err("expected a JSON array of tags".to_string()),
        };
        return items
            .into_iter()
            .map(|item| match item {
                Value::Object(map) => tag_from_pairs(map.into_iter()),
                _ => Err(r#"each tag must be an object {"TagKey": ..., "TagValue": ...}"#.into()),
            })
            .collect();
    }
    let pairs = parse_shorthand(trimmed)?;
    Ok(vec![tag_from_pairs(
        pairs.into_iter().map(|(k, v)| (k, Value::String(v))),
    )?])
}

fn tag_from_pairs(pairs: impl Iterator<Item = (String, Value)>) -> Result<Value, String> {
    let mut tag_key = None;
    let mut tag_value = None;
    for (key, value) in pairs {
        let slot = match key.as_str() {
            "TagKey" => &mut tag_key,
            "TagValue" => &mut tag_value,
            other => {
                return Err(format!(
                    "unknown tag field '{other}'; a tag is TagKey=KEY,TagValue=VALUE"
                ))
            }
        };
        if slot.is_some() {
            return Err(format!("duplicate tag field '{key}'"));
        }
        match value {
            Value::String(text) => *slot = Some(text),
            _ => return Err(format!("the tag field '{key}' must be a string")),
        }
    }
    match (tag_key, tag_value) {
        (Some(k), Some(v)) => Ok(serde_json::json!({"TagKey": k, "TagValue": v})),
        (None, _) => Err("a tag needs TagKey (TagKey=KEY,TagValue=VALUE)".to_string()),
        (_, None) => Err("a tag needs TagValue (TagKey=KEY,TagValue=VALUE)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

    fn inputs<'a>(format: BinaryFormat, stdin: &'a mut &'static [u8]) -> Inputs<'a> {
        Inputs::new(format, stdin)
    }

    #[test]
    fn blobs() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"\x00\xffraw bytes\n").unwrap();
        let path = file.path().to_str().unwrap().to_string();
        let mut text_file = tempfile::NamedTempFile::new().unwrap();
        text_file.write_all(b"aGVsbG8=\n").unwrap();
        let text_path = text_file.path().to_str().unwrap().to_string();
        let raw_b64 = STANDARD.encode(b"\x00\xffraw bytes\n");

        // (format, argument, stdin, expected base64 or None for an error)
        let cases: Vec<(BinaryFormat, String, &'static [u8], Option<&str>)> = vec![
            (
                BinaryFormat::Base64,
                "aGVsbG8=".into(),
                b"",
                Some("aGVsbG8="),
            ),
            (
                BinaryFormat::Base64,
                "aGVsbG8".into(),
                b"",
                Some("aGVsbG8="),
            ),
            (
                BinaryFormat::Base64,
                " aGVs\nbG8=\n".into(),
                b"",
                Some("aGVsbG8="),
            ),
            (BinaryFormat::Base64, "hello".into(), b"", None),
            (BinaryFormat::Base64, "aGVsbG8=!".into(), b"", None),
            (BinaryFormat::Base64, "aGVs-G8=".into(), b"", None),
            (BinaryFormat::Base64, "".into(), b"", Some("")),
            (
                BinaryFormat::Base64,
                format!("fileb://{path}"),
                b"",
                Some(&raw_b64),
            ),
            (
                BinaryFormat::Base64,
                "fileb://-".into(),
                b"hello",
                Some("aGVsbG8="),
            ),
            (BinaryFormat::Base64, "fileb://-".into(), b"", Some("")),
            (
                BinaryFormat::Base64,
                "fileb:///nonexistent/x".into(),
                b"",
                None,
            ),
            (BinaryFormat::Base64, "fileb://".into(), b"", None),
            (
                BinaryFormat::Base64,
                format!("file://{text_path}"),
                b"",
                Some("aGVsbG8="),
            ),
            (BinaryFormat::Base64, format!("file://{path}"), b"", None),
            (
                BinaryFormat::RawInBase64Out,
                "hello".into(),
                b"",
                Some("aGVsbG8="),
            ),
            (
                BinaryFormat::RawInBase64Out,
                "fileb://-".into(),
                b"hello",
                Some("aGVsbG8="),
            ),
        ];
        for (format, arg, stdin, expected) in cases {
            let mut stdin = stdin;
            let mut inputs = inputs(format, &mut stdin);
            let got = inputs.blob("--plaintext", &arg);
            match expected {
                Some(expected) => assert_eq!(got.unwrap().as_str(), expected, "{arg}"),
                None => {
                    let err = got.unwrap_err().to_string();
                    assert!(
                        err.starts_with("Error parsing parameter '--plaintext'"),
                        "{err}"
                    );
                }
            }
        }
    }

    #[test]
    fn invalid_base64_suggests_fileb_and_does_not_echo() {
        let mut stdin: &'static [u8] = b"";
        let mut inputs = inputs(BinaryFormat::Base64, &mut stdin);
        let err = inputs
            .blob("--plaintext", "my secret!")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fileb://"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn stdin_is_read_once() {
        let mut stdin: &'static [u8] = b"aGVsbG8=";
        let mut inputs = inputs(BinaryFormat::Base64, &mut stdin);
        assert_eq!(
            inputs.blob("--a", "fileb://-").unwrap().as_str(),
            "YUdWc2JHOD0="
        );
        let err = inputs.blob("--b", "fileb://-").unwrap_err().to_string();
        assert!(err.contains("already read by --a"), "{err}");
    }

    #[test]
    fn shorthand() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("k=v", &[("k", "v")]),
            ("k1=v1,k2=v2", &[("k1", "v1"), ("k2", "v2")]),
            (" k1 = v1 , k2=v2 ", &[("k1", "v1"), ("k2", "v2")]),
            ("k=", &[("k", "")]),
            ("k=a=b==", &[("k", "a=b==")]),
            ("k='a,b',l=c", &[("k", "a,b"), ("l", "c")]),
            (r#"k="a,'b'""#, &[("k", "a,'b'")]),
            (r#"k="say \"hi\"""#, &[("k", r#"say "hi""#)]),
            (r"k=a\,b", &[("k", "a,b")]),
            (r"k=C:\dir", &[("k", r"C:\dir")]),
            ("k=a b", &[("k", "a b")]),
            ("k='  padded '", &[("k", "  padded ")]),
            ("ключ=значение", &[("ключ", "значение")]),
        ];
        for (text, expected) in ok {
            let got = parse_shorthand(text).unwrap();
            let expected: Vec<(String, String)> = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, expected, "{text}");
        }
        let bad = ["k", "k=v,", "k=v,l", "=v", "k='v", "k='v'x", ",k=v", ""];
        for text in bad {
            assert!(parse_shorthand(text).is_err(), "{text}");
        }
    }

    #[test]
    fn encryption_context() {
        let cases: &[(&str, Option<Value>)] = &[
            ("k1=v1,k2=v2", Some(json!({"k1": "v1", "k2": "v2"}))),
            (
                r#"{"k1": "v1", "k2": "a,b=c"}"#,
                Some(json!({"k1": "v1", "k2": "a,b=c"})),
            ),
            ("  {\"k\":\"v\"}\n", Some(json!({"k": "v"}))),
            ("{}", Some(json!({}))),
            ("", Some(json!({}))),
            ("purpose=test,purpose=other", None),
            (r#"{"k": 1}"#, None),
            (r#"{"k": "v""#, None),
            ("k", None),
        ];
        for (text, expected) in cases {
            let got = parse_context(text).map(Value::Object).ok();
            assert_eq!(&got, expected, "{text}");
        }
    }

    #[test]
    fn context_from_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(br#"{"app": "demo"}"#).unwrap();
        let arg = format!("file://{}", file.path().to_str().unwrap());
        let mut stdin: &'static [u8] = b"";
        let mut inputs = inputs(BinaryFormat::Base64, &mut stdin);
        assert_eq!(
            inputs.context("--encryption-context", &arg).unwrap(),
            json!({"app": "demo"})
        );
    }

    #[test]
    fn tags() {
        let cases: &[(&[&str], Option<Value>)] = &[
            (
                &["TagKey=env,TagValue=prod"],
                Some(json!([{"TagKey": "env", "TagValue": "prod"}])),
            ),
            (
                &["TagKey=a,TagValue=1", "TagValue=2,TagKey=b"],
                Some(json!([
                    {"TagKey": "a", "TagValue": "1"},
                    {"TagKey": "b", "TagValue": "2"}
                ])),
            ),
            (
                &["TagKey=a,TagValue="],
                Some(json!([{"TagKey": "a", "TagValue": ""}])),
            ),
            (
                &["TagKey=a,TagValue='x,y'"],
                Some(json!([{"TagKey": "a", "TagValue": "x,y"}])),
            ),
            (
                &[r#"[{"TagKey":"a","TagValue":"1"},{"TagKey":"b","TagValue":"2"}]"#],
                Some(json!([
                    {"TagKey": "a", "TagValue": "1"},
                    {"TagKey": "b", "TagValue": "2"}
                ])),
            ),
            (
                &[r#"{"TagKey":"a","TagValue":"1"}"#, "TagKey=b,TagValue=2"],
                Some(json!([
                    {"TagKey": "a", "TagValue": "1"},
                    {"TagKey": "b", "TagValue": "2"}
                ])),
            ),
            (&["[]"], Some(json!([]))),
            (&["TagKey=a"], None),
            (&["TagValue=a"], None),
            (&["Key=a,Value=b"], None),
            (&["TagKey=a,TagValue=b,TagKey=c"], None),
            (&["a=b"], None),
            (&[r#"[{"TagKey":"a"}]"#], None),
            (&[r#"[{"TagKey":"a","TagValue":1}]"#], None),
            (&[r#"["a"]"#], None),
            (&[r#"[{"TagKey":"a","TagValue":"b"}"#], None),
        ];
        for (values, expected) in cases {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            let mut stdin: &'static [u8] = b"";
            let mut inputs = inputs(BinaryFormat::Base64, &mut stdin);
            let got = inputs.tags("--tags", &values).ok();
            assert_eq!(&got, expected, "{values:?}");
        }
    }

    #[test]
    fn json_documents() {
        let cases: &[(&str, &'static [u8], Option<Value>)] = &[
            (r#"{"KeyId": "k"}"#, b"", Some(json!({"KeyId": "k"}))),
            ("", b"", Some(json!({}))),
            ("file://-", b"{\"Limit\": 5}\n", Some(json!({"Limit": 5}))),
            ("file://-", b"  \n", Some(json!({}))),
            ("{nope", b"", None),
        ];
        for (arg, stdin, expected) in cases {
            let mut stdin = *stdin;
            let mut inputs = inputs(BinaryFormat::Base64, &mut stdin);
            assert_eq!(&inputs.json("JSON", arg).ok(), expected, "{arg}");
        }
    }
}
