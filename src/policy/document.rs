//! The key policy document: its types and a strict parser whose errors name the statement
//! (index and Sid) and the field. Unknown fields, actions, operators and condition keys are
//! rejected, never ignored.

use super::glob;
use serde_json::{Map, Value};

/// Largest policy document accepted, in bytes (AWS: 32 KB).
pub const MAX_POLICY_BYTES: usize = 32 * 1024;

/// A parse failure: MalformedPolicyDocumentException on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A parsed key policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// The statements, in document order.
    pub statements: Vec<Statement>,
}

/// Allow or Deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement allows.
    Allow,
    /// The statement denies, whatever else allows.
    Deny,
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The optional statement id (named in AccessDenied messages for Deny).
    pub sid: Option<String>,
    /// Allow or Deny.
    pub effect: Effect,
    /// Who the statement is about.
    pub principal: Principal,
    /// Action patterns, e.g. `kms:Decrypt`, `kms:Generate*`, `*`.
    pub actions: Vec<String>,
    /// Resource patterns matched against the key ARN; `*` is the key itself.
    pub resources: Vec<String>,
    /// Conditions that must all hold for the statement to apply.
    pub conditions: Vec<Condition>,
}

/// Who a statement is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// `"*"`: every caller.
    Any,
    /// `{"Unix": {...}}`: the listed users, groups, units or executables.
    Unix(UnixPrincipal),
}

/// `{"Unix": {...}}`: a caller matches when it matches any one entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixPrincipal {
    /// `Uid`: numeric uids.
    pub uids: Vec<u32>,
    /// `User`: user names.
    pub users: Vec<String>,
    /// `Gid`: numeric gids, primary or supplementary.
    pub gids: Vec<u32>,
    /// `Group`: group names, primary or supplementary.
    pub groups: Vec<String>,
    /// `Unit`: systemd unit names.
    pub units: Vec<String>,
    /// `Exe`: executable paths.
    pub exes: Vec<String>,
}

impl UnixPrincipal {
    /// True when no entry is given (the parser refuses such a principal).
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
            && self.users.is_empty()
            && self.gids.is_empty()
            && self.groups.is_empty()
            && self.units.is_empty()
            && self.exes.is_empty()
    }

    /// Parses the one-entry string form used by grants: `uid:1001`, `user:alice`,
    /// `gid:33`, `group:web`, `unit:nginx.service`, `exe:/usr/bin/app`.
    pub fn parse_grant_principal(text: &str) -> Option<UnixPrincipal> {
        let (kind, value) = text.split_once(':')?;
        if value.is_empty() {
            return None;
        }
        let mut principal = UnixPrincipal::default();
        match kind {
            "uid" => principal.uids.push(value.parse().ok()?),
            "gid" => principal.gids.push(value.parse().ok()?),
            "user" => principal.users.push(value.to_string()),
            "group" => principal.groups.push(value.to_string()),
            "unit" => principal.units.push(value.to_string()),
            "exe" if value.starts_with('/') => principal.exes.push(value.to_string()),
            _ => return None,
        }
        Some(principal)
    }
}

/// The comparison of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Exact, case-sensitive string match.
    StringEquals,
    /// No value matches exactly.
    StringNotEquals,
    /// Exact match ignoring ASCII case.
    StringEqualsIgnoreCase,
    /// No value matches ignoring ASCII case.
    StringNotEqualsIgnoreCase,
    /// Glob match (`*` and `?`).
    StringLike,
    /// No value matches as a glob.
    StringNotLike,
    /// Numbers are equal.
    NumericEquals,
    /// Numbers differ.
    NumericNotEquals,
    /// Request value < policy value.
    NumericLessThan,
    /// Request value <= policy value.
    NumericLessThanEquals,
    /// Request value > policy value.
    NumericGreaterThan,
    /// Request value >= policy value.
    NumericGreaterThanEquals,
    /// `true` or `false`.
    Bool,
    /// `true`: the key is absent; `false`: it is present.
    Null,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        use Operator::*;
        Some(match name {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "Bool" => Bool,
            "Null" => Null,
            _ => return None,
        })
    }

    /// Negated operators: true when no policy value matches.
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
        )
    }

    /// True for the `Numeric*` operators.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Operator::NumericEquals
                | Operator::NumericNotEquals
                | Operator::NumericLessThan
                | Operator::NumericLessThanEquals
                | Operator::NumericGreaterThan
                | Operator::NumericGreaterThanEquals
        )
    }
}

/// `ForAllValues:` / `ForAnyValue:` prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    /// Every value of the request must match.
    ForAllValues,
    /// At least one value of the request must match.
    ForAnyValue,
}

/// A condition key: request facts (`kms:`) and caller facts (`kmsd:Caller*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionKey {
    /// `kms:EncryptionContext:<key>`: the value of one context pair.
    EncryptionContext(String),
    /// `kms:EncryptionContextKeys`: the keys of the encryption context.
    EncryptionContextKeys,
    /// `kms:GrantOperations`: the operations of the grant being created.
    GrantOperations,
    /// `kms:KeySpec`.
    KeySpec,
    /// `kms:RequestAlias`: the alias the caller named the key by.
    RequestAlias,
    /// `kms:ResourceAliases`: every alias of the key.
    ResourceAliases,
    /// `kmsd:CallerUid`.
    CallerUid,
    /// `kmsd:CallerGid`: the primary gid.
    CallerGid,
    /// `kmsd:CallerGids`: primary and supplementary gids.
    CallerGids,
    /// `kmsd:CallerUser`: the user name.
    CallerUser,
    /// `kmsd:CallerGroups`: names of the primary and supplementary groups.
    CallerGroups,
    /// `kmsd:CallerUnit`: the systemd unit.
    CallerUnit,
    /// `kmsd:CallerExe`: the executable path.
    CallerExe,
}

impl ConditionKey {
    fn parse(name: &str) -> Option<ConditionKey> {
        if let Some(rest) = strip_prefix_ignore_case(name, "kms:EncryptionContext:") {
            if rest.is_empty() {
                return None;
            }
            return Some(ConditionKey::EncryptionContext(rest.to_string()));
        }
        use ConditionKey::*;
        Some(match name.to_ascii_lowercase().as_str() {
            "kms:encryptioncontextkeys" => EncryptionContextKeys,
            "kms:grantoperations" => GrantOperations,
            "kms:keyspec" => KeySpec,
            "kms:requestalias" => RequestAlias,
            "kms:resourcealiases" => ResourceAliases,
            "kmsd:calleruid" => CallerUid,
            "kmsd:callergid" => CallerGid,
            "kmsd:callergids" => CallerGids,
            "kmsd:calleruser" => CallerUser,
            "kmsd:callergroups" => CallerGroups,
            "kmsd:callerunit" => CallerUnit,
            "kmsd:callerexe" => CallerExe,
            _ => return None,
        })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// One `"Operator": {"key": values}` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// `ForAllValues:` or `ForAnyValue:`, for multi-valued keys.
    pub qualifier: Option<SetQualifier>,
    /// The comparison.
    pub operator: Operator,
    /// `...IfExists`: an absent key satisfies the condition.
    pub if_exists: bool,
    /// What is compared.
    pub key: ConditionKey,
    /// The policy values; one match is enough (for negated operators: none may match).
    pub values: Vec<String>,
}

/// Parses and checks a policy document.
pub fn parse(text: &str) -> Result<PolicyDocument, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError(format!(
            "the policy is {} bytes; the limit is {MAX_POLICY_BYTES} bytes",
            text.len()
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|err| PolicyError(format!("the policy is not valid JSON: {err}")))?;
    let Value::Object(top) = value else {
        return Err(PolicyError("the policy must be a JSON object".into()));
    };
    for (field, value) in &top {
        match field.as_str() {
            "Version" => match value.as_str() {
                Some("2012-10-17" | "2008-10-17") => {}
                _ => {
                    return Err(PolicyError(format!(
                        "Version {value} is not supported; use \"2012-10-17\""
                    )))
                }
            },
            "Id" => {
                if !value.is_string() {
                    return Err(PolicyError("Id must be a string".into()));
                }
            }
            "Statement" => {}
            other => {
                return Err(PolicyError(format!(
                    "unknown top-level field '{other}' (allowed: Version, Id, Statement)"
                )))
            }
        }
    }
    let statements = match top.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(object @ Value::Object(_)) => vec![object.clone()],
        Some(_) => {
            return Err(PolicyError(
                "Statement must be an object or an array of objects".into(),
            ))
        }
        None => return Err(PolicyError("the policy has no Statement".into())),
    };
    if statements.is_empty() {
        return Err(PolicyError("Statement must not be empty".into()));
    }
    let statements = statements
        .iter()
        .enumerate()
        .map(|(index, value)| parse_statement(index, value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PolicyDocument { statements })
}

/// `Statement[2] (Sid "Backup")`: where an error is.
fn place(index: usize, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("Statement[{index}] (Sid \"{sid}\")"),
        None => format!("Statement[{index}]"),
    }
}

fn parse_statement(index: usize, value: &Value) -> Result<Statement, PolicyError> {
    let Value::Object(map) = value else {
        return Err(PolicyError(format!(
            "Statement[{index}] must be a JSON object"
        )));
    };
    let sid = match map.get("Sid") {
        None => None,
        Some(Value::String(sid)) => Some(sid.clone()),
        Some(_) => {
            return Err(PolicyError(format!(
                "Statement[{index}]: field Sid must be a string"
            )))
        }
    };
    let at = place(index, sid.as_deref());
    let err = |field: &str, message: String| PolicyError(format!("{at}: field {field}: {message}"));
    for field in map.keys() {
        if !matches!(
            field.as_str(),
            "Sid" | "Effect" | "Principal" | "Action" | "Resource" | "Condition"
        ) {
            return Err(PolicyError(format!(
                "{at}: unknown field '{field}' (allowed: Sid, Effect, Principal, Action, Resource, Condition; NotPrincipal, NotAction and NotResource are not supported)"
            )));
        }
    }
    let effect = match map.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(other) => return Err(err("Effect", format!("'{other}' is not Allow or Deny"))),
        None => return Err(err("Effect", "is required (Allow or Deny)".into())),
    };
    let principal = match map.get("Principal") {
        None => return Err(err("Principal", "is required".into())),
        Some(value) => parse_principal(value).map_err(|message| err("Principal", message))?,
    };
    let actions = string_list(map.get("Action"))
        .map_err(|message| err("Action", message))?
        .ok_or_else(|| err("Action", "is required".into()))?;
    for action in &actions {
        let known = action == "*"
            || (action.to_ascii_lowercase().starts_with("kms:")
                && crate::api::operations::policy_actions()
                    .any(|known| glob::matches_ignore_case(action, known)));
        if !known {
            return Err(err(
                "Action",
                format!("'{action}' is not a kmsd action (kms:<Operation>, wildcards allowed)"),
            ));
        }
    }
    let resources = string_list(map.get("Resource"))
        .map_err(|message| err("Resource", message))?
        .ok_or_else(|| err("Resource", "is required (use \"*\" for this key)".into()))?;
    let conditions = match map.get("Condition") {
        None => Vec::new(),
        Some(Value::Object(operators)) => parse_conditions(operators)
            .map_err(|(field, message)| err(&format!("Condition.{field}"), message))?,
        Some(_) => return Err(err("Condition", "must be a JSON object".into())),
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        actions,
        resources,
        conditions,
    })
}

/// A string or a non-empty array of strings; Ok(None) when absent.
fn string_list(value: Option<&Value>) -> Result<Option<Vec<String>>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(vec![text.clone()])),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) if !text.is_empty() => Ok(text.clone()),
                other => Err(format!("{other} is not a non-empty string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!(
            "{other} is not a non-empty string or array of strings"
        )),
    }
}

fn parse_principal(value: &Value) -> Result<Principal, String> {
    match value {
        Value::String(text) if text == "*" => Ok(Principal::Any),
        Value::Object(map) => {
            let mut principal = None;
            for (kind, inner) in map {
                if kind != "Unix" {
                    return Err(format!(
                        "unknown principal type '{kind}' (use \"*\" or {{\"Unix\": {{...}}}})"
                    ));
                }
                principal = Some(parse_unix(inner)?);
            }
            principal
                .map(Principal::Unix)
                .ok_or_else(|| "must be \"*\" or {\"Unix\": {...}}".to_string())
        }
        other => Err(format!("{other} is not \"*\" or {{\"Unix\": {{...}}}}")),
    }
}

fn parse_unix(value: &Value) -> Result<UnixPrincipal, String> {
    let Value::Object(map) = value else {
        return Err("Unix must be an object with Uid, User, Gid, Group, Unit or Exe".into());
    };
    let mut principal = UnixPrincipal::default();
    for (field, entries) in map {
        let entries: Vec<&Value> = match entries {
            Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for entry in entries {
            let bad = || format!("Unix.{field}: {entry} is not valid");
            match field.as_str() {
                "Uid" | "Gid" => {
                    let id = match entry {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse::<u64>().ok(),
                        _ => None,
                    }
                    .and_then(|id| u32::try_from(id).ok())
                    .ok_or_else(|| format!("Unix.{field}: {entry} is not a numeric id"))?;
                    if field == "Uid" {
                        principal.uids.push(id);
                    } else {
                        principal.gids.push(id);
                    }
                }
                "User" | "Group" | "Unit" | "Exe" => {
                    let text = entry.as_str().filter(|s| !s.is_empty()).ok_or_else(bad)?;
                    match field.as_str() {
                        "User" => principal.users.push(text.to_string()),
                        "Group" => principal.groups.push(text.to_string()),
                        "Unit" => principal.units.push(text.to_string()),
                        _ => {
                            if !text.starts_with('/') {
                                return Err(format!(
                                    "Unix.Exe: '{text}' is not an absolute path"
                                ));
                            }
                            principal.exes.push(text.to_string());
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown Unix principal field '{other}' (allowed: Uid, User, Gid, Group, Unit, Exe)"
                    ))
                }
            }
        }
    }
    if principal.is_empty() {
        return Err("Unix names no Uid, User, Gid, Group, Unit or Exe".into());
    }
    Ok(principal)
}

fn parse_conditions(operators: &Map<String, Value>) -> Result<Vec<Condition>, (String, String)> {
    let mut conditions = Vec::new();
    for (name, keys) in operators {
        let (qualifier, rest) = if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else {
            (None, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let operator = Operator::parse(base)
            .ok_or_else(|| (name.clone(), format!("unknown condition operator '{name}'")))?;
        if operator == Operator::Null && (if_exists || qualifier.is_some()) {
            return Err((
                name.clone(),
                "Null takes no IfExists suffix or set prefix".into(),
            ));
        }
        let Value::Object(keys) = keys else {
            return Err((name.clone(), "must be an object of condition keys".into()));
        };
        if keys.is_empty() {
            return Err((name.clone(), "names no condition key".into()));
        }
        for (key_name, values) in keys {
            let at = format!("{name}.{key_name}");
            let key = ConditionKey::parse(key_name)
                .ok_or_else(|| (at.clone(), format!("unknown condition key '{key_name}'")))?;
            let values: Vec<String> = match values {
                Value::Array(items) if !items.is_empty() => items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        (
                            at.clone(),
                            format!("{values} is not a list of strings, numbers or booleans"),
                        )
                    })?,
                single => vec![scalar(single).ok_or_else(|| {
                    (
                        at.clone(),
                        format!("{single} is not a string, number, boolean or non-empty list"),
                    )
                })?],
            };
            for value in &values {
                let valid = if operator.is_numeric() {
                    value.parse::<f64>().is_ok()
                } else if matches!(operator, Operator::Bool | Operator::Null) {
                    value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false")
                } else {
                    true
                };
                if !valid {
                    return Err((at, format!("value '{value}' is not valid for {name}")));
                }
            }
            conditions.push(Condition {
                qualifier,
                operator,
                if_exists,
                key,
                values,
            });
        }
    }
    Ok(conditions)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The policy a key gets when CreateKey names none: the creator's uid may do everything.
pub fn default_policy_text(creator_uid: u32) -> String {
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "kmsd-default",
        "Statement": [{
            "Sid": "Enable creator uid permissions",
            "Effect": "Allow",
            "Principal": {"Unix": {"Uid": [creator_uid]}},
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    serde_json::to_string_pretty(&document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let doc = parse(&default_policy_text(1000)).unwrap();
        assert_eq!(doc.statements.len(), 1);
        assert_eq!(
            doc.statements[0].principal,
            Principal::Unix(UnixPrincipal {
                uids: vec![1000],
                ..Default::default()
            })
        );
    }

    #[test]
    fn malformed_documents_name_statement_and_field() {
        let ok_stmt = r#"{"Effect":"Allow","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#;
        let cases: Vec<(String, &[&str])> = vec![
            ("not json".into(), &["not valid JSON"]),
            ("[]".into(), &["JSON object"]),
            (r#"{"Version":"2012-10-17"}"#.into(), &["no Statement"]),
            (r#"{"Statement":[]}"#.into(), &["must not be empty"]),
            (r#"{"Version":"2020-01-01","Statement":[]}"#.into(), &["Version"]),
            (r#"{"Bogus":1,"Statement":[]}"#.into(), &["Bogus"]),
            (
                format!(r#"{{"Statement":[{ok_stmt},{{"Sid":"Two","Effect":"Maybe","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}]}}"#),
                &["Statement[1]", "Sid \"Two\"", "Effect", "Maybe"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:Frobnicate","Resource":"*"}]}"#.into(),
                &["Statement[0]", "Action", "kms:Frobnicate"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}"#.into(),
                &["Action", "s3:GetObject"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn"},"Action":"kms:*","Resource":"*"}]}"#.into(),
                &["Principal", "AWS"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Unix":{"Uid":["abc"]}},"Action":"kms:*","Resource":"*"}]}"#.into(),
                &["Principal", "Uid", "abc"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Unix":{"Exe":"app"}},"Action":"kms:*","Resource":"*"}]}"#.into(),
                &["Exe", "absolute"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Unix":{"Shell":"x"}},"Action":"kms:*","Resource":"*"}]}"#.into(),
                &["Shell"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Unix":{}},"Action":"kms:*","Resource":"*"}]}"#.into(),
                &["Principal", "names no"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*"}]}"#.into(),
                &["Resource", "required"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","NotAction":"x"}]}"#.into(),
                &["NotAction"],
            ),
            (
                r#"{"Statement":[{"Sid":"C","Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringSorta":{"kms:KeySpec":"x"}}}]}"#.into(),
                &["Sid \"C\"", "Condition.StringSorta", "unknown condition operator"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:Bogus":"x"}}}]}"#.into(),
                &["Condition.StringEquals.kms:Bogus", "unknown condition key"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"kmsd:CallerUid":"ten"}}}]}"#.into(),
                &["NumericLessThan.kmsd:CallerUid", "ten"],
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"kmsd:CallerUid":"maybe"}}}]}"#.into(),
                &["Bool", "maybe"],
            ),
            (
                format!(r#"{{"Statement":[{ok_stmt}],"Id":"{}"}}"#, "x".repeat(MAX_POLICY_BYTES)),
                &["limit is 32768"],
            ),
        ];
        for (text, needles) in &cases {
            let err = parse(text).expect_err(text).0;
            for needle in *needles {
                assert!(err.contains(needle), "{text}\n -> {err}\n missing {needle}");
            }
        }
    }

    #[test]
    fn accepted_shapes() {
        let doc = parse(
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":{"Unix":{"Uid":[1,"2"],"User":"www-data","Gid":33,"Group":["web"],"Unit":"nginx.service","Exe":"/usr/bin/app"}},"Action":["kms:Gen*","kms:Decrypt"],"Resource":"*","Condition":{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["a","b"]},"StringEqualsIfExists":{"kms:EncryptionContext:purpose":"backup"},"Null":{"kmsd:CallerUnit":"false"},"NumericLessThan":{"kmsd:CallerUid":1000}}}}"#,
        )
        .unwrap();
        let statement = &doc.statements[0];
        assert_eq!(statement.effect, Effect::Deny);
        assert_eq!(statement.conditions.len(), 4);
        let Principal::Unix(unix) = &statement.principal else {
            panic!()
        };
        assert_eq!(unix.uids, vec![1, 2]);
        assert_eq!(unix.gids, vec![33]);
    }

    #[test]
    fn grant_principals() {
        assert_eq!(
            UnixPrincipal::parse_grant_principal("uid:5").unwrap().uids,
            vec![5]
        );
        assert!(UnixPrincipal::parse_grant_principal("exe:/bin/x").is_some());
        for bad in ["uid:x", "exe:rel", "nobody", "user:", "pid:3"] {
            assert!(UnixPrincipal::parse_grant_principal(bad).is_none(), "{bad}");
        }
    }
}
