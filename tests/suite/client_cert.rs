//! Client certificates (mTLS) end to end: a test CA issues client
//! certificates, real TLS handshakes ask for them only for the names whose
//! hosts want them, and the backend learns the verdict.

use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::*;

/// The site's CA is the one that issues client certificates.
async fn site() -> Site {
    let clients = Pki::named("Gatehouse client CA");
    let client_ca = opaque_secret("client-ca", &[("ca.crt", &clients.ca_pem)]);
    Site::builder()
        .backend("web")
        .await
        .ca(clients)
        .manifests(client_ca)
        .manifests(manifests())
        .start()
        .await
}

fn manifests() -> String {
    let tls = |extra: &[(&'static str, &'static str)]| {
        let mut a = vec![(
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "test/client-ca",
        )];
        a.extend_from_slice(extra);
        a
    };
    let pass = (
        "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
        "true",
    );
    [
        ingress_annotated("mtls", "mtls.test", "/", "web", None, &tls(&[pass])),
        ingress_annotated(
            "optional",
            "optional.test",
            "/",
            "web",
            None,
            &tls(&[(
                "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                "optional",
            )]),
        ),
        ingress_annotated(
            "no-ca",
            "no-ca.test",
            "/",
            "web",
            None,
            &tls(&[(
                "nginx.ingress.kubernetes.io/auth-tls-verify-client",
                "optional_no_ca",
            )]),
        ),
        ingress_annotated(
            "cn",
            "cn.test",
            "/",
            "web",
            None,
            &tls(&[("nginx.ingress.kubernetes.io/auth-tls-match-cn", "CN=alice")]),
        ),
        ingress_annotated(
            "error-page",
            "error-page.test",
            "/",
            "web",
            None,
            &tls(&[(
                "nginx.ingress.kubernetes.io/auth-tls-error-page",
                "https://errors.example.com/certificate",
            )]),
        ),
        ingress("open", "open.test", "/", "web", None),
    ]
    .concat()
}

/// Sends the client certificate when asked, and records that it was.
#[derive(Debug)]
struct Offers {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    asked: AtomicBool,
}

impl rustls::client::ResolvesClientCert for Offers {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.asked.store(true, Ordering::SeqCst);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn offers(leaf: Option<&Leaf>) -> Arc<Offers> {
    let key = leaf.map(|leaf| {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
        let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("cert")];
        Arc::new(
            rustls::sign::CertifiedKey::from_der(chain, key, &provider).expect("certified key"),
        )
    });
    Arc::new(Offers {
        key,
        asked: AtomicBool::new(false),
    })
}

/// A TLS connection with `sni` offering `leaf` when asked; HTTP/1.1 or h2.
async fn connect(site: &Site, sni: &str, offer: &Arc<Offers>, alpn: &[u8]) -> Connection {
    let server = tls_config(None, &[alpn]);
    let mut config = (*server).clone();
    config.client_auth_cert_resolver = offer.clone();
    let (tls, _) = tls_connect(site.gatehouse.https_addr, sni, Arc::new(config))
        .await
        .unwrap_or_else(|e| panic!("handshake with {sni}: {e}"));
    if alpn == b"h2" {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        Connection::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Connection::H1(sender)
    }
}

enum Connection {
    H1(Sender),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    async fn get(&mut self, host: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::get("/");
        req = match self {
            Connection::H1(_) => req.header(http::header::HOST, host),
            Connection::H2(_) => req.uri(format!("https://{host}/")),
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::default()).expect("request");
        match self {
            Connection::H1(sender) => send_request(sender, req).await.expect("request"),
            Connection::H2(sender) => {
                use http_body_util::BodyExt;
                let response = sender.send_request(req).await.expect("h2 request");
                let (parts, body) = response.into_parts();
                Reply {
                    status: parts.status,
                    headers: parts.headers,
                    body: body.collect().await.expect("body").to_bytes(),
                }
            }
        }
    }
}

#[tokio::test]
async fn a_valid_certificate_passes_and_the_backend_learns_who_it_is() {
    let site = site().await;
    let alice = site.pki.client("alice");
    let offer = offers(Some(&alice));
    let mut conn = connect(&site, "mtls.test", &offer, b"http/1.1").await;
    assert!(
        offer.asked.load(Ordering::SeqCst),
        "mtls.test asks for a certificate"
    );
    let reply = conn
        .get("mtls.test", &[("ssl-client-verify", "forged")])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = &reply.seen()["headers"];
    assert_eq!(headers["ssl-client-verify"], "SUCCESS");
    assert_eq!(headers["ssl-client-subject-dn"], "CN=alice");
    assert_eq!(headers["ssl-client-issuer-dn"], "CN=Gatehouse client CA");
    let pem = headers["ssl-client-cert"]
        .as_str()
        .expect("certificate passed on");
    assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
}

#[tokio::test]
async fn without_a_valid_certificate_the_request_gets_400_not_a_broken_handshake() {
    let site = site().await;
    let stranger = Pki::named("Some other CA").client("alice");
    for (what, leaf) in [("none", None), ("another CA's", Some(&stranger))] {
        let mut conn = connect(&site, "mtls.test", &offers(leaf), b"http/1.1").await;
        let reply = conn.get("mtls.test", &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what} certificate");
    }
    // The same, sent to the error page instead.
    let mut conn = connect(&site, "error-page.test", &offers(None), b"http/1.1").await;
    let reply = conn.get("error-page.test", &[]).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.headers["location"],
        "https://errors.example.com/certificate"
    );
}

#[tokio::test]
async fn optional_lets_no_certificate_through_but_not_a_bad_one() {
    let site = site().await;
    let mut conn = connect(&site, "optional.test", &offers(None), b"http/1.1").await;
    let reply = conn.get("optional.test", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.seen()["headers"]["ssl-client-verify"], "NONE");

    let stranger = Pki::named("Some other CA").client("alice");
    let mut conn = connect(
        &site,
        "optional.test",
        &offers(Some(&stranger)),
        b"http/1.1",
    )
    .await;
    assert_eq!(
        conn.get("optional.test", &[]).await.status,
        StatusCode::BAD_REQUEST
    );

    // optional_no_ca: the backend decides, told why it failed.
    let mut conn = connect(&site, "no-ca.test", &offers(Some(&stranger)), b"http/1.1").await;
    let reply = conn.get("no-ca.test", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let verdict = reply.seen()["headers"]["ssl-client-verify"].clone();
    assert_eq!(verdict, "FAILED:unable to get local issuer certificate");
}

#[tokio::test]
async fn match_cn_refuses_other_subjects_with_403() {
    let site = site().await;
    let bob = site.pki.client("bob");
    let mut conn = connect(&site, "cn.test", &offers(Some(&bob)), b"http/1.1").await;
    assert_eq!(conn.get("cn.test", &[]).await.status, StatusCode::FORBIDDEN);
    let alice = site.pki.client("alice");
    let mut conn = connect(&site, "cn.test", &offers(Some(&alice)), b"http/1.1").await;
    assert_eq!(conn.get("cn.test", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_connection_opened_for_another_name_gets_421_on_http1_and_http2() {
    let site = site().await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let offer = offers(None);
        let mut conn = connect(&site, "open.test", &offer, alpn).await;
        assert!(
            !offer.asked.load(Ordering::SeqCst),
            "open.test asks for no certificate"
        );
        let reply = conn.get("open.test", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        let reply = conn.get("mtls.test", &[]).await;
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{alpn:?}");
    }
    // Even with a valid certificate for the other name's policy, a
    // connection opened under another name is not reused for it.
    let alice = site.pki.client("alice");
    let mut conn = connect(&site, "optional.test", &offers(Some(&alice)), b"h2").await;
    assert_eq!(conn.get("optional.test", &[]).await.status, StatusCode::OK);
    assert_eq!(
        conn.get("mtls.test", &[]).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
}

#[tokio::test]
async fn client_sent_certificate_headers_never_reach_a_backend() {
    let site = site().await;
    let mut conn = connect(&site, "open.test", &offers(None), b"http/1.1").await;
    let reply = conn
        .get(
            "open.test",
            &[
                ("ssl-client-verify", "SUCCESS"),
                ("ssl-client-subject-dn", "CN=admin"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = &reply.seen()["headers"];
    assert!(headers.get("ssl-client-verify").is_none(), "{headers}");
    assert!(headers.get("ssl-client-subject-dn").is_none(), "{headers}");
}
