//! Key policies for Unix principals: the policy document (AWS key-policy shape, with
//! `{"Unix": {...}}` principals and `kmsd:Caller*` condition keys), its strict parser, and
//! its evaluation (explicit Deny, then Allow, else implicit deny; missing facts fail
//! closed). Pure functions, no I/O; the service layer applies them. See the README, "Access control".

mod document;
mod eval;
mod glob;

pub use document::{
    default_policy_text, parse, Condition, ConditionKey, Effect, Operator, PolicyDocument,
    PolicyError, Principal, SetQualifier, Statement, UnixPrincipal, MAX_POLICY_BYTES,
};
pub use eval::{
    condition_holds, evaluate, key_values, principal_matches, Decision, Request, Truth,
};

#[cfg(test)]
mod doc_examples {
    //! The worked examples of the README ("Access control"), parsed and evaluated as written there.

    use super::*;
    use crate::crypto::EncryptionContext;
    use crate::identity::Caller;

    const DOC: &str = include_str!("../../README.md");

    fn examples() -> Vec<PolicyDocument> {
        DOC.split("```json")
            .skip(1)
            .filter_map(|block| block.split("```").next())
            .filter(|block| block.contains("RootAdministers"))
            .map(|block| parse(block).unwrap_or_else(|err| panic!("{block}: {err}")))
            .collect()
    }

    fn caller(uid: u32, user: &str, groups: &[&str], unit: Option<&str>) -> Caller {
        let mut caller = Caller::new(Some(10), uid, uid);
        caller.user = Some(user.into());
        caller.groups = Some(vec![]);
        caller.group_names = Some(groups.iter().map(|g| g.to_string()).collect());
        caller.set_process(crate::identity::Process {
            pid: Some(10),
            exe: Some("/usr/bin/x".into()),
            unit: unit.map(str::to_string),
        });
        caller
    }

    fn decide(
        doc: &PolicyDocument,
        who: &Caller,
        action: &str,
        ctx: Option<&EncryptionContext>,
    ) -> Decision {
        evaluate(
            doc,
            who,
            &Request {
                action,
                resource: "arn:kmsd:kms:local:000000000000:key/k",
                encryption_context: ctx,
                key_spec: "SYMMETRIC_DEFAULT",
                ..Default::default()
            },
        )
    }

    #[test]
    fn worked_examples() {
        let docs = examples();
        assert_eq!(docs.len(), 3);
        let root = caller(0, "root", &["root"], None);
        let empty = EncryptionContext::new();
        for doc in &docs {
            assert_eq!(
                decide(doc, &root, "kms:PutKeyPolicy", None),
                Decision::Allow
            );
        }
        // 1. web server: decrypt only, and only from nginx.service.
        let nginx = caller(33, "www-data", &["www-data"], Some("nginx.service"));
        let shell = caller(33, "www-data", &["www-data"], Some("session-1.scope"));
        assert_eq!(
            decide(&docs[0], &nginx, "kms:Decrypt", Some(&empty)),
            Decision::Allow
        );
        assert_ne!(
            decide(&docs[0], &nginx, "kms:Encrypt", Some(&empty)),
            Decision::Allow
        );
        assert_ne!(
            decide(&docs[0], &shell, "kms:Decrypt", Some(&empty)),
            Decision::Allow
        );
        // 2. backup: data keys with exactly {"purpose":"backup"}.
        let backup = caller(900, "backup", &["backup"], Some("backup.service"));
        let ok_ctx: EncryptionContext = [("purpose".to_string(), "backup".to_string())].into();
        let mut extra = ok_ctx.clone();
        extra.insert("x".into(), "y".into());
        assert_eq!(
            decide(&docs[1], &backup, "kms:GenerateDataKey", Some(&ok_ctx)),
            Decision::Allow
        );
        assert_ne!(
            decide(&docs[1], &backup, "kms:GenerateDataKey", Some(&empty)),
            Decision::Allow
        );
        assert_ne!(
            decide(&docs[1], &backup, "kms:GenerateDataKey", Some(&extra)),
            Decision::Allow
        );
        assert_ne!(
            decide(&docs[1], &backup, "kms:Decrypt", Some(&ok_ctx)),
            Decision::Allow
        );
        // 3. deploy group: administers, cannot use.
        let deployer = caller(1200, "ci", &["ci", "deploy"], None);
        for action in [
            "kms:PutKeyPolicy",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
            "kms:DescribeKey",
        ] {
            assert_eq!(
                decide(&docs[2], &deployer, action, None),
                Decision::Allow,
                "{action}"
            );
        }
        for action in [
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncryptFrom",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:CreateGrant",
        ] {
            assert!(
                matches!(
                    decide(&docs[2], &deployer, action, Some(&empty)),
                    Decision::ExplicitDeny(_)
                ),
                "{action}"
            );
        }
    }
}
