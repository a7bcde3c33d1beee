//! `GET /ping`, the health endpoint (and the benchmarks' transport ceiling): 200 "ok" on a
//! kept-alive connection that then still serves KMS operations; other methods get 405.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

fn ping_request(method: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("/ping")
        .header("host", "kmsd")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_answers_ok_and_the_connection_keeps_serving() {
    let fx = Fixture::start();
    let client = fx.client();
    for _ in 0..3 {
        let response = client.send(ping_request("GET")).await.expect("ping");
        assert_eq!(response.status.as_u16(), 200);
        assert_eq!(&response.body[..], b"ok\n");
    }
    let response = client.send(ping_request("POST")).await.expect("post ping");
    assert_eq!(response.status.as_u16(), 405);
    // The same connection still serves operations.
    let key = create_key(&client).await;
    ok(&client, "DescribeKey", json!({"KeyId": key})).await;
    let response = client.send(ping_request("GET")).await.expect("ping");
    assert_eq!(response.status.as_u16(), 200);
}
