//! WebSockets over HTTP/2 (RFC 8441): Gatehouse advertises
//! `SETTINGS_ENABLE_CONNECT_PROTOCOL`, and an extended CONNECT with
//! `:protocol websocket` reaches an HTTP/1.1 WebSocket endpoint as a proper
//! handshake (`GET`, `Upgrade: websocket`, a key of Gatehouse's own); the
//! endpoint's `101` becomes the client's `200`, and frames then pass both
//! ways. Routing and access control apply as to an HTTP/1.1 upgrade; other
//! protocols are refused.

use crate::support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use sha1::Digest as _;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Every test's bound on a step that should be immediate.
const LIMIT: Duration = Duration::from_secs(10);

/// The heads of the handshakes a WebSocket endpoint received.
type Heads = Arc<Mutex<Vec<String>>>;

/// An HTTP/1.1 WebSocket endpoint: checks the handshake as RFC 6455 asks
/// a server to, answers `101` with the accept for the key, the first
/// subprotocol offered and the extensions offered, then echoes each
/// (masked) client frame back as an unmasked server frame. `/refuse`
/// answers 403; `/wrong-accept` answers `101` with an accept for another
/// key; `/ok` answers a plain 200.
async fn websocket_endpoint() -> (SocketAddr, Heads, tokio::task::JoinHandle<()>) {
    let heads = Heads::default();
    let log = heads.clone();
    let (addr, task) = raw_endpoint(move |head, mut stream| {
        let log = log.clone();
        async move {
            let head = String::from_utf8_lossy(&head).into_owned();
            log.lock().unwrap().push(head.clone());
            let header = |name: &str| {
                head.lines().find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            let answer = if head.starts_with("GET /refuse ") {
                "HTTP/1.1 403 Forbidden\r\nconnection: close\r\ncontent-length: 7\r\n\r\nrefused".to_owned()
            } else if head.starts_with("GET /ok ") {
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_owned()
            } else {
                let handshake = head.starts_with("GET ")
                    && header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
                    && header("connection").is_some_and(|v| v.to_lowercase().contains("upgrade"))
                    && header("sec-websocket-version").as_deref() == Some("13");
                let key = match header("sec-websocket-key") {
                    Some(key) if handshake => key,
                    _ => {
                        let bad = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
                        let _ = stream.write_all(bad.as_bytes()).await;
                        return;
                    }
                };
                let key = match head.starts_with("GET /wrong-accept ") {
                    true => "dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
                    false => key,
                };
                let mut answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                     connection: Upgrade\r\nsec-websocket-accept: {}\r\n",
                    accept_for(&key)
                );
                if let Some(offered) = header("sec-websocket-protocol") {
                    let first = offered.split(',').next().unwrap_or_default().trim();
                    answer.push_str(&format!("sec-websocket-protocol: {first}\r\n"));
                }
                if let Some(extensions) = header("sec-websocket-extensions") {
                    answer.push_str(&format!("sec-websocket-extensions: {extensions}\r\n"));
                }
                answer + "\r\n"
            };
            if stream.write_all(answer.as_bytes()).await.is_err() || !answer.contains(" 101 ") {
                return;
            }
            while let Ok(Some(payload)) = read_frame(&mut stream).await {
                let echoed = [b"echo: ".as_slice(), &payload].concat();
                if stream.write_all(&frame(&echoed, None)).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, heads, task)
}

fn accept_for(key: &str) -> String {
    let mut sha1 = sha1::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// A final text frame carrying `payload` (under 126 bytes), masked with
/// `mask` as a client's must be.
fn frame(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![0x81, payload.len() as u8];
    match mask {
        None => out.extend_from_slice(payload),
        Some(mask) => {
            out[1] |= 0x80;
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
    }
    out
}

/// Reads one short frame and returns its (unmasked) payload; `None` at
/// the end of the stream.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 2];
    if stream.read_exact(&mut head).await.is_err() {
        return Ok(None);
    }
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126, "a short frame");
    let mask = if head[1] & 0x80 != 0 {
        let mut mask = [0u8; 4];
        stream.read_exact(&mut mask).await?;
        Some(mask)
    } else {
        None
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    if let Some(mask) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Ok(Some(payload))
}

/// An `h2` client over TLS (ALPN `h2`) to `host`, once the server's
/// SETTINGS are known (a first request has been answered).
async fn h2_client<S>(io: S) -> SendRequest<Bytes>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut client, conn) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    // The server's SETTINGS come before any response: once one request is
    // answered, they have been read.
    let probe = Request::get("https://ws.test/ok").body(()).unwrap();
    let (response, _) = client.send_request(probe, true).expect("probe");
    tokio::time::timeout(LIMIT, response)
        .await
        .expect("probe answered in time")
        .expect("probe answered");
    client
}

async fn tls_h2(site: &Site) -> SendRequest<Bytes> {
    let config = tls_config(Some(&site.pki.ca), &[b"h2"]);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, "ws.test", config)
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2_client(tls).await
}

/// An extended CONNECT for `protocol` to `https://ws.test{path}` with
/// `headers`; returns the response and the stream to send frames on.
async fn connect(
    client: &mut SendRequest<Bytes>,
    protocol: &'static str,
    path: &str,
    headers: &[(&str, &str)],
) -> (http::Response<h2::RecvStream>, h2::SendStream<Bytes>) {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://ws.test{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut request = request.body(()).unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static(protocol));
    let ready = tokio::time::timeout(LIMIT, client.clone().ready())
        .await
        .expect("ready in time");
    *client = ready.expect("ready");
    let (response, send) = client.send_request(request, false).expect("send CONNECT");
    let response = tokio::time::timeout(LIMIT, response)
        .await
        .expect("CONNECT answered in time")
        .expect("CONNECT answered");
    (response, send)
}

async fn site_with(endpoint: SocketAddr, annotations: &[(&str, &str)]) -> Site {
    Site::builder()
        .endpoint("ws", endpoint)
        .certificate("ws.test", "ws-tls")
        .manifests(ingress_annotated(
            "ws",
            "ws.test",
            "/",
            "ws",
            Some("ws-tls"),
            annotations,
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_websocket_over_http2_reaches_an_http1_endpoint_and_echoes() {
    let (endpoint, heads, _task) = websocket_endpoint().await;
    let site = site_with(endpoint, &[]).await;
    let mut client = tls_h2(&site).await;
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised"
    );

    let offered = [
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat, superchat"),
        ("sec-websocket-extensions", "permessage-deflate"),
        ("origin", "https://ws.test"),
    ];
    let (response, mut send) = connect(&mut client, "websocket", "/chat?room=1", &offered).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    assert_eq!(headers["sec-websocket-extensions"], "permessage-deflate");
    assert!(!headers.contains_key("sec-websocket-accept"));
    assert!(!headers.contains_key("upgrade"));

    // What the endpoint got: an HTTP/1.1 WebSocket handshake.
    let head = heads.lock().unwrap().last().cloned().expect("a handshake");
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("GET /chat?room=1 HTTP/1.1\r\n"), "{head}");
    assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{head}");
    assert!(lower.contains("\r\nconnection: upgrade\r\n"), "{head}");
    assert!(lower.contains("\r\nhost: ws.test\r\n"), "{head}");
    assert!(lower.contains("\r\nsec-websocket-key: "), "{head}");
    assert!(lower.contains("\r\nsec-websocket-protocol: chat, superchat\r\n"));
    assert!(lower.contains("\r\nsec-websocket-extensions: permessage-deflate\r\n"));
    assert!(lower.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");

    // Frames both ways, several times, on the one stream.
    let mut body = response.into_body();
    let mut received = Vec::new();
    for (i, message) in ["hello", "over", "http/2"].iter().enumerate() {
        let mask = [1, 2, 3, i as u8];
        send.send_data(Bytes::from(frame(message.as_bytes(), Some(mask))), false)
            .expect("send frame");
        let expected = frame(format!("echo: {message}").as_bytes(), None);
        while received.len() < expected.len() {
            let chunk = tokio::time::timeout(LIMIT, body.data())
                .await
                .expect("echo in time")
                .expect("the tunnel stays open")
                .expect("data");
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        let rest = received.split_off(expected.len());
        assert_eq!(received, expected, "echo of {message}");
        received = rest;
    }
    // The client ends its side: the tunnel ends both.
    send.send_data(Bytes::new(), true).expect("end stream");
    let rest = tokio::time::timeout(LIMIT, async {
        let mut rest = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await
    .expect("the tunnel ends in time");
    assert!(rest.is_empty(), "nothing after the echoes: {rest:?}");
}

#[tokio::test]
async fn another_protocol_over_connect_is_not_implemented() {
    let (endpoint, heads, _task) = websocket_endpoint().await;
    let site = site_with(endpoint, &[]).await;
    let mut client = tls_h2(&site).await;
    let before = heads.lock().unwrap().len();
    let (response, _send) = connect(&mut client, "connect-udp", "/chat", &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(heads.lock().unwrap().len(), before, "nothing forwarded");
}

#[tokio::test]
async fn access_control_refuses_a_websocket_over_http2() {
    let (endpoint, heads, _task) = websocket_endpoint().await;
    let annotations = [(
        "nginx.ingress.kubernetes.io/whitelist-source-range",
        "10.0.0.0/8",
    )];
    let site = site_with(endpoint, &annotations).await;
    let config = tls_config(Some(&site.pki.ca), &[b"h2"]);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, "ws.test", config)
        .await
        .expect("TLS");
    // No probe through the closed route: the first CONNECT's answer is
    // what is checked (the SETTINGS precede it).
    let (mut client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (response, _send) = connect(&mut client, "websocket", "/chat", &[]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(heads.lock().unwrap().is_empty(), "nothing forwarded");
}

#[tokio::test]
async fn a_failed_endpoint_handshake_is_answered_with_its_status_or_502() {
    let (endpoint, _heads, _task) = websocket_endpoint().await;
    let site = site_with(endpoint, &[]).await;
    let mut client = tls_h2(&site).await;
    let (refused, _) = connect(&mut client, "websocket", "/refuse", &[]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let mut body = refused.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = tokio::time::timeout(LIMIT, body.data())
        .await
        .expect("body")
    {
        text.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(text, b"refused", "the endpoint's answer, body and all");

    let (wrong, _) = connect(&mut client, "websocket", "/wrong-accept", &[]).await;
    assert_eq!(wrong.status(), StatusCode::BAD_GATEWAY, "a wrong accept");
    let (plain, _) = connect(&mut client, "websocket", "/ok", &[]).await;
    assert_eq!(
        plain.status(),
        StatusCode::BAD_GATEWAY,
        "a 200 is no switch"
    );
}

#[tokio::test]
async fn h2c_advertises_extended_connect_and_http_1_1_upgrades_are_unchanged() {
    let (endpoint, _heads, _task) = websocket_endpoint().await;
    let site = site_with(
        endpoint,
        &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
    )
    .await;
    let addr = site.gatehouse.http_addr;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut client = h2_client(tcp).await;
    assert!(client.is_extended_connect_protocol_enabled());
    let (response, _send) = connect(&mut client, "websocket", "/chat", &[]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // HTTP/1.1: the client's own key and the endpoint's 101 pass as sent.
    let mut stream = open_upgrade(addr, "ws.test").await;
    let hello = frame(b"hi", Some([9, 8, 7, 6]));
    stream.write_all(&hello).await.expect("write");
    let echoed = tokio::time::timeout(LIMIT, read_frame(&mut stream))
        .await
        .expect("echo in time")
        .expect("read")
        .expect("a frame");
    assert_eq!(echoed, b"echo: hi");
}
