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

/// A TLS 1.3 ClientHello handshake message for `server_name` (raw bytes,
/// any characters), with `extra` unknown, empty extensions after the ones
/// a server needs.
fn client_hello_message(server_name: &[u8], extra: u16) -> Vec<u8> {
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
    handshake
}

/// `client_hello_message` in plaintext records of at most 16 KiB.
fn client_hello(server_name: &[u8], extra: u16) -> Vec<u8> {
    let handshake = client_hello_message(server_name, extra);
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

async fn site(limits: Limits) -> Site {
    let site = Site::builder().backend("web").await;
    site.certificate("shop.test", "shop-tls")
        .manifests(ingress("shop", "shop.test", "/", "web", Some("shop-tls")))
        .limits(limits)
        .start()
        .await
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
    let site = site(Limits::default()).await;
    let mut stream = TcpStream::connect(site.gatehouse.https_addr)
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
    let site = site(limits).await;
    let hello = client_hello(b"shop.test", 0);
    let mut flood = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(site.gatehouse.https_addr)
            .await
            .expect("connect");
        stream.write_all(&hello[..20]).await.expect("partial hello");
        flood.push(stream);
    }
    let started = Instant::now();
    served_over_tls(&site.gatehouse, &site.pki).await;
    for stream in &mut flood {
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an unfinished handshake was kept: {closed:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    served_over_tls(&site.gatehouse, &site.pki).await;
}

/// A ClientHello with 3,000 extensions Gatehouse does not know: answered at
/// once with a ServerHello (unknown extensions are ignored, as TLS asks),
/// not a stall or a crash.
#[tokio::test]
async fn a_client_hello_with_thousands_of_extensions_is_answered() {
    let site = site(Limits::default()).await;
    let mut stream = TcpStream::connect(site.gatehouse.https_addr)
        .await
        .expect("connect");
    stream
        .write_all(&client_hello(b"shop.test", 3_000))
        .await
        .expect("hello");
    // A ServerHello: the unknown extensions are ignored.
    assert_eq!(first_record(&mut stream).await, Some(0x16));
    served_over_tls(&site.gatehouse, &site.pki).await;
}

/// Server names that are no host name (a NUL, a path, a space, a 250-byte
/// label, not UTF-8, empty): each is refused with an alert at once (rustls
/// checks the name before anything looks it up), and nothing breaks.
#[tokio::test]
async fn server_names_of_bad_characters_are_refused_with_an_alert() {
    let site = site(Limits::default()).await;
    let long = "a".repeat(250);
    for name in [
        &b"shop.test\0evil"[..],
        b"../../etc/passwd",
        b"shop test",
        long.as_bytes(),
        b"\xff\xfe.test",
        b"",
    ] {
        let mut stream = TcpStream::connect(site.gatehouse.https_addr)
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
    served_over_tls(&site.gatehouse, &site.pki).await;
}

/// A TLS 1.2 connection's records, sealed and opened with the traffic
/// secrets rustls hands out (`dangerous_extract_secrets`): what lets this
/// test send a handshake message inside an established session, which no
/// TLS client library here does.
struct Records {
    tx: (u64, aws_lc_rs::aead::LessSafeKey, [u8; 12]),
    rx: (u64, aws_lc_rs::aead::LessSafeKey, [u8; 12]),
}

impl Records {
    fn keys(
        (seq, secrets): (u64, rustls::ConnectionTrafficSecrets),
    ) -> (u64, aws_lc_rs::aead::LessSafeKey, [u8; 12]) {
        let rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } = secrets else {
            panic!("the test asks for AES-128-GCM");
        };
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, key.as_ref())
            .expect("key");
        let iv: [u8; 12] = iv.as_ref().try_into().expect("iv");
        (seq, aws_lc_rs::aead::LessSafeKey::new(key), iv)
    }

    /// The nonce of record `seq`: the IV with the sequence number xored
    /// into its last eight bytes (rustls's construction for TLS 1.2 GCM).
    fn nonce(iv: &[u8; 12], seq: u64) -> [u8; 12] {
        let mut nonce = *iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    fn seal(&mut self, kind: u8, plaintext: &[u8]) -> Vec<u8> {
        let (seq, key, iv) = &mut self.tx;
        let nonce = Self::nonce(iv, *seq);
        let mut aad = seq.to_be_bytes().to_vec();
        aad.extend_from_slice(&[kind, 3, 3]);
        aad.extend_from_slice(&(plaintext.len() as u16).to_be_bytes());
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::from(aad),
            &mut sealed,
        )
        .expect("seal");
        *seq += 1;
        let mut record = vec![kind, 3, 3];
        record.extend_from_slice(&((8 + sealed.len()) as u16).to_be_bytes());
        record.extend_from_slice(&nonce[4..]);
        record.extend(sealed);
        record
    }

    /// The next record: its type and plaintext, or `None` at the end.
    async fn open(&mut self, stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head));
        read.await.ok()?.ok()?;
        let mut body = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
        stream.read_exact(&mut body).await.ok()?;
        let (seq, key, iv) = &mut self.rx;
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&iv[..4]);
        nonce[4..].copy_from_slice(&body[..8]);
        let mut aad = seq.to_be_bytes().to_vec();
        aad.extend_from_slice(&[head[0], 3, 3]);
        aad.extend_from_slice(&((body.len() - 8 - 16) as u16).to_be_bytes());
        let plain = key
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(aad),
                &mut body[8..],
            )
            .expect("a record the server sealed")
            .to_vec();
        *seq += 1;
        Some((head[0], plain))
    }
}

/// TLS 1.2 renegotiation, asked for by the client inside an established
/// session: refused with a `no_renegotiation` warning alert, the session
/// going on (a request on it is served); asked for again, the connection is
/// ended. Renegotiation costs a client one refusal, never a handshake.
#[tokio::test]
async fn renegotiation_is_refused_and_a_second_attempt_ends_the_connection() {
    let site = site(Limits::default()).await;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ],
        ..provider
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(site.pki.ca.clone()).expect("CA");
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_secret_extraction = true;
    let tcp = TcpStream::connect(site.gatehouse.https_addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("shop.test").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("a TLS 1.2 handshake");
    let (mut tcp, connection) = tls.into_inner();
    let secrets = connection.dangerous_extract_secrets().expect("secrets");
    let mut records = Records {
        tx: Records::keys(secrets.tx),
        rx: Records::keys(secrets.rx),
    };

    // A ClientHello (handshake, 22) inside the session, then a request.
    // The refusal is queued and goes out with the next thing the server
    // writes: the answer.
    let hello = client_hello_message(b"shop.test", 0);
    let request = b"GET / HTTP/1.1\r\nhost: shop.test\r\n\r\n";
    let mut both = records.seal(22, &hello);
    both.extend(records.seal(23, request));
    tcp.write_all(&both).await.expect("hello and request");
    // Alert (21): warning (1), no_renegotiation (100).
    assert_eq!(records.open(&mut tcp).await, Some((21, vec![1, 100])));
    // The session goes on: the request is served.
    let (kind, answer) = records.open(&mut tcp).await.expect("an answer");
    assert_eq!(kind, 23);
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // Once more: a fatal alert, or the connection ends.
    tcp.write_all(&records.seal(22, &hello))
        .await
        .expect("hello");
    let mut ended = false;
    while let Some((kind, body)) = records.open(&mut tcp).await {
        if kind == 21 && body.first() == Some(&2) {
            ended = true;
            break;
        }
    }
    let mut byte = [0u8; 1];
    let eof = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await;
    assert!(
        ended || matches!(eof, Ok(Ok(0)) | Ok(Err(_))),
        "a second renegotiation was let be"
    );
    served_over_tls(&site.gatehouse, &site.pki).await;
}
