//! Fuzz target: the key-policy parser (`policy::parse`) and the evaluation of whatever it
//! accepts (`policy::evaluate`) for fixed callers (root; a user with every fact known; a
//! caller of whom only the uid is known) and fixed requests (every policy action, with and
//! without an encryption context, aliases, grant operations).
//!
//! Input: the policy text (invalid UTF-8 is decoded lossily, so the parser still runs).
//! Invariants: no panic, in parsing or in evaluation; parsing is deterministic (a text
//! that parses once parses again to the same document).
#![no_main]

use kmsd::crypto::EncryptionContext;
use kmsd::identity::{Caller, Process};
use kmsd::policy::{evaluate, parse, Request};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Fixtures {
    callers: Vec<Caller>,
    actions: Vec<&'static str>,
    context: EncryptionContext,
    aliases: Vec<String>,
    grant_operations: Vec<String>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let root = {
            let mut c = Caller::new(Some(1), 0, 0);
            c.user = Some("root".into());
            c.group = Some("root".into());
            c.groups = Some(vec![0]);
            c.group_names = Some(vec!["root".into()]);
            c
        };
        let full = {
            let mut c = Caller::new(Some(4242), 1000, 1000);
            c.user = Some("alice".into());
            c.group = Some("alice".into());
            c.groups = Some(vec![1000, 27, 33]);
            c.group_names = Some(vec!["alice".into(), "sudo".into(), "www-data".into()]);
            c.set_process(Process {
                pid: Some(4242),
                exe: Some("/usr/bin/backup".into()),
                unit: Some("backup.service".into()),
            });
            c
        };
        let bare = Caller::new(None, 33, 33);
        Fixtures {
            callers: vec![root, full, bare],
            actions: kmsd::api::operations::policy_actions()
                .chain(["kms:*", "kmsd:GetUsage", ""])
                .collect(),
            context: [
                ("purpose".to_string(), "backup".to_string()),
                ("Dept".to_string(), "A".to_string()),
            ]
            .into(),
            aliases: vec!["alias/backup".into(), "alias/web".into()],
            grant_operations: vec!["Decrypt".into(), "Encrypt".into()],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(document) = parse(&text) else {
        return;
    };
    assert_eq!(
        parse(&text).ok().as_ref(),
        Some(&document),
        "parsing is not deterministic"
    );
    let f = fixtures();
    let resource = "arn:kmsd:kms:local:000000000000:key/0f0e0d0c-0b0a-4009-8807-060504030201";
    for caller in &f.callers {
        for (i, action) in f.actions.iter().enumerate() {
            let request = Request {
                action,
                resource,
                encryption_context: (i % 2 == 0).then_some(&f.context),
                grant_operations: (action == &"kms:CreateGrant").then_some(&f.grant_operations[..]),
                key_spec: "SYMMETRIC_DEFAULT",
                request_alias: (i % 3 == 0).then_some("alias/backup"),
                resource_aliases: &f.aliases,
            };
            let _ = evaluate(&document, caller, &request);
        }
    }
});
