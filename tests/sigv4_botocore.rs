#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Requests signed by a real AWS SDK (botocore, the Python SDK's core) verify with
//! `kmsd::server::sigv4`, and changed ones do not. botocore sends real KMS calls to a TCP
//! listener in this test, which records each request as it arrived on the wire and answers
//! `{}`. Skipped (with a note) when python3 or botocore is not installed.

use kmsd::config::sigv4::{SecretAccessKey, SigV4Key, SigV4Keys};
use kmsd::server::sigv4::{
    parse_authorization, verify, RequestParts, SigV4Error, SigV4Header, SigV4Policy,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCESS_KEY_ID: &str = "AKIDKMSDTEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const DEADLINE: Duration = Duration::from_secs(60);

/// Three KMS calls through a botocore client pointed at the test's listener.
const SCRIPT: &str = r#"
import sys
import botocore.session
from botocore.config import Config
session = botocore.session.get_session()
client = session.create_client(
    "kms",
    region_name="eu-west-1",
    endpoint_url="http://127.0.0.1:" + sys.argv[1],
    aws_access_key_id=sys.argv[2],
    aws_secret_access_key=sys.argv[3],
    config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=10),
)
client.encrypt(KeyId="alias/test", Plaintext=b"hello world", EncryptionContext={"purpose": "test"})
client.generate_random(NumberOfBytes=32)
client.list_keys(Limit=10)
"#;

/// A request as received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Received {
    fn with<R>(&self, f: impl FnOnce(&RequestParts<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        f(&RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
            body: &self.body,
        })
    }

    fn header(&self, name: &str) -> &[u8] {
        &self
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap()
            .1
    }

    fn authorization(&self) -> SigV4Header {
        parse_authorization(std::str::from_utf8(self.header("authorization")).unwrap()).unwrap()
    }

    /// X-Amz-Date in milliseconds since the epoch.
    fn signed_at(&self) -> i64 {
        let text = std::str::from_utf8(self.header("x-amz-date"))
            .unwrap()
            .trim();
        let format =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        time::PrimitiveDateTime::parse(text, &format)
            .unwrap()
            .assume_utc()
            .unix_timestamp()
            * 1000
    }

    fn set(&mut self, name: &str, value: &[u8]) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_vec()));
    }
}

/// Reads one HTTP/1.1 request; `None` at end of stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap() == 0 {
        return None;
    }
    let mut parts = line.trim_end().split(' ');
    let method = parts.next().unwrap().to_string();
    let target = parts.next().unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let mut raw = Vec::new();
        reader.read_until(b'\n', &mut raw).unwrap();
        let raw = raw.strip_suffix(b"\r\n").unwrap();
        if raw.is_empty() {
            break;
        }
        let colon = raw.iter().position(|b| *b == b':').unwrap();
        let name = String::from_utf8(raw[..colon].to_vec()).unwrap();
        // The value as on the wire, leading space included (the verifier trims).
        headers.push((name, raw[colon + 1..].to_vec()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| std::str::from_utf8(v).unwrap().trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Some(Received {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    })
}

fn has_botocore() -> bool {
    Command::new("python3")
        .args(["-c", "import botocore"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Kills and reaps the child when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the script against a listener and returns the requests botocore sent.
fn botocore_requests() -> Vec<Received> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let child = Command::new("python3")
        .args(["-c", SCRIPT, &port, ACCESS_KEY_ID, SECRET])
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let deadline = Instant::now() + DEADLINE;
    let mut requests = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "botocore did not finish in time");
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(request) = read_request(&mut reader) {
                    requests.push(request);
                    writer
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n\
                              x-amzn-RequestId: test\r\nContent-Length: 2\r\n\r\n{}",
                        )
                        .unwrap();
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = child.0.try_wait().unwrap() {
                    let mut stderr = String::new();
                    child
                        .0
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut stderr)
                        .unwrap();
                    assert!(status.success(), "botocore failed: {stderr}");
                    return requests;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(err) => panic!("accept: {err}"),
        }
    }
}

fn secret() -> SecretAccessKey {
    SecretAccessKey::new(SECRET.into())
}

fn policy() -> SigV4Policy {
    SigV4Policy::new(SigV4Keys {
        verify_all: false,
        keys: vec![SigV4Key {
            access_key_id: ACCESS_KEY_ID.into(),
            uid: 1000,
            secret: secret(),
        }],
    })
}

#[test]
fn botocore_signed_requests_verify() {
    if !has_botocore() {
        eprintln!("skipped: python3 with botocore is not installed");
        return;
    }
    let requests = botocore_requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for request in &requests {
        let header = request.authorization();
        assert_eq!(header.credential.access_key_id, ACCESS_KEY_ID);
        assert_eq!(header.credential.region, "eu-west-1");
        assert_eq!(header.credential.service, "kms");
        let at = request.signed_at();
        // Against the request's own date, and against the clock now.
        assert_eq!(request.with(|r| verify(r, &header, &secret(), at)), Ok(()));
        assert_eq!(request.with(|r| verify(r, &header, &secret(), now)), Ok(()));
        let policy = policy();
        assert_eq!(
            request.with(|r| policy.authenticate(&header, r, at, None)),
            Ok(Some(1000))
        );
        // The same request again is a replay.
        assert!(matches!(
            request.with(|r| policy.authenticate(&header, r, at, None)),
            Err(SigV4Error::Replayed { .. })
        ));
    }

    // The Encrypt request, changed in each way a forger might.
    let encrypt = requests
        .iter()
        .find(|r| r.header("x-amz-target").ends_with(b"TrentService.Encrypt"))
        .unwrap();
    let header = encrypt.authorization();
    assert!(header.signed_headers.iter().any(|h| h == "x-amz-target"));
    assert!(!header.signed_headers.iter().any(|h| h == "user-agent"));
    let at = encrypt.signed_at();
    type Change = fn(&mut Received);
    let cases: [(&str, Change, i64, Option<&str>); 8] = [
        ("unchanged", |_| {}, 0, None),
        (
            "an unsigned header added",
            |r| r.set("X-Forwarded-For", b"10.0.0.1"),
            0,
            None,
        ),
        (
            "the unsigned User-Agent changed",
            |r| r.set("User-Agent", b"curl/8"),
            0,
            None,
        ),
        (
            "the body changed",
            |r| {
                let text = String::from_utf8(r.body.clone()).unwrap();
                r.body = text.replace("alias/test", "alias/prod").into_bytes();
            },
            0,
            Some("signature does not match"),
        ),
        (
            "a signed header changed",
            |r| r.set("X-Amz-Target", b"TrentService.Decrypt"),
            0,
            Some("signature does not match"),
        ),
        (
            "the path changed",
            |r| r.path = "/other".into(),
            0,
            Some("signature does not match"),
        ),
        (
            "6 minutes later",
            |_| {},
            360_000,
            Some("from kmsd's clock"),
        ),
        (
            "6 minutes earlier",
            |_| {},
            -360_000,
            Some("from kmsd's clock"),
        ),
    ];
    for (name, change, shift, expected) in cases {
        let mut request = encrypt.clone();
        change(&mut request);
        let got = request.with(|r| verify(r, &header, &secret(), at + shift));
        match (got, expected) {
            (Ok(()), None) => {}
            (Err(err), Some(needle)) => assert!(err.to_string().contains(needle), "{name}: {err}"),
            (got, _) => panic!("{name}: {got:?}"),
        }
    }
    let wrong = SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ".into());
    assert!(matches!(
        encrypt.with(|r| verify(r, &header, &wrong, at)),
        Err(SigV4Error::SignatureMismatch { .. })
    ));

    // Another uid's connection may not use the key; an unknown key id on a connection whose
    // uid the kernel saw is accepted on its shape alone.
    assert!(matches!(
        encrypt.with(|r| policy().authenticate(&header, r, at, Some(1001))),
        Err(SigV4Error::OtherUsersKey { .. })
    ));
    let shape_only = SigV4Policy::default();
    assert_eq!(
        encrypt.with(|r| shape_only.authenticate(&header, r, at, Some(1001))),
        Ok(None)
    );
    assert!(matches!(
        encrypt.with(|r| shape_only.authenticate(&header, r, at, None)),
        Err(SigV4Error::UnknownAccessKey { .. })
    ));

    // The same request signed with SigV4a is refused on its shape.
    let value = String::from_utf8(encrypt.header("authorization").to_vec()).unwrap();
    let sigv4a = value
        .trim()
        .replacen("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1);
    let err = parse_authorization(&sigv4a).unwrap_err().to_string();
    assert!(err.contains("SigV4a"), "{err}");
}
