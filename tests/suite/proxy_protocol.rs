//! PROXY protocol end to end: v1 and v2 over HTTP and HTTPS, the client
//! address from the header seen by the allowlist and the backend, and a
//! connection without a header closed.

use crate::support;

use std::net::SocketAddr;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn site() -> Site {
    let allow = [(
        "nginx.ingress.kubernetes.io/allowlist-source-range",
        "198.51.100.0/24, 2001:db8::/32",
    )];
    let site = Site::one_route("office", "office.test", &allow).await;
    site.translate(|t| t.edge.proxy_protocol = true)
        .start()
        .await
}

/// A v2 header from `client` to `server` (both of one address family).
fn v2_header(client: &str, server: &str) -> Vec<u8> {
    use ppp::v2::{Builder, Command, Protocol, Version};
    let addr = |a: &str| a.parse::<SocketAddr>().expect("address");
    let addresses: ppp::v2::Addresses = (addr(client), addr(server)).into();
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
        .build()
        .expect("v2 header")
}

/// Sends `preface` then one request on plain HTTP; returns status and body.
async fn plain(addr: SocketAddr, preface: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(preface).await.expect("preface");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: office.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn v1_over_http_names_the_client_for_the_allowlist_and_the_backend() {
    let site = site().await;
    let addr = site.gatehouse.http_addr;
    let (status, text) = plain(addr, b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"x-real-ip\":\"198.51.100.7\""), "{text}");
    assert!(
        text.contains("\"x-forwarded-for\":\"198.51.100.7\""),
        "{text}"
    );
    let (status, _) = plain(addr, b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 80\r\n").await;
    assert_eq!(status, 403, "the header's address is outside the allowlist");
    // v2 on the same listener.
    let (status, text) = plain(addr, &v2_header("[2001:db8::5]:4000", "[2001:db8::1]:80")).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"x-real-ip\":\"2001:db8::5\""), "{text}");
}

#[tokio::test]
async fn a_connection_without_a_header_is_closed_and_counted() {
    let site = site().await;
    let (status, text) = plain(site.gatehouse.http_addr, b"").await;
    assert_eq!(status, 0, "no answer: {text}");
    let metrics = http_get(site.gatehouse.metrics_addr, "localhost", "/metrics").await;
    let body = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        body.lines()
            .any(|l| l.starts_with("gatehouse_proxy_protocol_rejected_total 1")),
        "{body}"
    );
}

#[tokio::test]
async fn v1_or_v2_then_tls_over_https() {
    let site = site().await;
    let headers = [
        (
            b"PROXY TCP4 198.51.100.21 10.0.0.1 4000 443\r\n".to_vec(),
            "198.51.100.21",
        ),
        (
            v2_header("198.51.100.20:4000", "10.0.0.1:443"),
            "198.51.100.20",
        ),
    ];
    for (header, client) in headers {
        let mut tcp = TcpStream::connect(site.gatehouse.https_addr)
            .await
            .expect("connect");
        tcp.write_all(&header).await.expect("header");
        let config = tls_config(None, &[b"http/1.1"]);
        let name = rustls::pki_types::ServerName::try_from("office.test").expect("name");
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .expect("TLS after the PROXY header");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let reply = send(&mut sender, "office.test", "/")
            .await
            .expect("request");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.seen()["headers"]["x-real-ip"], client);
    }
}
