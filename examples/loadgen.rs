//! The load comparison's second load generator (`benches/compare/run.sh`),
//! for the two measurements wrk and h2load cannot make:
//!
//! - `rate`: HTTPS HTTP/1.1 keep-alive at a fixed request rate, open loop.
//!   Each connection sends on a fixed schedule, and a request's latency
//!   counts from when it was due, not from when it went out, so a stalled
//!   server is not hidden by the client waiting for it (coordinated
//!   omission). Prints the rate reached and p50/p99/max in ms.
//! - `resume`: a new TLS 1.3 connection per request, resuming with the
//!   session tickets the server sent on earlier connections (as browsers
//!   and HTTP clients do; each simulated client keeps its own tickets).
//!   Prints handshakes per second, how many were resumed, the key
//!   exchange group, and p50/p99 in ms.
//! - `full`: the same with resumption off: a full TLS 1.3 handshake per
//!   request, as wrk makes with `Connection: close`, for a fraction of
//!   wrk's CPU per handshake (see below), so that one client core can
//!   keep one server core busy.
//!
//! Usage:
//!   loadgen rate   ADDR SERVER-NAME PATH RATE CONNECTIONS SECONDS
//!   loadgen resume ADDR SERVER-NAME PATH CONNECTIONS SECONDS
//!   loadgen full   ADDR SERVER-NAME PATH CONNECTIONS SECONDS
//!
//! Certificates and handshake signatures are not checked (the bench's
//! certificates are self-signed): the measurement is the server's
//! handshake, not the client's verification. The client offers X25519
//! alone for the key exchange, which every server in the comparison
//! supports, so that all of them do the same work (rustls would otherwise
//! offer a post-quantum hybrid first, which only Gatehouse would take).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(resume: bool) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        // Room for every connection's tickets.
        rustls::client::Resumption::in_memory_sessions(4096)
    } else {
        rustls::client::Resumption::disabled()
    };
    Arc::new(config)
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    host: String,
    path: String,
    resume: bool,
    tls: tokio_rustls::TlsConnector,
}

impl Target {
    /// The same target for a client of its own (its own session tickets).
    fn own_client(&self) -> Target {
        Target {
            tls: tokio_rustls::TlsConnector::from(client_config(self.resume)),
            ..self.clone()
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

impl Target {
    /// A TLS connection and its HTTP/1.1 sender; whether it resumed.
    async fn connect(&self) -> anyhow::Result<(Sender, bool)> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.tls.connect(self.name.clone(), tcp).await?;
        let session = tls.get_ref().1;
        let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        let group = session.negotiated_key_exchange_group().map(|g| g.name());
        anyhow::ensure!(
            group == Some(rustls::NamedGroup::X25519),
            "key exchange {group:?}"
        );
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // When the connection is done, close TLS as wrk and browsers do,
        // with a close_notify: a peer that only drops the socket sends the
        // server down its error path (OpenSSL counts a missing close_notify
        // as an error), which would bill the client's rudeness to the
        // server.
        tokio::spawn(async move {
            if let Ok(parts) = conn.without_shutdown().await {
                let mut tls = parts.io.into_inner();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            }
        });
        Ok((sender, resumed))
    }

    async fn get(&self, sender: &mut Sender, close: bool) -> anyhow::Result<()> {
        sender.ready().await?;
        let mut request = http::Request::get(&self.path).header("host", &self.host);
        if close {
            request = request.header("connection", "close");
        }
        let response = sender.send_request(request.body(Empty::new())?).await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await?;
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at].as_secs_f64() * 1e3
}

/// Fixed-rate keep-alive load: `rate` requests per second over
/// `connections` connections.
async fn rate(target: Arc<Target>, rate: f64, connections: usize, seconds: f64) {
    let interval = Duration::from_secs_f64(connections as f64 / rate);
    let end = Duration::from_secs_f64(seconds);
    let start = Instant::now() + Duration::from_millis(200);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sender, _) = target.connect().await.expect("connect");
            // Spread the connections' schedules over one interval.
            let offset = interval.mul_f64(c as f64 / connections as f64);
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            for k in 0u32.. {
                let due = start + offset + interval * k;
                if due - start > end {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
                match target.get(&mut sender, false).await {
                    Ok(()) => latencies.push(due.elapsed()),
                    Err(_) => {
                        errors += 1;
                        match target.connect().await {
                            Ok((s, _)) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.expect("task");
        all.extend(latencies);
        errors += e;
    }
    all.sort();
    println!(
        "rate {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, errors {errors}",
        all.len() as f64 / seconds,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
}

/// A new connection per request, `connections` clients at a time, each
/// with its own session tickets when the target resumes.
async fn handshakes(target: Arc<Target>, connections: usize, seconds: f64) {
    let mut clients = Vec::new();
    for _ in 0..connections {
        // One handshake per client first (for its tickets, if it resumes).
        let client = target.own_client();
        let (mut first, _) = client.connect().await.expect("connect");
        client.get(&mut first, true).await.expect("first request");
        clients.push(client);
    }
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for target in clients {
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut resumed, mut errors) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < end {
                let began = Instant::now();
                let done = async {
                    let (mut sender, was_resumed) = target.connect().await?;
                    target.get(&mut sender, true).await?;
                    anyhow::Ok(was_resumed)
                };
                match done.await {
                    Ok(was_resumed) => {
                        latencies.push(began.elapsed());
                        resumed += u64::from(was_resumed);
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, resumed, errors)
        }));
    }
    let (mut all, mut resumed, mut errors) = (Vec::new(), 0, 0);
    for task in tasks {
        let (latencies, r, e) = task.await.expect("task");
        all.extend(latencies);
        resumed += r;
        errors += e;
    }
    let took = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "handshakes {:.0}/s, resumed {resumed} of {}, key exchange X25519, p50 {:.3} ms, p99 {:.3} ms, errors {errors}",
        all.len() as f64 / took,
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: loadgen rate ADDR NAME PATH RATE CONNECTIONS SECONDS | loadgen resume|full ADDR NAME PATH CONNECTIONS SECONDS";
    anyhow::ensure!(args.len() >= 6, "{usage}");
    let resume = args[0] != "full";
    let target = Arc::new(Target {
        addr: args[1].parse()?,
        name: ServerName::try_from(args[2].clone())?,
        host: args[2].clone(),
        path: args[3].clone(),
        resume,
        tls: tokio_rustls::TlsConnector::from(client_config(resume)),
    });
    // One thread: the generator shares its core with the backend.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args[0].as_str() {
        "rate" if args.len() == 7 => runtime.block_on(rate(
            target,
            args[4].parse()?,
            args[5].parse()?,
            args[6].parse()?,
        )),
        "resume" | "full" => {
            runtime.block_on(handshakes(target, args[4].parse()?, args[5].parse()?))
        }
        _ => anyhow::bail!("{usage}"),
    }
    Ok(())
}
