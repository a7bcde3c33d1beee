//! What the loopback TCP endpoint refuses before a request reaches the pipeline: what a web
//! browser could send, and names a DNS-rebinding page would use.
//!
//! A page open in a user's browser can reach `127.0.0.1` with that user's uid, and the
//! kernel would prove the browser's uid as the caller. A browser sends without a CORS
//! preflight only "simple" requests: GET, HEAD or POST with a few headers and a
//! form-like content type. So the endpoint:
//! - refuses `OPTIONS` (a preflight) and any request carrying `Origin` or a `Sec-Fetch-*`
//!   header (browsers add them; SDKs never do) with 403 and no CORS headers, so no
//!   preflight ever succeeds;
//! - accepts only a `Host` that names the listener: its own `IP:port`, or `localhost:port`
//!   (a DNS-rebinding page reaches the listener under its own domain name, and says so in
//!   `Host`);
//! - requires, on every operation, `X-Amz-Target`, the AWS JSON 1.1 content type and an
//!   `Authorization` header of the SigV4 shape, none of which a simple request can carry.
//!
//! `GET /ping` needs only the `Host` and browser checks. `/metrics` is not served here (it has
//! its own listener, `metrics_listen`).

use super::protocol::{self, ApiError, Exception};
use super::sigv4::SigV4Header;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method};
use std::net::SocketAddr;

/// The checks of one loopback listener.
#[derive(Debug, Clone)]
pub struct LoopbackGuard {
    /// `Host` values that name the listener, lowercase.
    hosts: Vec<String>,
}

/// Why the guard refused, as the `reason` label of `kmsd_tcp_refused_total`.
pub fn refusal_reason(exception: Exception) -> &'static str {
    match exception {
        Exception::Forbidden => "browser",
        Exception::MissingAuthenticationToken
        | Exception::IncompleteSignature
        | Exception::RequestSignature
        | Exception::UnrecognizedClient
        | Exception::Throttling => "signature",
        _ => "not_aws_request",
    }
}

/// What kind of request the guard let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// `GET /ping` (or `HEAD`).
    Ping,
    /// An operation, with its parsed SigV4 header: it goes on to the pipeline.
    Operation(Box<SigV4Header>),
}

impl LoopbackGuard {
    /// The guard of the listener bound to `local`.
    pub fn new(local: SocketAddr) -> Self {
        let port = local.port();
        let ip = match local {
            SocketAddr::V4(v4) => v4.ip().to_string(),
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
        };
        let mut hosts = vec![format!("{ip}:{port}"), format!("localhost:{port}")];
        if port == 80 {
            hosts.push(ip);
            hosts.push("localhost".into());
        }
        LoopbackGuard { hosts }
    }

    /// The `Host` values this listener accepts.
    pub fn accepted_hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Checks one request head; `Err` is the answer to send instead of running it.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, ApiError> {
        self.check_host(headers)?;
        self.check_request(method, path, headers)
    }

    /// The DNS-rebinding check: `Host` names this listener.
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let hosts = headers.get_all(HOST).iter().collect::<Vec<_>>();
        let host = match hosts.as_slice() {
            [one] => one.to_str().ok().map(str::to_ascii_lowercase),
            _ => None,
        };
        if !host.as_ref().is_some_and(|host| self.hosts.contains(host)) {
            return Err(ApiError::new(
                Exception::Forbidden,
                format!(
                    "the Host header must name this listener ({}); got {}",
                    self.hosts.join(" or "),
                    match hosts.as_slice() {
                        [] => "none".to_string(),
                        [one] => format!("{:?}", bounded(one.to_str().unwrap_or("(not text)"))),
                        many => format!("{} Host headers", many.len()),
                    }
                ),
            ));
        }
        Ok(())
    }

    /// The browser checks and the shape of an AWS request (after [`Self::check_host`]).
    pub fn check_request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, ApiError> {
        let forbidden = |message: String| Err(ApiError::new(Exception::Forbidden, message));
        if method == Method::OPTIONS {
            return forbidden("OPTIONS is not served: kmsd answers no CORS preflight".into());
        }
        if headers.contains_key("origin") {
            return forbidden(
                "requests with an Origin header are refused: browsers may not call kmsd".into(),
            );
        }
        if let Some(name) = headers
            .keys()
            .find(|name| name.as_str().starts_with("sec-fetch-"))
        {
            return forbidden(format!(
                "requests with a {name} header are refused: browsers may not call kmsd"
            ));
        }
        if path == super::transport::PING_PATH {
            return Ok(Admitted::Ping);
        }
        if path == "/metrics" {
            return Err(ApiError::new(
                Exception::NotFound,
                "/metrics is not served on the TCP endpoint; use metrics_listen",
            ));
        }
        if method != Method::POST {
            return Err(ApiError::new(
                Exception::MethodNotAllowed,
                format!(
                    "{method} {} is not an operation; send POST / with X-Amz-Target: TrentService.<Operation>",
                    bounded(path)
                ),
            ));
        }
        if !headers.contains_key("x-amz-target") {
            return Err(ApiError::new(
                Exception::UnknownOperation,
                "the X-Amz-Target header is missing; send X-Amz-Target: TrentService.<Operation>",
            ));
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if content_type.as_deref() != Some(protocol::JSON_11) {
            return Err(ApiError::new(
                Exception::Serialization,
                format!(
                    "Content-Type must be {} on the TCP endpoint; got {}",
                    protocol::JSON_11,
                    content_type.map_or("none".to_string(), |t| format!("{:?}", bounded(&t)))
                ),
            ));
        }
        let pairs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        SigV4Header::from_headers(&pairs)
            .map(|header| Admitted::Operation(Box::new(header)))
            .map_err(|err| protocol::sigv4_refusal(&err))
    }
}

/// At most 64 characters of a client-supplied value, for messages.
fn bounded(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=kmsd/20261201/eu-west-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn sdk_request(extra: &[(&'static str, &str)], drop: &str) -> HeaderMap {
        let mut pairs = vec![
            ("host", "127.0.0.1:8091"),
            ("x-amz-target", "TrentService.Encrypt"),
            ("content-type", "application/x-amz-json-1.1"),
            ("authorization", AUTH),
            ("x-amz-date", "20261201T000000Z"),
        ];
        pairs.retain(|(name, _)| *name != drop);
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    /// What, method, path, headers, expected outcome.
    type Case = (
        &'static str,
        Method,
        &'static str,
        HeaderMap,
        Result<&'static str, Exception>,
    );

    #[test]
    fn refuses_what_a_browser_sends() {
        let guard = LoopbackGuard::new("127.0.0.1:8091".parse().unwrap());
        let cases: Vec<Case> = vec![
            ("an SDK request", Method::POST, "/", sdk_request(&[], ""), Ok("op")),
            ("localhost", Method::POST, "/", sdk_request(&[("host", "LOCALHOST:8091")], "host"), Ok("op")),
            ("content type with charset", Method::POST, "/", sdk_request(&[("content-type", "application/x-amz-json-1.1; charset=utf-8")], "content-type"), Ok("op")),
            ("ping", Method::GET, "/ping", headers(&[("host", "127.0.0.1:8091")]), Ok("ping")),
            ("rebinding name", Method::POST, "/", sdk_request(&[("host", "evil.example:8091")], "host"), Err(Exception::Forbidden)),
            ("other port", Method::POST, "/", sdk_request(&[("host", "127.0.0.1:8092")], "host"), Err(Exception::Forbidden)),
            ("no host", Method::POST, "/", sdk_request(&[], "host"), Err(Exception::Forbidden)),
            ("two hosts", Method::POST, "/", sdk_request(&[("host", "127.0.0.1:8091")], ""), Err(Exception::Forbidden)),
            ("ping under a rebinding name", Method::GET, "/ping", headers(&[("host", "evil.example:8091")]), Err(Exception::Forbidden)),
            ("preflight", Method::OPTIONS, "/", sdk_request(&[("origin", "http://evil.example")], ""), Err(Exception::Forbidden)),
            ("bare OPTIONS", Method::OPTIONS, "/", headers(&[("host", "127.0.0.1:8091")]), Err(Exception::Forbidden)),
            ("Origin", Method::POST, "/", sdk_request(&[("origin", "null")], ""), Err(Exception::Forbidden)),
            ("Origin on ping", Method::GET, "/ping", headers(&[("host", "127.0.0.1:8091"), ("origin", "http://x")]), Err(Exception::Forbidden)),
            ("fetch metadata", Method::POST, "/", sdk_request(&[("sec-fetch-mode", "no-cors")], ""), Err(Exception::Forbidden)),
            ("form post", Method::POST, "/", headers(&[("host", "127.0.0.1:8091"), ("content-type", "text/plain")]), Err(Exception::UnknownOperation)),
            ("no target", Method::POST, "/", sdk_request(&[], "x-amz-target"), Err(Exception::UnknownOperation)),
            ("text/plain", Method::POST, "/", sdk_request(&[("content-type", "text/plain")], "content-type"), Err(Exception::Serialization)),
            ("no content type", Method::POST, "/", sdk_request(&[], "content-type"), Err(Exception::Serialization)),
            ("no authorization", Method::POST, "/", sdk_request(&[], "authorization"), Err(Exception::MissingAuthenticationToken)),
            ("basic auth", Method::POST, "/", sdk_request(&[("authorization", "Basic a21zZDprbXNk")], "authorization"), Err(Exception::IncompleteSignature)),
            ("short signature", Method::POST, "/", sdk_request(&[("authorization", "AWS4-HMAC-SHA256 Credential=a/b/c/kms/aws4_request, SignedHeaders=host, Signature=00")], "authorization"), Err(Exception::IncompleteSignature)),
            ("GET an operation", Method::GET, "/", sdk_request(&[], ""), Err(Exception::MethodNotAllowed)),
            ("metrics", Method::GET, "/metrics", headers(&[("host", "127.0.0.1:8091")]), Err(Exception::NotFound)),
        ];
        for (what, method, path, headers, expected) in cases {
            let got = guard
                .check(&method, path, &headers)
                .map(|admitted| match admitted {
                    Admitted::Ping => "ping",
                    Admitted::Operation(_) => "op",
                })
                .map_err(|e| e.exception);
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn ipv6_listener_names_itself_in_brackets() {
        let guard = LoopbackGuard::new("[::1]:8091".parse().unwrap());
        assert_eq!(guard.accepted_hosts(), ["[::1]:8091", "localhost:8091"]);
        let guard = LoopbackGuard::new("127.0.0.1:80".parse().unwrap());
        assert!(guard.accepted_hosts().iter().any(|h| h == "127.0.0.1"));
    }

    #[test]
    fn forbidden_answers_are_403() {
        let guard = LoopbackGuard::new("127.0.0.1:8091".parse().unwrap());
        let err = guard
            .check(
                &Method::OPTIONS,
                "/",
                &headers(&[("host", "127.0.0.1:8091")]),
            )
            .unwrap_err();
        assert_eq!(err.exception.status(), hyper::StatusCode::FORBIDDEN);
        assert_eq!(err.exception.name(), "AccessDeniedException");
    }
}
