//! The authorization matrix against a real kmsd: client processes run as distinct uids
//! (and supplementary groups) under `setpriv`, and as executables at chosen paths, and
//! every operation is crossed with allow, deny and condition cases: group membership,
//! Exe and Unit principals, encryption-context conditions, grants with constraints,
//! retire and revoke, the lockout check, Deny overriding Allow, and the connector that
//! exits before kmsd looks at it (PID reuse).
//!
//! The client is a few lines of Python speaking raw HTTP/1.1 over the Unix socket, run by
//! `setpriv --reuid --regid --groups` (util-linux): it needs nothing but the interpreter,
//! and a copy of the interpreter at another path is a distinct executable for Exe tests.
//! Needs root (CI runs as root); skipped otherwise.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PYTHON: &str = "/usr/bin/python3";

/// Sends one request (argv: socket, operation; body on stdin) and prints the raw body.
const CLIENT_PY: &str = r#"
import socket, sys
path, op = sys.argv[1], sys.argv[2]
body = sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
head = ("POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.%s\r\n"
        "Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n"
        "Connection: close\r\n\r\n" % (op, len(body))).encode()
s.sendall(head + body)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.buffer.write(data.split(b"\r\n\r\n", 1)[1])
"#;

/// Who a client process runs as.
#[derive(Clone)]
struct As {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// The interpreter to run (a copy at another path is another Exe).
    exe: PathBuf,
}

fn user(uid: u32) -> As {
    As {
        uid,
        gid: uid,
        groups: vec![],
        exe: PathBuf::from(PYTHON),
    }
}

fn setpriv(who: &As) -> Command {
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.gid));
    if who.groups.is_empty() {
        command.arg("--clear-groups");
    } else {
        let groups: Vec<String> = who.groups.iter().map(u32::to_string).collect();
        command.arg(format!("--groups={}", groups.join(",")));
    }
    command.arg("--").arg(&who.exe);
    command
}

/// Calls kmsd as `who`; Ok(response) or Err((exception, message)).
fn call(who: &As, socket: &Path, op: &str, body: &Value) -> Result<Value, (String, String)> {
    let mut child = setpriv(who)
        .arg("-c")
        .arg(CLIENT_PY)
        .arg(socket)
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run setpriv (util-linux) and python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "client as uid {} failed: {}",
        who.uid,
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)));
    match value.get("__type").and_then(Value::as_str) {
        Some(exception) => Err((
            exception.to_string(),
            value["message"].as_str().unwrap_or("").to_string(),
        )),
        None => Ok(value),
    }
}

fn allowed(who: &As, socket: &Path, op: &str, body: Value) -> Value {
    call(who, socket, op, &body)
        .unwrap_or_else(|err| panic!("uid {} {op} {body}: expected success, got {err:?}", who.uid))
}

fn denied(who: &As, socket: &Path, op: &str, body: Value) -> String {
    match call(who, socket, op, &body) {
        Err((exception, message)) if exception == "AccessDeniedException" => message,
        other => panic!(
            "uid {} {op} {body}: expected AccessDeniedException, got {other:?}",
            who.uid
        ),
    }
}

fn is_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        true
    } else {
        eprintln!("skipping: needs root to switch uids (CI runs as root)");
        false
    }
}

/// A temp dir other uids can read, holding a copy of the interpreter named `name`.
fn exe_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join(name);
    std::fs::copy(std::fs::canonicalize(PYTHON).unwrap(), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

async fn create_with_policy(client: &Client, policy: &Value) -> String {
    let created = ok(
        client,
        "CreateKey",
        json!({"Description": "authz", "Policy": policy.to_string()}),
    )
    .await;
    created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn root_admin() -> Value {
    json!({"Sid": "RootAdmin", "Effect": "Allow", "Principal": {"Unix": {"Uid": [0]}}, "Action": "kms:*", "Resource": "*"})
}

/// Every key operation, with a request body for key `key` (and a ciphertext `blob`).
fn key_operations(key: &str, blob: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("DescribeKey", json!({"KeyId": key})),
        ("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")})),
        ("Decrypt", json!({"CiphertextBlob": blob})),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": blob, "DestinationKeyId": key}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256"}),
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": key, "KeySpec": "AES_256"}),
        ),
        ("EnableKey", json!({"KeyId": key})),
        ("DisableKey", json!({"KeyId": key})),
        (
            "UpdateKeyDescription",
            json!({"KeyId": key, "Description": "x"}),
        ),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": key, "PendingWindowInDays": 7}),
        ),
        ("CancelKeyDeletion", json!({"KeyId": key})),
        (
            "CreateAlias",
            json!({"AliasName": "alias/intruder", "TargetKeyId": key}),
        ),
        (
            "TagResource",
            json!({"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        ),
        ("UntagResource", json!({"KeyId": key, "TagKeys": ["a"]})),
        ("ListResourceTags", json!({"KeyId": key})),
        ("EnableKeyRotation", json!({"KeyId": key})),
        ("DisableKeyRotation", json!({"KeyId": key})),
        ("GetKeyRotationStatus", json!({"KeyId": key})),
        ("RotateKeyOnDemand", json!({"KeyId": key})),
        ("ListKeyRotations", json!({"KeyId": key})),
        (
            "PutKeyPolicy",
            json!({"KeyId": key, "PolicyName": "default", "Policy": "{}"}),
        ),
        (
            "GetKeyPolicy",
            json!({"KeyId": key, "PolicyName": "default"}),
        ),
        ("ListKeyPolicies", json!({"KeyId": key})),
        (
            "CreateGrant",
            json!({"KeyId": key, "GranteePrincipal": "uid:5004", "Operations": ["Decrypt"]}),
        ),
        ("ListGrants", json!({"KeyId": key})),
        (
            "RevokeGrant",
            json!({"KeyId": key, "GrantId": "0".repeat(64)}),
        ),
    ]
}

/// Daemon-level operations (the [access] list decides).
fn daemon_operations() -> Vec<(&'static str, Value)> {
    vec![
        ("CreateKey", json!({})),
        ("ListKeys", json!({})),
        ("ListAliases", json!({})),
        ("GenerateRandom", json!({"NumberOfBytes": 8})),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_matrix_users_groups_context_and_deny_over_allow() {
    if !is_root() {
        return;
    }
    let fx = Fixture::start();
    let root = fx.client();
    let socket = fx.kmsd.socket.clone();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            root_admin(),
            {"Sid": "AppUses", "Effect": "Allow", "Principal": {"Unix": {"Uid": [5001]}},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*"},
            {"Sid": "GroupDescribes", "Effect": "Allow", "Principal": {"Unix": {"Gid": [6000]}},
             "Action": "kms:DescribeKey", "Resource": "*"},
            {"Sid": "NotHim", "Effect": "Deny", "Principal": {"Unix": {"Uid": [5002]}},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "BackupOnly", "Effect": "Allow", "Principal": {"Unix": {"Uid": [5003]}},
             "Action": "kms:GenerateDataKey", "Resource": "*",
             "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "backup"}}},
        ]
    });
    let key = create_with_policy(&root, &policy).await;
    let blob = ok(
        &root,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"secret")}),
    )
    .await["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();

    // uid 5001: exactly its three actions.
    let app = user(5001);
    let mine = allowed(
        &app,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"hi")}),
    );
    let back = allowed(
        &app,
        &socket,
        "Decrypt",
        json!({"CiphertextBlob": mine["CiphertextBlob"]}),
    );
    assert_eq!(unb64(&back["Plaintext"]), b"hi");
    for (op, body) in key_operations(&key, &blob) {
        if ["Encrypt", "Decrypt", "DescribeKey"].contains(&op) {
            continue;
        }
        let message = denied(&app, &socket, op, body);
        // ReEncrypt's source side is Decrypt: its denial must not reveal the key.
        if op != "ReEncrypt" {
            assert!(
                message.contains("5001"),
                "{op}: message must name the caller: {message}"
            );
            assert!(
                !message.contains("Statement"),
                "{op}: no policy content: {message}"
            );
        }
    }

    // A member of gid 6000 (supplementary) may describe; without the group it may not.
    let member = As {
        groups: vec![6000],
        ..user(5004)
    };
    allowed(&member, &socket, "DescribeKey", json!({"KeyId": key}));
    denied(&user(5004), &socket, "DescribeKey", json!({"KeyId": key}));

    // uid 5002 is in gid 6000 too, but the Deny wins over the group's Allow.
    let excluded = As {
        groups: vec![6000],
        ..user(5002)
    };
    denied(&excluded, &socket, "DescribeKey", json!({"KeyId": key}));

    // uid 5003: GenerateDataKey only with purpose=backup.
    let backup = user(5003);
    allowed(
        &backup,
        &socket,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"purpose": "backup"}}),
    );
    denied(
        &backup,
        &socket,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": {"purpose": "other"}}),
    );
    denied(
        &backup,
        &socket,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256"}),
    );
    denied(
        &backup,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": {"purpose": "backup"}}),
    );

    // A uid with no statement and no grant: every operation on every key, and every
    // daemon-level operation, is denied.
    let nobody = user(5009);
    for (op, body) in key_operations(&key, &blob)
        .into_iter()
        .chain(daemon_operations())
    {
        denied(&nobody, &socket, op, body);
    }
    // Decrypt does not reveal whether the key exists: an unknown key gives the same answer.
    let hidden = denied(&nobody, &socket, "Decrypt", json!({"CiphertextBlob": blob}));
    // A well-formed ciphertext under a key this kmsd never had (from another kmsd).
    let other_dir = KmsdDir::new();
    let other = Kmsd::start(&fx.tpm, &other_dir);
    let foreign_key = create_key(&other.client()).await;
    let foreign = ok(
        &other.client(),
        "Encrypt",
        json!({"KeyId": foreign_key, "Plaintext": b64(b"x")}),
    )
    .await;
    let forged = unb64(&foreign["CiphertextBlob"]);
    let unknown = call(
        &nobody,
        &socket,
        "Decrypt",
        &json!({"CiphertextBlob": b64(&forged)}),
    );
    match unknown {
        Err((exception, message)) => {
            assert_eq!(exception, "AccessDeniedException");
            assert_eq!(message, hidden);
        }
        other => panic!("{other:?}"),
    }

    // Root still administers everything.
    ok(&root, "DescribeKey", json!({"KeyId": key})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_operations_lockout_check_and_daemon_access() {
    if !is_root() {
        return;
    }
    let fx = Fixture::start_with(KmsdOptions {
        config: "[access]\nadmin_users = [\"5005\"]\nadmin_groups = [\"6100\"]\n".into(),
        ..Default::default()
    });
    let root = fx.client();
    let socket = fx.kmsd.socket.clone();

    // Default policy: the creator's uid, stored and returned by GetKeyPolicy.
    let creator = user(5005);
    let created = allowed(&creator, &socket, "CreateKey", json!({}));
    let key = created["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let got = allowed(&creator, &socket, "GetKeyPolicy", json!({"KeyId": key}));
    assert_eq!(got["PolicyName"], "default");
    let text: Value = serde_json::from_str(got["Policy"].as_str().unwrap()).unwrap();
    assert_eq!(
        text["Statement"][0]["Principal"]["Unix"]["Uid"],
        json!([5005])
    );
    let listed = allowed(&creator, &socket, "ListKeyPolicies", json!({"KeyId": key}));
    assert_eq!(listed["PolicyNames"], json!(["default"]));
    allowed(
        &creator,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    );
    // Another uid may not use it, nor create keys (not an administrator)...
    denied(
        &user(5006),
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    );
    denied(&user(5006), &socket, "CreateKey", json!({}));
    denied(&user(5006), &socket, "ListKeys", json!({}));
    // ...unless a member of an admin group.
    let admin_member = As {
        groups: vec![6100],
        ..user(5006)
    };
    allowed(&admin_member, &socket, "CreateKey", json!({}));
    allowed(
        &admin_member,
        &socket,
        "GenerateRandom",
        json!({"NumberOfBytes": 8}),
    );
    let keys = allowed(&creator, &socket, "ListKeys", json!({}));
    assert!(keys["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["KeyId"] == key.as_str()));

    // Lockout check: a policy that would stop the caller changing it is refused...
    let lockout = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Unix": {"Uid": [5005]}}, "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}]});
    let refused = call(
        &creator,
        &socket,
        "PutKeyPolicy",
        &json!({"KeyId": key, "PolicyName": "default", "Policy": lockout.to_string()}),
    );
    match refused {
        Err((exception, message)) => {
            assert_eq!(exception, "MalformedPolicyDocumentException");
            assert!(message.contains("update the key policy"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // ...unless bypassed; then the caller cannot change it any more.
    allowed(
        &creator,
        &socket,
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": lockout.to_string(), "BypassPolicyLockoutSafetyCheck": true}),
    );
    denied(
        &creator,
        &socket,
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": lockout.to_string()}),
    );
    denied(&creator, &socket, "GetKeyPolicy", json!({"KeyId": key}));
    allowed(
        &creator,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    );
    // Root administers it and gets the document back verbatim.
    let got = ok(&root, "GetKeyPolicy", json!({"KeyId": key})).await;
    assert_eq!(got["Policy"].as_str().unwrap(), lockout.to_string());

    // Malformed documents name the statement and the field.
    let bad = json!({"Statement": [root_admin(),
        {"Sid": "Oops", "Effect": "Allow", "Principal": "*", "Action": "kms:Frobnicate", "Resource": "*"}]});
    let message = fails(
        &root,
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": bad.to_string()}),
        "MalformedPolicyDocumentException",
    )
    .await;
    assert!(
        message.contains("Statement[1]") && message.contains("Oops") && message.contains("Action"),
        "{message}"
    );
    let bad = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
        "Condition": {"StringEquals": {"kms:Nonsense": "x"}}}]});
    let message = fails(
        &root,
        "CreateKey",
        json!({"Policy": bad.to_string()}),
        "MalformedPolicyDocumentException",
    )
    .await;
    assert!(message.contains("kms:Nonsense"), "{message}");
    let huge = json!({"Id": "x".repeat(33 * 1024), "Statement": [root_admin()]});
    let message = fails(
        &root,
        "PutKeyPolicy",
        json!({"KeyId": key, "Policy": huge.to_string()}),
        "ValidationException",
    )
    .await;
    assert!(
        message.contains("at 'policy'") && message.contains("32768"),
        "{message}"
    );
    fails(
        &root,
        "GetKeyPolicy",
        json!({"KeyId": key, "PolicyName": "other"}),
        "NotFoundException",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_with_constraints_tokens_retire_revoke_and_restart() {
    if !is_root() {
        return;
    }
    let mut fx = Fixture::start();
    let root = fx.client();
    let socket = fx.kmsd.socket.clone();
    let key = create_with_policy(
        &root,
        &json!({"Version": "2012-10-17", "Statement": [root_admin()]}),
    )
    .await;
    let grantee = user(5001);
    let retirer = user(5002);
    let stranger = user(5003);
    let web = json!({"app": "web"});
    denied(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x"), "EncryptionContext": web}),
    );

    let grant = ok(
        &root,
        "CreateGrant",
        json!({
        "KeyId": key, "GranteePrincipal": "uid:5001", "RetiringPrincipal": "uid:5002",
        "Operations": ["Encrypt", "Decrypt"], "Name": "web-app",
        "Constraints": {"EncryptionContextSubset": {"app": "web"}}}),
    )
    .await;
    let grant_id = grant["GrantId"].as_str().unwrap().to_string();
    let token = grant["GrantToken"].as_str().unwrap().to_string();
    // Name makes CreateGrant idempotent.
    let again = ok(
        &root,
        "CreateGrant",
        json!({
        "KeyId": key, "GranteePrincipal": "uid:5001", "RetiringPrincipal": "uid:5002",
        "Operations": ["Decrypt", "Encrypt"], "Name": "web-app",
        "Constraints": {"EncryptionContextSubset": {"app": "web"}}}),
    )
    .await;
    assert_eq!(again["GrantId"], grant_id.as_str());

    // The grant allows its operations, with the constraint, and nothing else.
    let sealed = allowed(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": {"app": "web", "x": "1"}, "GrantTokens": [token]}),
    );
    allowed(
        &grantee,
        &socket,
        "Decrypt",
        json!({"CiphertextBlob": sealed["CiphertextBlob"], "EncryptionContext": {"app": "web", "x": "1"}}),
    );
    denied(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g")}),
    );
    denied(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": {"app": "db"}}),
    );
    denied(
        &grantee,
        &socket,
        "GenerateDataKey",
        json!({"KeyId": key, "KeySpec": "AES_256", "EncryptionContext": web}),
    );
    denied(
        &stranger,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": web}),
    );
    match call(
        &grantee,
        &socket,
        "Encrypt",
        &json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": web, "GrantTokens": ["bogus"]}),
    ) {
        Err((exception, _)) => assert_eq!(exception, "InvalidGrantTokenException"),
        other => panic!("{other:?}"),
    }
    // Only the key's administrators list grants; only the retiring principal lists its own.
    let listed = ok(&root, "ListGrants", json!({"KeyId": key})).await;
    assert_eq!(listed["Grants"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed["Grants"][0]["Constraints"]["EncryptionContextSubset"],
        web
    );
    denied(&grantee, &socket, "ListGrants", json!({"KeyId": key}));
    let retirable = allowed(
        &retirer,
        &socket,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": "uid:5002"}),
    );
    assert_eq!(retirable["Grants"][0]["GrantId"], grant_id.as_str());
    denied(
        &stranger,
        &socket,
        "ListRetirableGrants",
        json!({"RetiringPrincipal": "uid:5002"}),
    );

    // A grant that allows CreateGrant passes on only what it holds.
    let delegating = ok(&root, "CreateGrant", json!({
        "KeyId": key, "GranteePrincipal": "gid:6000", "Operations": ["CreateGrant", "Decrypt", "RetireGrant"]})).await;
    let member = As {
        groups: vec![6000],
        ..user(5004)
    };
    let sub = allowed(
        &member,
        &socket,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:5003", "Operations": ["Decrypt"]}),
    );
    denied(
        &member,
        &socket,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:5003", "Operations": ["Encrypt"]}),
    );
    // The grantee of a grant with RetireGrant retires it by token.
    allowed(
        &member,
        &socket,
        "RetireGrant",
        json!({"GrantToken": delegating["GrantToken"]}),
    );
    denied(
        &member,
        &socket,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:5003", "Operations": ["Decrypt"]}),
    );

    // Grants survive a restart.
    fx.restart();
    let socket = fx.kmsd.socket.clone();
    let root = fx.client();
    allowed(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": web}),
    );

    // Retire: not by a stranger; by the retiring principal.
    denied(
        &stranger,
        &socket,
        "RetireGrant",
        json!({"KeyId": key, "GrantId": grant_id}),
    );
    allowed(
        &retirer,
        &socket,
        "RetireGrant",
        json!({"KeyId": key, "GrantId": grant_id}),
    );
    denied(
        &grantee,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": web}),
    );
    match call(
        &grantee,
        &socket,
        "Encrypt",
        &json!({"KeyId": key, "Plaintext": b64(b"g"), "EncryptionContext": web, "GrantTokens": [token]}),
    ) {
        Err((exception, _)) => assert_eq!(exception, "InvalidGrantTokenException"),
        other => panic!("{other:?}"),
    }
    // Revoke: needs kms:RevokeGrant on the key.
    denied(
        &stranger,
        &socket,
        "RevokeGrant",
        json!({"KeyId": key, "GrantId": sub["GrantId"]}),
    );
    ok(
        &root,
        "RevokeGrant",
        json!({"KeyId": key, "GrantId": sub["GrantId"]}),
    )
    .await;
    fails(
        &root,
        "RevokeGrant",
        json!({"KeyId": key, "GrantId": sub["GrantId"]}),
        "InvalidGrantIdException",
    )
    .await;
    let listed = ok(&root, "ListGrants", json!({"KeyId": key})).await;
    assert!(listed["Grants"].as_array().unwrap().is_empty(), "{listed}");
    // Bad requests name the field.
    let message = fails(
        &root,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "alice", "Operations": ["Decrypt"]}),
        "ValidationException",
    )
    .await;
    assert!(
        message.contains("'granteePrincipal'") && message.contains("'alice'"),
        "{message}"
    );
    let message = fails(
        &root,
        "CreateGrant",
        json!({"KeyId": key, "GranteePrincipal": "uid:1", "Operations": ["Sign"]}),
        "ValidationException",
    )
    .await;
    assert!(message.contains("Sign"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exe_and_unit_principals() {
    if !is_root() {
        return;
    }
    let fx = Fixture::start();
    let root = fx.client();
    let socket = fx.kmsd.socket.clone();
    let (_dir, app_exe) = exe_copy("app-client");
    // The unit the test (and so its children) runs in, if any: kmsd must agree.
    let our_unit = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| kmsd::identity::unit_from_cgroup(&text));
    let unit_name = our_unit
        .clone()
        .unwrap_or_else(|| "kmsd-test-absent.service".into());
    let key = create_with_policy(&root, &json!({"Version": "2012-10-17", "Statement": [
        root_admin(),
        {"Sid": "App", "Effect": "Allow", "Principal": {"Unix": {"Exe": [app_exe.to_str().unwrap()]}},
         "Action": "kms:Encrypt", "Resource": "*"},
        {"Sid": "Unit", "Effect": "Allow", "Principal": {"Unix": {"Unit": [unit_name]}},
         "Action": "kms:DescribeKey", "Resource": "*"},
        {"Sid": "AnyUnit", "Effect": "Allow", "Principal": "*", "Action": "kms:ListResourceTags",
         "Resource": "*", "Condition": {"StringLike": {"kmsd:CallerUnit": "*"}}},
        {"Sid": "NotFromTmp", "Effect": "Deny", "Principal": "*", "Action": "kms:GetKeyRotationStatus",
         "Resource": "*", "Condition": {"StringLike": {"kmsd:CallerExe": "/tmp/*"}}},
        {"Sid": "Rotation", "Effect": "Allow", "Principal": {"Unix": {"Uid": [5001]}},
         "Action": "kms:GetKeyRotationStatus", "Resource": "*"}]})).await;
    let from_copy = As {
        exe: app_exe.clone(),
        ..user(5001)
    };
    let plain = user(5001);
    allowed(
        &from_copy,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    );
    denied(
        &plain,
        &socket,
        "Encrypt",
        json!({"KeyId": key, "Plaintext": b64(b"x")}),
    );
    // The Deny on executables under /tmp applies to the copy, not to /usr/bin/python3.
    allowed(
        &plain,
        &socket,
        "GetKeyRotationStatus",
        json!({"KeyId": key}),
    );
    if app_exe.starts_with("/tmp") {
        denied(
            &from_copy,
            &socket,
            "GetKeyRotationStatus",
            json!({"KeyId": key}),
        );
    }
    // Unit: allowed when the test runs in a unit; without one the fact is absent, and
    // both the Unit principal and the kmsd:CallerUnit condition fail closed.
    let describe = call(&plain, &socket, "DescribeKey", &json!({"KeyId": key}));
    let tags = call(&plain, &socket, "ListResourceTags", &json!({"KeyId": key}));
    match our_unit {
        Some(_) => {
            assert!(describe.is_ok(), "{describe:?}");
            assert!(tags.is_ok(), "{tags:?}");
        }
        None => {
            assert_eq!(describe.unwrap_err().0, "AccessDeniedException");
            assert_eq!(tags.unwrap_err().0, "AccessDeniedException");
        }
    }
}

/// The connector exits before kmsd looks at it (kmsd is stopped while the client connects,
/// sends and hands the socket to a newcomer process at another executable path, then
/// exits). kmsd must not attribute anyone's executable to the connection: an Exe principal
/// then fails closed, both for the connector's executable and for the newcomer's.
#[tokio::test(flavor = "multi_thread")]
async fn connector_that_exits_before_inspection_gets_no_exe() {
    if !is_root() {
        return;
    }
    let fx = Fixture::start();
    let root = fx.client();
    let socket = fx.kmsd.socket.clone();
    let (_dir1, connector_exe) = exe_copy("connector");
    let (_dir2, newcomer_exe) = exe_copy("newcomer");
    let key = create_with_policy(&root, &json!({"Version": "2012-10-17", "Statement": [
        root_admin(),
        {"Effect": "Allow", "Principal": {"Unix": {"Exe": [connector_exe.to_str().unwrap(), newcomer_exe.to_str().unwrap()]}},
         "Action": "kms:Encrypt", "Resource": "*"}]})).await;
    let body = json!({"KeyId": key, "Plaintext": b64(b"x")});
    // Control: a connector that stays alive is recognised by its executable.
    let live = As {
        exe: connector_exe.clone(),
        ..user(5001)
    };
    allowed(&live, &socket, "Encrypt", body.clone());

    const HANDOFF_PY: &str = r#"
import os, socket, sys
path, newcomer, body = sys.argv[1], sys.argv[2], sys.argv[3].encode()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.sendall(("POST / HTTP/1.1\r\nHost: kmsd\r\nX-Amz-Target: TrentService.Encrypt\r\n"
           "Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n"
           "Connection: close\r\n\r\n" % len(body)).encode() + body)
fd = s.detach()
os.set_inheritable(fd, True)
if os.fork() == 0:
    reader = ("import os, sys\nfd = int(sys.argv[1])\ndata = b''\nwhile True:\n"
              "    chunk = os.read(fd, 65536)\n    if not chunk:\n        break\n    data += chunk\n"
              "sys.stdout.buffer.write(data.split(b'\\r\\n\\r\\n', 1)[1])\n")
    os.execv(newcomer, [newcomer, "-c", reader, str(fd)])
os._exit(0)
"#;
    let kmsd_pid = nix::unistd::Pid::from_raw(fx.kmsd.pid() as i32);
    nix::sys::signal::kill(kmsd_pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let out_path = fx.dir.root.path().join("handoff.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let connector = As {
        exe: connector_exe.clone(),
        ..user(5001)
    };
    let status = setpriv(&connector)
        .arg("-c")
        .arg(HANDOFF_PY)
        .arg(&socket)
        .arg(&newcomer_exe)
        .arg(body.to_string())
        .stdout(out)
        .stderr(Stdio::inherit())
        .status();
    // The connector has exited; only now may kmsd accept and inspect the connection.
    nix::sys::signal::kill(kmsd_pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert!(status.unwrap().success());
    let answer: Value = poll("the newcomer's answer", Duration::from_secs(30), || {
        let text = std::fs::read(&out_path).ok()?;
        serde_json::from_slice(&text).ok()
    });
    assert_eq!(answer["__type"], "AccessDeniedException", "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("5001"),
        "{answer}"
    );
}

/// The kmsctl commands of the README ("Access control"), run as written there (with the doc's example
/// file and a real key id).
#[tokio::test(flavor = "multi_thread")]
async fn kmsctl_policy_commands_from_the_docs() {
    let fx = Fixture::start();
    let root = fx.client();
    let key = create_key(&root).await;
    let doc = include_str!("../README.md");
    let example = doc
        .split("```json")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("WebServerDecryptOnly"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.json");
    std::fs::write(&file, example).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(KMSCTL)
            .env("KMSD_SOCKET", &fx.kmsd.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let policy_arg = format!("file://{}", file.display());
    run(&["put-key-policy", "--key-id", &key, "--policy", &policy_arg]);
    let got: Value = serde_json::from_str(&run(&["get-key-policy", "--key-id", &key])).unwrap();
    assert_eq!(got["Policy"].as_str().unwrap(), example);
    let grant: Value = serde_json::from_str(&run(&[
        "create-grant",
        "--key-id",
        &key,
        "--grantee-principal",
        "user:www-data",
        "--operations",
        "Decrypt",
        "--constraints",
        r#"{"EncryptionContextSubset":{"app":"web"}}"#,
    ]))
    .unwrap();
    let listed: Value = serde_json::from_str(&run(&["list-grants", "--key-id", &key])).unwrap();
    assert_eq!(listed["Grants"][0]["GrantId"], grant["GrantId"]);
    run(&[
        "revoke-grant",
        "--key-id",
        &key,
        "--grant-id",
        grant["GrantId"].as_str().unwrap(),
    ]);
}
