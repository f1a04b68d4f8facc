//! Helpers for the end-to-end tests: a real backend, a real CA, real TLS
//! and HTTP clients, and Gatehouse itself, all on 127.0.0.1.
#![allow(dead_code)] // the streaming test uses only a part

pub mod admission;
pub mod fake_api;
pub mod logs;
pub mod nginx;
pub mod otlp;
pub mod pathological;
pub mod pebble;
pub mod poll;
pub mod prometheus;
pub mod site;

// The streaming test neither waits nor builds a site.
#[allow(unused_imports)]
pub use poll::{eventually, eventually_every};
#[allow(unused_imports)]
pub use site::{Site, SERVICES_FILE};

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use gatehouse::app::{Config, Running};
use gatehouse::translate::TranslateOptions;

// ---------------------------------------------------------------- backend

/// An HTTP backend on 127.0.0.1 that answers every request with JSON
/// describing what it received.
/// What a backend received: each request's description, in order.
pub type Seen = Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// The requests it answered (their descriptions).
    pub seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn start(name: &'static str) -> Backend {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), name).await
    }

    /// The backend on a given address (another loopback address with the
    /// same port gives one Service two endpoints).
    pub async fn start_on(addr: SocketAddr, name: &'static str) -> Backend {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let seen = Seen::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (server, log) = (server.clone(), log.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(describe(name, req, &log).await) }
                    });
                    let _ = server
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Backend {
            name,
            addr,
            accepted,
            seen,
            task,
        }
    }
}

/// Answers with JSON describing the request; `/sleep/MS...` waits MS
/// milliseconds first; `/status/NNN` answers with status NNN.
///
/// Also: `Upgrade` requests are switched (101) and then echo every byte;
/// `/bytes/N` streams N pattern bytes without holding them; `/trailers`
/// answers with a `grpc-status` trailer; request bodies are streamed into a
/// length and checksum, never held.
async fn describe(name: &str, mut req: Request<Incoming>, seen: &Seen) -> Response<BackendBody> {
    if let Some(ms) = req
        .uri()
        .path()
        .strip_prefix("/sleep/")
        .and_then(|r| r.split('/').next())
    {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    // `?delay=1s` or `?delay=250ms` (the Gateway API conformance suite's).
    let delay = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| {
            let value = kv.strip_prefix("delay=")?;
            match value.strip_suffix("ms") {
                Some(ms) => ms.parse().ok().map(std::time::Duration::from_millis),
                None => value
                    .strip_suffix('s')?
                    .parse()
                    .ok()
                    .map(std::time::Duration::from_secs),
            }
        });
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(proto) = req.headers().get(http::header::UPGRADE).cloned() {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, proto)
            .body(BackendBody::full(Bytes::new()))
            .expect("101");
    }
    if let Some(n) = req
        .uri()
        .path()
        .strip_prefix("/bytes/")
        .and_then(|n| n.parse().ok())
    {
        return Response::new(BackendBody::Pattern {
            remaining: n,
            offset: 0,
        });
    }
    if req.uri().path() == "/trailers" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        trailers.insert("grpc-message", http::HeaderValue::from_static("all good"));
        return Response::new(BackendBody::WithTrailers(
            Some(Bytes::from_static(b"payload")),
            Some(trailers),
        ));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in req.headers() {
        let value = value.to_str().unwrap_or("<binary>").to_owned();
        headers
            .entry(key.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let set_headers = headers
        .get("x-echo-set-header")
        .cloned()
        .unwrap_or_default();
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let version = format!("{:?}", req.version());
    // `/status/NNN`: answers with that status (and the usual description).
    let status = req
        .uri()
        .path()
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let (mut len, mut sum) = (0u64, 0u64);
    let mut body = req.into_body();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            len += data.len() as u64;
            sum = checksum(sum, data);
        }
    }
    let json = serde_json::json!({
        "backend": name, "method": method, "uri": uri, "version": version,
        "headers": headers, "body_len": len, "body_sum": sum,
    });
    seen.lock().expect("seen").push(json.clone());
    let mut response = Response::new(BackendBody::full(Bytes::from(json.to_string())));
    *response.status_mut() = status;
    // `X-Echo-Set-Header: Name:Value,Name2:Value2` (the Gateway API
    // conformance suite's echo server's): those headers on the response.
    for pair in set_headers.split(',').filter(|p| !p.is_empty()) {
        if let Some((name, value)) = pair.split_once(':') {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            ) {
                response.headers_mut().append(name, value);
            }
        }
    }
    // What an application server says of itself, for the tests of the
    // headers Gatehouse removes.
    let headers = response.headers_mut();
    headers.insert("server", http::HeaderValue::from_static("backend/1"));
    headers.insert("x-powered-by", http::HeaderValue::from_static("backend"));
    response
}

/// A running checksum over a byte stream (order-sensitive, cheap).
pub fn checksum(mut sum: u64, data: &[u8]) -> u64 {
    for &b in data {
        sum = sum.wrapping_mul(31).wrapping_add(u64::from(b));
    }
    sum
}

/// Byte `i` of the `/bytes/N` stream.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// The backend's response bodies.
pub enum BackendBody {
    Full(Option<Bytes>),
    /// Generated on the fly, 64 KiB at a time.
    Pattern {
        remaining: u64,
        offset: u64,
    },
    WithTrailers(Option<Bytes>, Option<http::HeaderMap>),
}

impl BackendBody {
    fn full(bytes: Bytes) -> Self {
        BackendBody::Full(Some(bytes))
    }
}

impl hyper::body::Body for BackendBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use hyper::body::Frame;
        let frame = match &mut *self {
            BackendBody::Full(bytes) => bytes.take().map(Frame::data),
            BackendBody::Pattern { remaining, offset } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = (*remaining).min(64 * 1024);
                    let chunk: Vec<u8> = (*offset..*offset + n).map(pattern_byte).collect();
                    *remaining -= n;
                    *offset += n;
                    Some(Frame::data(Bytes::from(chunk)))
                }
            }
            BackendBody::WithTrailers(data, trailers) => match data.take() {
                Some(data) => Some(Frame::data(data)),
                None => trailers.take().map(Frame::trailers),
            },
        };
        std::task::Poll::Ready(frame.map(Ok))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            BackendBody::Full(bytes) => {
                hyper::body::SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            BackendBody::Pattern { remaining, .. } => hyper::body::SizeHint::with_exact(*remaining),
            BackendBody::WithTrailers(..) => hyper::body::SizeHint::default(),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self,
            BackendBody::Full(None) | BackendBody::Pattern { remaining: 0, .. }
        )
    }
}

impl Backend {
    /// The same backend, behind TLS with `leaf` (for `backend-protocol: HTTPS`).
    pub async fn start_tls(name: &'static str, leaf: &Leaf) -> Backend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der.clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let seen = Seen::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (server, acceptor, log) = (server.clone(), acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let log = log.clone();
                        async move { Ok::<_, Infallible>(describe(name, req, &log).await) }
                    });
                    let _ = server.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Backend {
            name,
            addr,
            accepted,
            seen,
            task,
        }
    }
}

/// A port on 127.0.0.1 with nothing listening on it.
pub async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- PKI

/// A CA that issues leaf certificates for test hosts.
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca: CertificateDer<'static>,
    pub ca_pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Pki {
        Pki::named("Gatehouse test CA")
    }

    /// A CA whose subject is `CN=<name>`.
    pub fn named(name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA cert");
        Pki {
            ca: cert.der().clone(),
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A client certificate (TLS client auth) with subject `CN=<cn>`.
    pub fn client(&self, cn: &str) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    pub fn leaf(&self, host: &str) -> Leaf {
        self.leaf_for(&[host])
    }

    /// A server certificate for several names.
    pub fn leaf_for(&self, hosts: &[&str]) -> Leaf {
        let names = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        self.leaf_with(rcgen::CertificateParams::new(names).expect("leaf params"))
    }

    /// A server certificate for several names, valid from `age` ago for
    /// `age + left`.
    pub fn leaf_aged(&self, hosts: &[&str], age: Duration, left: Duration) -> Leaf {
        let names = hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).expect("leaf params");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - age;
        params.not_after = now + left;
        self.leaf_with(params)
    }

    fn leaf_with(&self, params: rcgen::CertificateParams) -> Leaf {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

// ---------------------------------------------------------------- manifests

pub const INGRESS_CLASS: &str = "\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: gatehouse}
spec: {controller: gatehouse.dev/ingress-controller}
";

/// Our GatewayClass and the Gateway `test/edge` with one HTTP listener on
/// port 80 (routes from its own namespace, the default).
pub const GATEWAY_EDGE: &str = "
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gatehouse}
spec: {controllerName: gatehouse.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: test}
spec:
  gatewayClassName: gatehouse
  listeners:
  - {name: http, port: 80, protocol: HTTP}
";

/// A Service `name` (port 80) and the EndpointSlice a cluster would make for
/// it, with one ready endpoint per address.
pub fn service(name: &str, endpoints: &[SocketAddr]) -> String {
    let port = endpoints.first().map(|a| a.port()).unwrap_or(8080);
    let addresses: Vec<String> = endpoints
        .iter()
        .map(|a| format!("\"{}\"", a.ip()))
        .collect();
    format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: test}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-x1
  namespace: test
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints:
- addresses: [{}]
",
        addresses.join(", ")
    )
}

/// A `kubernetes.io/tls` Secret written with `stringData`.
/// The API source the suite runs on `client`: every namespace, no
/// selector, controller ConfigMap or default certificate, and the
/// `gatehouse.dev` annotation prefix.
pub fn kube_source(client: kube::Client) -> gatehouse::source::kube::KubeSource {
    gatehouse::source::kube::KubeSource {
        client,
        namespaces: Vec::new(),
        namespace_selector: None,
        config_map: None,
        default_certificate: None,
        annotations_prefix: "gatehouse.dev".into(),
    }
}

/// A Namespace object with `labels`, for the fake API server.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}

pub fn tls_secret(name: &str, leaf: &Leaf) -> String {
    format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: test}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}
  tls.key: |
{}
",
        indent(&leaf.cert_pem),
        indent(&leaf.key_pem)
    )
}

/// An Opaque Secret in namespace `test`, written with `stringData`.
pub fn opaque_secret(name: &str, data: &[(&str, &str)]) -> String {
    let entries: Vec<String> = data
        .iter()
        .map(|(key, value)| format!("  {key}: |\n{}\n", indent(value)))
        .collect();
    format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: test}}
type: Opaque
stringData:
{}",
        entries.concat()
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An Ingress of our class: `host` + Prefix `path` to Service `service`
/// port 80, with TLS from `secret` when given.
pub fn ingress(name: &str, host: &str, path: &str, service: &str, secret: Option<&str>) -> String {
    ingress_annotated(name, host, path, service, secret, &[])
}

/// `ingress` with annotations (ImplementationSpecific path type, so that
/// regex annotations apply).
pub fn ingress_annotated(
    name: &str,
    host: &str,
    path: &str,
    service: &str,
    secret: Option<&str>,
    annotations: &[(&str, &str)],
) -> String {
    let annotations: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {}\n", serde_json::Value::from(*v)))
        .collect();
    let annotations = if annotations.is_empty() {
        String::new()
    } else {
        format!("  annotations:\n{}", annotations.concat())
    };
    let path_type = if annotations.is_empty() {
        "Prefix"
    } else {
        "ImplementationSpecific"
    };
    let path = serde_json::Value::from(path);
    let tls = secret
        .map(|s| format!("  tls: [{{hosts: [{host}], secretName: {s}}}]\n"))
        .unwrap_or_default();
    format!(
        "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: test
{annotations}spec:
  ingressClassName: gatehouse
{tls}  rules:
  - host: {host}
    http:
      paths:
      - {{path: {path}, pathType: {path_type}, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}
"
    )
}

/// Writes a file atomically (temp file + rename), as editors and
/// `kubectl`-style tools do.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write temp manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

// ---------------------------------------------------------------- gatehouse

/// Gatehouse on a new directory holding `manifests` in one file.
pub async fn serve_manifests(manifests: &str) -> (tempfile::TempDir, Running) {
    serve_manifests_with(manifests, |_| {}).await
}

/// `serve_manifests`, with the configuration changed by `configure` first.
pub async fn serve_manifests_with(
    manifests: &str,
    configure: impl FnOnce(&mut Config),
) -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("all.yaml"), manifests).expect("write manifests");
    let mut config = config_for(dir.path());
    configure(&mut config);
    let gatehouse = gatehouse::app::start(config)
        .await
        .expect("gatehouse starts");
    (dir, gatehouse)
}

pub async fn start_gatehouse(dir: &Path) -> Running {
    start_gatehouse_with(dir, TranslateOptions::default()).await
}

pub async fn start_gatehouse_with(dir: &Path, translate: TranslateOptions) -> Running {
    let mut config = config_for(dir);
    config.translate = translate;
    gatehouse::app::start(config)
        .await
        .expect("gatehouse starts")
}

/// A configuration on 127.0.0.1:0 ports, without access log.
pub fn config_for(dir: &Path) -> Config {
    let any = "127.0.0.1:0".parse().expect("addr");
    Config {
        source: gatehouse::app::SourceConfig::Manifests(dir.to_owned()),
        http_addr: any,
        https_addr: any,
        metrics_addr: any,
        ingress_nginx_metrics: None,
        translate: TranslateOptions::default(),
        access_log: gatehouse::telemetry::access_log::AccessLogTarget::Off,
        access_log_format: gatehouse::telemetry::access_log::AccessLogFormat::Json,
        limits: gatehouse::proxy::Limits::default(),
        shutdown_grace: std::time::Duration::from_secs(5),
        drain_timeout: std::time::Duration::from_secs(30),
        status: None,
        webhook: None,
    }
}

/// A replica `name` of the fake API server's cluster: every namespace
/// watched, electing on the Lease `gatehouse-leader` in `namespace`,
/// publishing as `publish` says.
pub fn replica_config(
    api: &fake_api::FakeApi,
    name: &str,
    namespace: &str,
    publish: gatehouse::status::Publish,
) -> Config {
    let mut config = config_for(Path::new("."));
    config.source = gatehouse::app::SourceConfig::Kube(kube_source(api.client_as(name)));
    config.status = Some(gatehouse::status::StatusConfig {
        publish,
        election_id: "gatehouse-leader".into(),
        namespace: namespace.into(),
        identity: name.into(),
    });
    config
}

// ---------------------------------------------------------------- clients

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// What a request through the proxy came back with.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The backend's description of the request it received.
    pub fn seen(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not a backend reply ({e}): {:?}", self.body))
    }

    pub fn backend(&self) -> String {
        self.seen()["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn send(sender: &mut Sender, host: &str, path: &str) -> Result<Reply, hyper::Error> {
    let req = Request::get(path)
        .header(http::header::HOST, host)
        .body(Full::default())
        .expect("request");
    send_request(sender, req).await
}

pub async fn send_request(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<Reply, hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// An HTTP/1.1 keep-alive connection to plain `addr`.
pub async fn http_connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    sender
}

/// One plain-HTTP request on a fresh connection.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Reply {
    let mut sender = http_connect(addr).await;
    send(&mut sender, host, path).await.expect("request")
}

/// The status of `GET /` for `host` on a fresh plain-HTTP connection.
pub async fn status_of(addr: SocketAddr, host: &str) -> StatusCode {
    http_get(addr, host, "/").await.status
}

/// A TLS client config that trusts `ca` (or anything, when `None`) and
/// offers the given ALPN protocols.
pub fn tls_config(
    ca: Option<&CertificateDer<'static>>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocols");
    let mut config = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).expect("CA");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS connection to `addr` sending `sni`; returns the stream and the
/// leaf certificate the server presented.
pub async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
)> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let tls = TlsConnector::from(config).connect(name, stream).await?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .clone();
    Ok((tls, leaf))
}

/// An HTTP/1.1 keep-alive connection over TLS, verified against `ca`.
pub async fn https_connect(
    addr: SocketAddr,
    sni: &str,
    ca: &CertificateDer<'static>,
) -> (Sender, CertificateDer<'static>) {
    let (tls, leaf) = tls_connect(addr, sni, tls_config(Some(ca), &[b"http/1.1"]))
        .await
        .unwrap_or_else(|e| panic!("TLS to {sni}: {e}"));
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    (sender, leaf)
}

/// An HTTP/2 connection over TLS (ALPN `h2`, checked), verified against
/// `ca`; returns the sender and the leaf certificate the server presented.
pub async fn h2_connect(
    addr: SocketAddr,
    sni: &str,
    ca: &CertificateDer<'static>,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    CertificateDer<'static>,
) {
    let (tls, leaf) = tls_connect(addr, sni, tls_config(Some(ca), &[b"h2"]))
        .await
        .unwrap_or_else(|e| panic!("TLS to {sni}: {e}"));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    (sender, leaf)
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // By the certificate's public key alone: a TLS-ALPN-01 validation
        // certificate carries a critical extension a TLS verifier refuses
        // to parse.
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|_| rustls::Error::General("certificate does not parse".into()))?;
        let spki = rustls::pki_types::SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &spki,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---------------------------------------------------------------- raw sockets

/// Reads from `stream` until the end of a response head; returns the head.
pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let head = try_read_head(stream)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&head).into_owned()
}

/// An endpoint at `addr` that answers every request 503 and closes, for
/// the rest of the test; it keeps the head of every request it got.
pub async fn failing_endpoint(addr: SocketAddr) -> Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::AsyncWriteExt;
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let kept = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                if let Ok(head) = try_read_head(&mut stream).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    kept.lock().expect("heads").push(head);
                    let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy";
                    let _ = stream.write_all(answer).await;
                }
            });
        }
    });
    heads
}

/// Reads from `stream` until the end of an HTTP head (request or
/// response); says why if the connection ends or fails first.
pub async fn try_read_head<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) => {
                return Err(format!(
                    "connection closed before the end of the head: {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("read head: {e}")),
        }
    }
    Ok(head)
}

/// A bare HTTP/1.1 endpoint on 127.0.0.1, for the misbehaviour `Backend`
/// will not show: for each connection it reads one request head and hands
/// it, with the socket, to `answer`. Abort the handle to stop it.
pub async fn raw_endpoint<F, Fut>(answer: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Vec<u8>, TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                if let Ok(head) = try_read_head(&mut stream).await {
                    answer(head, stream).await;
                }
            });
        }
    });
    (addr, server)
}

/// An upstream that answers every request with a 1 GiB body written as
/// fast as the connection takes it, and counts the bytes it got out: to
/// see whether the proxy back-pressures it.
pub async fn endless_upstream() -> (
    SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use tokio::io::AsyncWriteExt;
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let (addr, task) = raw_endpoint(move |_request, mut stream| {
        let counter = counter.clone();
        async move {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n";
            if stream.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            while stream.write_all(&chunk).await.is_ok() {
                counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    (addr, written, task)
}

/// An upgraded (WebSocket-style) connection through Gatehouse to an echoing
/// backend: sends the upgrade request and checks the 101.
pub async fn open_upgrade(addr: SocketAddr, host: &str) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /chat HTTP/1.1\r\nhost: {host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write upgrade");
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    stream
}

/// Sends `message` over an upgraded connection and reads the echo.
pub async fn echo(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(message).await.expect("write");
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).await.expect("read echo");
    back
}
