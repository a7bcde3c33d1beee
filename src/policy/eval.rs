//! Policy evaluation, as AWS does it: an explicit Deny wins, then an Allow; anything else
//! is an implicit deny. Pure functions of the document, the caller's facts and the request.
//!
//! Missing facts fail closed: a principal entry or condition that needs a fact kmsd could
//! not determine (e.g. the executable of a process that already exited) is *unknown*. An
//! unknown never makes an Allow statement apply, and never stops a Deny statement from
//! applying. Only `Null` and the `...IfExists` operators look at absence on purpose.

use super::document::{
    Condition, ConditionKey, Effect, Operator, PolicyDocument, Principal, SetQualifier, Statement,
    UnixPrincipal,
};
use super::glob;
use crate::crypto::EncryptionContext;
use crate::identity::Caller;

/// Three-valued truth: a fact may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    /// Known to hold.
    True,
    /// Known not to hold.
    False,
    /// Cannot be known (a fact about the caller is missing): fails closed.
    Unknown,
}

impl Truth {
    fn from_bool(value: bool) -> Truth {
        if value {
            Truth::True
        } else {
            Truth::False
        }
    }

    /// Kleene AND.
    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::False, _) | (_, Truth::False) => Truth::False,
            (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
            _ => Truth::True,
        }
    }

    /// Kleene OR.
    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::True, _) | (_, Truth::True) => Truth::True,
            (Truth::Unknown, _) | (_, Truth::Unknown) => Truth::Unknown,
            _ => Truth::False,
        }
    }
}

/// What is being asked, besides who asks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    /// `kms:<Operation>`.
    pub action: &'a str,
    /// The key ARN.
    pub resource: &'a str,
    /// The encryption context of the request, for operations that take one.
    pub encryption_context: Option<&'a EncryptionContext>,
    /// Operations of the grant being created (CreateGrant only).
    pub grant_operations: Option<&'a [String]>,
    /// The key's spec (`kms:KeySpec`).
    pub key_spec: &'a str,
    /// The alias the caller named the key by, if any.
    pub request_alias: Option<&'a str>,
    /// Every alias of the key.
    pub resource_aliases: &'a [String],
}

/// The outcome of evaluating one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An Allow statement applied and no Deny did.
    Allow,
    /// A Deny statement applied (its Sid, if any).
    ExplicitDeny(Option<String>),
    /// No statement allowed.
    ImplicitDeny,
}

/// Evaluates `document` for `caller` doing `request`.
pub fn evaluate(document: &PolicyDocument, caller: &Caller, request: &Request<'_>) -> Decision {
    let mut allowed = false;
    for statement in &document.statements {
        let applies = statement_applies(statement, caller, request);
        match statement.effect {
            Effect::Deny if applies != Truth::False => {
                return Decision::ExplicitDeny(statement.sid.clone())
            }
            Effect::Allow if applies == Truth::True => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn statement_applies(statement: &Statement, caller: &Caller, request: &Request<'_>) -> Truth {
    let action = Truth::from_bool(
        statement
            .actions
            .iter()
            .any(|pattern| glob::matches_ignore_case(pattern, request.action)),
    );
    let resource = Truth::from_bool(
        statement
            .resources
            .iter()
            .any(|pattern| glob::matches(pattern, request.resource)),
    );
    let principal = match &statement.principal {
        Principal::Any => Truth::True,
        Principal::Unix(unix) => principal_matches(unix, caller),
    };
    statement
        .conditions
        .iter()
        .fold(action.and(resource).and(principal), |acc, condition| {
            acc.and(condition_holds(condition, caller, request))
        })
}

/// Whether the caller is one of the principal's entries.
pub fn principal_matches(principal: &UnixPrincipal, caller: &Caller) -> Truth {
    let mut result = Truth::False;
    if principal.uids.contains(&caller.uid) {
        return Truth::True;
    }
    if !principal.users.is_empty() {
        result = result.or(match &caller.user {
            Some(user) => Truth::from_bool(principal.users.contains(user)),
            None => Truth::Unknown,
        });
    }
    if !principal.gids.is_empty() {
        result = result.or(if principal.gids.contains(&caller.gid) {
            Truth::True
        } else {
            match &caller.groups {
                Some(groups) => Truth::from_bool(groups.iter().any(|g| principal.gids.contains(g))),
                None => Truth::Unknown,
            }
        });
    }
    if !principal.groups.is_empty() {
        result = result.or(match &caller.group_names {
            Some(names) => Truth::from_bool(names.iter().any(|n| principal.groups.contains(n))),
            None => Truth::Unknown,
        });
    }
    if !principal.units.is_empty() {
        result = result.or(match caller.unit() {
            Some(unit) => Truth::from_bool(principal.units.iter().any(|u| u == unit)),
            None => Truth::Unknown,
        });
    }
    if !principal.exes.is_empty() {
        result = result.or(match caller.exe() {
            Some(exe) => Truth::from_bool(principal.exes.iter().any(|e| e == exe)),
            None => Truth::Unknown,
        });
    }
    result
}

/// The values of a condition key for this request; None when the fact is absent.
pub fn key_values(
    key: &ConditionKey,
    caller: &Caller,
    request: &Request<'_>,
) -> Option<Vec<String>> {
    let non_empty = |values: Vec<String>| (!values.is_empty()).then_some(values);
    match key {
        ConditionKey::EncryptionContext(name) => request
            .encryption_context?
            .get(name)
            .map(|value| vec![value.clone()]),
        ConditionKey::EncryptionContextKeys => {
            non_empty(request.encryption_context?.keys().cloned().collect())
        }
        ConditionKey::GrantOperations => non_empty(request.grant_operations?.to_vec()),
        ConditionKey::KeySpec => Some(vec![request.key_spec.to_string()]),
        ConditionKey::RequestAlias => request.request_alias.map(|a| vec![a.to_string()]),
        ConditionKey::ResourceAliases => non_empty(request.resource_aliases.to_vec()),
        ConditionKey::CallerUid => Some(vec![caller.uid.to_string()]),
        ConditionKey::CallerGid => Some(vec![caller.gid.to_string()]),
        ConditionKey::CallerGids => {
            let mut gids = vec![caller.gid.to_string()];
            gids.extend(caller.groups.as_ref()?.iter().map(u32::to_string));
            Some(gids)
        }
        ConditionKey::CallerUser => caller.user.clone().map(|u| vec![u]),
        ConditionKey::CallerGroups => non_empty(caller.group_names.clone()?),
        ConditionKey::CallerUnit => caller.unit().map(|u| vec![u.to_string()]),
        ConditionKey::CallerExe => caller.exe().map(|e| vec![e.to_string()]),
    }
}

/// Evaluates one condition.
pub fn condition_holds(condition: &Condition, caller: &Caller, request: &Request<'_>) -> Truth {
    let values = key_values(&condition.key, caller, request);
    if condition.operator == Operator::Null {
        let want_absent = condition
            .values
            .iter()
            .any(|v| v.eq_ignore_ascii_case("true"));
        return Truth::from_bool(values.is_none() == want_absent);
    }
    let Some(values) = values else {
        return if condition.if_exists {
            Truth::True
        } else {
            Truth::Unknown
        };
    };
    let op = condition.operator;
    // Whether one request value satisfies the operator against the policy values.
    let one = |value: &String| -> bool {
        let any = condition
            .values
            .iter()
            .any(|expected| positive_match(op, expected, value));
        if op.is_negated() {
            !any
        } else {
            any
        }
    };
    Truth::from_bool(match condition.qualifier {
        Some(SetQualifier::ForAllValues) => values.iter().all(one),
        Some(SetQualifier::ForAnyValue) => values.iter().any(one),
        None if op.is_negated() => values.iter().all(one),
        None => values.iter().any(one),
    })
}

/// The positive form of an operator (negated ones are handled by the caller).
fn positive_match(op: Operator, expected: &str, value: &str) -> bool {
    match op {
        Operator::StringEquals | Operator::StringNotEquals => expected == value,
        Operator::StringEqualsIgnoreCase | Operator::StringNotEqualsIgnoreCase => {
            expected.to_lowercase() == value.to_lowercase()
        }
        Operator::StringLike | Operator::StringNotLike => glob::matches(expected, value),
        Operator::Bool => expected.eq_ignore_ascii_case(value),
        Operator::Null => false,
        numeric => {
            let (Ok(expected), Ok(value)) = (expected.parse::<f64>(), value.parse::<f64>()) else {
                return false;
            };
            match numeric {
                Operator::NumericEquals | Operator::NumericNotEquals => value == expected,
                Operator::NumericLessThan => value < expected,
                Operator::NumericLessThanEquals => value <= expected,
                Operator::NumericGreaterThan => value > expected,
                Operator::NumericGreaterThanEquals => value >= expected,
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::document::parse;
    use super::*;
    use crate::identity::Process;
    use proptest::prelude::*;

    const ARN: &str = "arn:kmsd:kms:local:000000000000:key/k1";

    fn caller(uid: u32) -> Caller {
        let mut caller = Caller::new(Some(1), uid, uid);
        caller.groups = Some(vec![100, 200]);
        caller.user = Some(format!("user{uid}"));
        caller.group_names = Some(vec![format!("user{uid}"), "users".into(), "web".into()]);
        caller.set_process(Process {
            pid: Some(1),
            exe: Some("/usr/bin/app".into()),
            unit: Some("app.service".into()),
        });
        caller
    }

    fn request<'a>(action: &'a str, context: Option<&'a EncryptionContext>) -> Request<'a> {
        Request {
            action,
            resource: ARN,
            encryption_context: context,
            key_spec: "SYMMETRIC_DEFAULT",
            ..Default::default()
        }
    }

    fn policy(statements: &str) -> PolicyDocument {
        parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#
        ))
        .unwrap_or_else(|err| panic!("{statements}: {err}"))
    }

    fn allow(principal: &str, action: &str, condition: &str) -> String {
        let condition = if condition.is_empty() {
            String::new()
        } else {
            format!(r#","Condition":{condition}"#)
        };
        format!(
            r#"{{"Effect":"Allow","Principal":{principal},"Action":"{action}","Resource":"*"{condition}}}"#
        )
    }

    #[test]
    fn decisions_table() {
        let ctx: EncryptionContext = [("purpose".to_string(), "backup".to_string())].into();
        let other: EncryptionContext = [("purpose".to_string(), "x".to_string())].into();
        let empty = EncryptionContext::new();
        let mut no_exe = caller(1000);
        no_exe.set_process(Process::default());
        no_exe.groups = None;
        no_exe.group_names = None;
        let uid = r#"{"Unix":{"Uid":[1000]}}"#;
        #[rustfmt::skip]
        let cases: Vec<(String, Caller, &str, Option<&EncryptionContext>, Decision)> = vec![
            (allow(uid, "kms:*", ""), caller(1000), "kms:Decrypt", None, Decision::Allow),
            (allow(uid, "kms:*", ""), caller(1001), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(uid, "kms:Decrypt", ""), caller(1000), "kms:Encrypt", None, Decision::ImplicitDeny),
            (allow(uid, "kms:generate*", ""), caller(1000), "kms:GenerateDataKey", None, Decision::Allow),
            (allow(r#""*""#, "kms:Decrypt", ""), caller(7), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"User":"user5"}}"#, "kms:*", ""), caller(5), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Group":"web"}}"#, "kms:*", ""), caller(5), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Group":"web"}}"#, "kms:*", ""), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#"{"Unix":{"Gid":200}}"#, "kms:*", ""), caller(5), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Gid":5}}"#, "kms:*", ""), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#"{"Unix":{"Gid":1000}}"#, "kms:*", ""), no_exe.clone(), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Exe":"/usr/bin/app"}}"#, "kms:*", ""), caller(5), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Exe":"/usr/bin/app"}}"#, "kms:*", ""), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#"{"Unix":{"Unit":"app.service"}}"#, "kms:*", ""), caller(5), "kms:Decrypt", None, Decision::Allow),
            (allow(r#"{"Unix":{"Unit":"app.service"}}"#, "kms:*", ""), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            // Encryption context conditions.
            (allow(uid, "kms:*", r#"{"StringEquals":{"kms:EncryptionContext:purpose":"backup"}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"StringEquals":{"kms:EncryptionContext:purpose":"backup"}}"#), caller(1000), "kms:Decrypt", Some(&other), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"StringEquals":{"kms:EncryptionContext:purpose":"backup"}}"#), caller(1000), "kms:Decrypt", Some(&empty), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"StringNotEquals":{"kms:EncryptionContext:purpose":"backup"}}"#), caller(1000), "kms:Decrypt", Some(&empty), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"StringNotEqualsIfExists":{"kms:EncryptionContext:purpose":"backup"}}"#), caller(1000), "kms:Decrypt", Some(&empty), Decision::Allow),
            (allow(uid, "kms:*", r#"{"StringLike":{"kms:EncryptionContext:purpose":"back*"}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"StringNotLike":{"kms:EncryptionContext:purpose":"back*"}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"StringEqualsIgnoreCase":{"kms:EncryptionContext:purpose":"BACKUP"}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["purpose","tenant"]}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant"]}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::ImplicitDeny),
            // Fail closed: no context keys at all is not "all values match".
            (allow(uid, "kms:*", r#"{"ForAllValues:StringEquals":{"kms:EncryptionContextKeys":["tenant"]}}"#), caller(1000), "kms:Decrypt", Some(&empty), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"ForAnyValue:StringEquals":{"kms:EncryptionContextKeys":["purpose"]}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#), caller(1000), "kms:Decrypt", Some(&ctx), Decision::Allow),
            (allow(uid, "kms:*", r#"{"Null":{"kms:EncryptionContextKeys":"false"}}"#), caller(1000), "kms:Decrypt", Some(&empty), Decision::ImplicitDeny),
            (allow(uid, "kms:*", r#"{"Null":{"kmsd:CallerExe":"true"}}"#), no_exe.clone(), "kms:Decrypt", None, Decision::Allow),
            // Caller condition keys.
            (allow(r#""*""#, "kms:*", r#"{"NumericLessThan":{"kmsd:CallerUid":1000}}"#), caller(999), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"NumericLessThan":{"kmsd:CallerUid":1000}}"#), caller(1000), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#""*""#, "kms:*", r#"{"NumericGreaterThanEquals":{"kmsd:CallerUid":1000}}"#), caller(1000), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"NumericEquals":{"kmsd:CallerGid":1000}}"#), caller(1000), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"ForAnyValue:StringEquals":{"kmsd:CallerGroups":"web"}}"#), caller(3), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"StringEquals":{"kmsd:CallerGids":"200"}}"#), caller(3), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"StringEquals":{"kmsd:CallerUser":"user3"}}"#), caller(3), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"StringLike":{"kmsd:CallerUnit":"*.service"}}"#), caller(3), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"StringLike":{"kmsd:CallerUnit":"*.service"}}"#), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#""*""#, "kms:*", r#"{"StringNotEquals":{"kmsd:CallerExe":"/bin/evil"}}"#), no_exe.clone(), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#""*""#, "kms:*", r#"{"Bool":{"kmsd:CallerUid":"true"}}"#), caller(3), "kms:Decrypt", None, Decision::ImplicitDeny),
            (allow(r#""*""#, "kms:*", r#"{"StringEquals":{"kms:KeySpec":"SYMMETRIC_DEFAULT"}}"#), caller(3), "kms:Decrypt", None, Decision::Allow),
            (allow(r#""*""#, "kms:*", r#"{"StringEquals":{"kms:RequestAlias":"alias/a"}}"#), caller(3), "kms:Decrypt", None, Decision::ImplicitDeny),
            // Deny beats Allow; a Deny whose fact is unknown still applies.
            (format!(r#"{},{{"Sid":"NoDecrypt","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}"#, allow(uid, "kms:*", "")), caller(1000), "kms:Decrypt", None, Decision::ExplicitDeny(Some("NoDecrypt".into()))),
            (format!(r#"{},{{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}}"#, allow(uid, "kms:*", "")), caller(1000), "kms:Encrypt", None, Decision::Allow),
            (format!(r#"{},{{"Effect":"Deny","Principal":{{"Unix":{{"Exe":"/bin/evil"}}}},"Action":"kms:*","Resource":"*"}}"#, allow(uid, "kms:*", "")), no_exe, "kms:Decrypt", None, Decision::ExplicitDeny(None)),
            (format!(r#"{},{{"Effect":"Deny","Principal":{{"Unix":{{"Exe":"/bin/evil"}}}},"Action":"kms:*","Resource":"*"}}"#, allow(uid, "kms:*", "")), caller(1000), "kms:Decrypt", None, Decision::Allow),
            // Resource patterns.
            (r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:kmsd:kms:local:000000000000:key/other"}"#.to_string(), caller(1), "kms:Decrypt", None, Decision::ImplicitDeny),
            (r#"{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"arn:kmsd:kms:*:key/k1"}"#.to_string(), caller(1), "kms:Decrypt", None, Decision::Allow),
        ];
        for (index, (statements, caller, action, context, expected)) in
            cases.into_iter().enumerate()
        {
            let doc = policy(&statements);
            let got = evaluate(&doc, &caller, &request(action, context));
            assert_eq!(got, expected, "case {index}: {statements} {action}");
        }
    }

    fn arb_statement() -> impl Strategy<Value = String> {
        let effect = prop_oneof![Just("Allow"), Just("Deny")];
        let principal = prop_oneof![
            Just(r#""*""#.to_string()),
            (0u32..4).prop_map(|uid| format!(r#"{{"Unix":{{"Uid":[{uid}]}}}}"#)),
            Just(r#"{"Unix":{"Exe":"/usr/bin/app"}}"#.to_string()),
            Just(r#"{"Unix":{"Group":"web"}}"#.to_string()),
        ];
        let action = prop_oneof![
            Just("kms:*"),
            Just("kms:Decrypt"),
            Just("kms:Encrypt"),
            Just("*")
        ];
        let condition = prop_oneof![
            Just(String::new()),
            Just(r#","Condition":{"StringEquals":{"kms:EncryptionContext:a":"1"}}"#.to_string()),
            Just(r#","Condition":{"NumericLessThan":{"kmsd:CallerUid":2}}"#.to_string()),
            Just(r#","Condition":{"StringLike":{"kmsd:CallerUnit":"*"}}"#.to_string()),
        ];
        (effect, principal, action, condition).prop_map(|(e, p, a, c)| {
            format!(r#"{{"Effect":"{e}","Principal":{p},"Action":"{a}","Resource":"*"{c}}}"#)
        })
    }

    proptest! {
        /// Adding a Deny statement that matches the request always denies, whatever else
        /// the policy allows, wherever the Deny appears.
        #[test]
        fn explicit_deny_always_wins(
            statements in proptest::collection::vec(arb_statement(), 0..6),
            position in 0usize..7,
            uid in 0u32..4,
            known in any::<bool>(),
            with_context in any::<bool>(),
        ) {
            let mut statements = statements;
            let deny = r#"{"Sid":"D","Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*"}"#.to_string();
            let at = position.min(statements.len());
            statements.insert(at, deny);
            let doc = policy(&statements.join(","));
            let mut who = caller(uid);
            if !known {
                who.set_process(Process::default());
                who.groups = None;
                who.group_names = None;
            }
            let ctx: EncryptionContext = [("a".to_string(), "1".to_string())].into();
            let req = request("kms:Decrypt", with_context.then_some(&ctx));
            prop_assert!(matches!(evaluate(&doc, &who, &req), Decision::ExplicitDeny(_)));
        }
    }
}
