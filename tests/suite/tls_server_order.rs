//! The HTTPS listener picks cipher suites in its own order (AES-256-GCM,
//! AES-128-GCM, ChaCha20-Poly1305), whatever order the client lists them
//! in, except that a client listing ChaCha20 first gets it; and the
//! session tickets it issues are announced for ten minutes.

use crate::support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rustls::crypto::aws_lc_rs::cipher_suite as suite;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};
use support::*;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

async fn site() -> Site {
    Site::builder()
        .backend("web")
        .await
        .certificate("shop.test", "shop-tls")
        .manifests(ingress("shop", "shop.test", "/", "web", Some("shop-tls")))
        .start()
        .await
}

/// A client offering only `suites`, in that order, over `version`.
fn client(
    site: &Site,
    suites: &[SupportedCipherSuite],
    version: &'static SupportedProtocolVersion,
) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = suites.to_vec();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(site.pki.ca.clone()).expect("CA");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The suite the server chose for a client offering `suites`.
async fn chosen(
    site: &Site,
    suites: &[SupportedCipherSuite],
    version: &'static SupportedProtocolVersion,
) -> CipherSuite {
    let config = client(site, suites, version);
    let (tls, _) = tls_connect(site.gatehouse.https_addr, "shop.test", config)
        .await
        .expect("TLS");
    tls.get_ref()
        .1
        .negotiated_cipher_suite()
        .expect("a suite")
        .suite()
}

#[tokio::test]
async fn the_server_order_decides_whatever_the_client_lists_first() {
    let site = site().await;
    let tls13 = &rustls::version::TLS13;
    let tls12 = &rustls::version::TLS12;
    // The client lists AES-128 first: the server's AES-256 wins.
    let aes128_first = [
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        chosen(&site, &aes128_first, tls13).await,
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let aes128_first = [
        suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        chosen(&site, &aes128_first, tls12).await,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    // Without AES-256 on offer, the server's second choice.
    let without_256 = [
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS13_AES_128_GCM_SHA256,
    ];
    let reversed = without_256.iter().rev().copied().collect::<Vec<_>>();
    assert_eq!(
        chosen(&site, &reversed, tls13).await,
        CipherSuite::TLS13_AES_128_GCM_SHA256
    );
}

#[tokio::test]
async fn a_client_that_lists_chacha20_first_gets_it() {
    let site = site().await;
    let chacha_first = [
        suite::TLS13_CHACHA20_POLY1305_SHA256,
        suite::TLS13_AES_128_GCM_SHA256,
        suite::TLS13_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        chosen(&site, &chacha_first, &rustls::version::TLS13).await,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
    );
    let chacha_first = [
        suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    assert_eq!(
        chosen(&site, &chacha_first, &rustls::version::TLS12).await,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
}

/// A TCP stream that keeps a copy of everything the server sent.
struct Tap {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled()[before..].to_vec();
        self.seen.lock().unwrap().extend_from_slice(&read);
        polled
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The lifetime hint of the TLS 1.2 NewSessionTicket in `server_bytes`
/// (sent before the server's ChangeCipherSpec, so in the clear).
fn tls12_ticket_lifetime(server_bytes: &[u8]) -> Option<u32> {
    let mut handshake = Vec::new();
    let mut rest = server_bytes;
    while rest.len() >= 5 {
        let (kind, len) = (rest[0], usize::from(u16::from_be_bytes([rest[3], rest[4]])));
        let record = rest.get(5..5 + len)?;
        match kind {
            20 => break, // ChangeCipherSpec: what follows is encrypted
            22 => handshake.extend_from_slice(record),
            _ => {}
        }
        rest = &rest[5 + len..];
    }
    let mut messages = handshake.as_slice();
    while messages.len() >= 4 {
        let len = u32::from_be_bytes([0, messages[1], messages[2], messages[3]]) as usize;
        let body = messages.get(4..4 + len)?;
        if messages[0] == 4 {
            return Some(u32::from_be_bytes(body.get(..4)?.try_into().ok()?));
        }
        messages = &messages[4 + len..];
    }
    None
}

#[tokio::test]
async fn tickets_are_announced_for_ten_minutes() {
    let site = site().await;
    let config = client(&site, &gatehouse::tls::TLS12_ORDER, &rustls::version::TLS12);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tcp = TcpStream::connect(site.gatehouse.https_addr)
        .await
        .expect("connect");
    let tap = Tap {
        inner: tcp,
        seen: seen.clone(),
    };
    let name = ServerName::try_from("shop.test").unwrap();
    let _tls = TlsConnector::from(config)
        .connect(name, tap)
        .await
        .expect("TLS 1.2");
    let lifetime = tls12_ticket_lifetime(&seen.lock().unwrap());
    assert_eq!(lifetime, Some(600), "the ticket's lifetime hint");
    assert_eq!(
        gatehouse::tls::SESSION_LIFETIME.as_secs(),
        600,
        "what the hint announces is what the keys allow"
    );
}
