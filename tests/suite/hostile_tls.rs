//! TLS clients that misbehave: handshakes left unfinished (one, and a
//! flood of them), a ClientHello with thousands of extensions, and server
//! names no DNS name looks like. Each is answered or cut off within the
//! handshake timeout, and a well-behaved client is served meanwhile.

use crate::support;

use std::time::{Duration, Instant};

use gatehouse::proxy::Limits;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS 1.3 ClientHello for `server_name` (raw bytes, any characters),
/// with `extra` unknown, empty extensions after the ones a server needs.
fn client_hello(server_name: &[u8], extra: u16) -> Vec<u8> {
    let mut extensions = Vec::new();
    let mut extension = |kind: u16, body: &[u8]| {
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend_from_slice(&(body.len() as u16).to_be_bytes());
        extensions.extend_from_slice(body);
    };
    // server_name: one host_name entry.
    let mut sni = Vec::new();
    sni.extend_from_slice(&((server_name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(server_name.len() as u16).to_be_bytes());
    sni.extend_from_slice(server_name);
    extension(0x0000, &sni);
    extension(0x002b, &[2, 3, 4]); // supported_versions: TLS 1.3
    extension(0x000a, &[0, 2, 0, 0x1d]); // supported_groups: x25519
                                         // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    extension(0x000d, &[0, 4, 4, 3, 8, 4]);
    // key_share: x25519, any 32 bytes.
    let mut share = vec![0, 36, 0, 0x1d, 0, 32];
    share.extend((0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(9)));
    extension(0x0033, &share);
    for i in 0..extra {
        // Unassigned code points, each once.
        extension(0x4000 + i, &[]);
    }
    let mut body = vec![3, 3];
    body.extend((0..32u8).map(|i| i.wrapping_mul(13)));
    body.push(32);
    body.extend([7u8; 32]);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // no compression
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    // Records of at most 16 KiB.
    let mut out = Vec::new();
    for chunk in handshake.chunks(16_384) {
        out.extend_from_slice(&[0x16, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

/// The first record's content type Gatehouse answers a ClientHello with
/// (22 handshake, 21 alert), or `None` when it closes without one.
async fn first_record(stream: &mut TcpStream) -> Option<u8> {
    let mut head = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head)).await;
    match read {
        Ok(Ok(_)) => Some(head[0]),
        _ => None,
    }
}

async fn site(limits: Limits) -> (Backend, Pki, tempfile::TempDir, gatehouse::app::Running) {
    let web = Backend::start("web").await;
    let pki = Pki::new();
    let leaf = pki.leaf("shop.test");
    let manifests = INGRESS_CLASS.to_owned()
        + &service("web", &[web.addr])
        + &tls_secret("shop-tls", &leaf)
        + &ingress("shop", "shop.test", "/", "web", Some("shop-tls"));
    let (dir, gatehouse) = serve_manifests_with(&manifests, |c| c.limits = limits).await;
    (web, pki, dir, gatehouse)
}

async fn served_over_tls(gatehouse: &gatehouse::app::Running, pki: &Pki) {
    let (mut conn, _) = https_connect(gatehouse.https_addr, "shop.test", &pki.ca).await;
    let reply = send(&mut conn, "shop.test", "/").await.expect("served");
    assert_eq!(reply.status, http::StatusCode::OK);
}

/// The hand-made ClientHello is one a server accepts: the helpers speak
/// TLS.
#[tokio::test]
async fn a_hand_made_client_hello_gets_a_server_hello() {
    let (_web, _pki, _dir, gatehouse) = site(Limits::default()).await;
    let mut stream = TcpStream::connect(gatehouse.https_addr)
        .await
        .expect("connect");
    stream
        .write_all(&client_hello(b"shop.test", 0))
        .await
        .expect("hello");
    assert_eq!(first_record(&mut stream).await, Some(0x16));
}

/// A client that stops half-way through its ClientHello is cut off at the
/// handshake timeout; so is each of a flood of them, and a well-behaved
/// client is served all along.
#[tokio::test]
async fn unfinished_handshakes_are_cut_off_at_the_timeout() {
    let limits = Limits {
        tls_handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (_web, pki, _dir, gatehouse) = site(limits).await;
    let hello = client_hello(b"shop.test", 0);
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(gatehouse.https_addr)
            .await
            .expect("connect");
        stream.write_all(&hello[..20]).await.expect("partial hello");
        flood.push(stream);
    }
    let started = Instant::now();
    served_over_tls(&gatehouse, &pki).await;
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an unfinished handshake was kept: {closed:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    served_over_tls(&gatehouse, &pki).await;
}

/// A ClientHello with 3,000 extensions Gatehouse does not know: answered at
/// once with a ServerHello (unknown extensions are ignored, as TLS asks),
/// not a stall or a crash.
#[tokio::test]
async fn a_client_hello_with_thousands_of_extensions_is_answered() {
    let (_web, pki, _dir, gatehouse) = site(Limits::default()).await;
    let mut stream = TcpStream::connect(gatehouse.https_addr)
        .await
        .expect("connect");
    stream
        .write_all(&client_hello(b"shop.test", 3_000))
        .await
        .expect("hello");
    // A ServerHello: the unknown extensions are ignored.
    assert_eq!(first_record(&mut stream).await, Some(0x16));
    served_over_tls(&gatehouse, &pki).await;
}

/// Server names that are no host name (a NUL, a path, a space, a 250-byte
/// label, not UTF-8, empty): each is refused with an alert at once (rustls
/// checks the name before anything looks it up), and nothing breaks.
#[tokio::test]
async fn server_names_of_bad_characters_are_refused_with_an_alert() {
    let (_web, pki, _dir, gatehouse) = site(Limits::default()).await;
    let long = "a".repeat(250);
    for name in [
        &b"shop.test\0evil"[..],
        b"../../etc/passwd",
        b"shop test",
        long.as_bytes(),
        b"\xff\xfe.test",
        b"",
    ] {
        let mut stream = TcpStream::connect(gatehouse.https_addr)
            .await
            .expect("connect");
        stream
            .write_all(&client_hello(name, 0))
            .await
            .expect("hello");
        let answer = first_record(&mut stream).await;
        assert_eq!(
            answer,
            Some(0x15),
            "{:?} is answered with an alert",
            String::from_utf8_lossy(name)
        );
    }
    served_over_tls(&gatehouse, &pki).await;
}
