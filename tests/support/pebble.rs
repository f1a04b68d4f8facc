//! Let's Encrypt's test CA, pebble, with pebble-challtestsrv as its DNS
//! (every name resolves to 127.0.0.1), on free loopback ports. Pebble
//! validates HTTP-01 and TLS-ALPN-01 against the ports it is given:
//! Gatehouse's listeners.
//!
//! Both come from Debian's `pebble` package; `.ci/run` installs it. A test
//! that needs them calls `Pebble::start` and returns early (saying so)
//! when they are absent. `GATEHOUSE_TEST_PEBBLE` names another pebble
//! binary: Debian's 2.4.0 has no renewal information (ARI), which pebble
//! serves from 2.5.0 on.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;

use http::StatusCode;

use super::{tls_config, tls_connect, Pki};

pub struct Pebble {
    /// The ACME directory URL.
    pub directory: String,
    /// Base64 of the PEM CA of pebble's own HTTPS: an `AcmeIssuer`'s
    /// `caBundle`.
    pub ca_bundle: String,
    /// The root pebble issues under, for clients of the issued certificates.
    pub root: CertificateDer<'static>,
    listen: SocketAddr,
    management: SocketAddr,
    pki: Pki,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The pebble binary: `GATEHOUSE_TEST_PEBBLE`, else Debian's.
fn binary() -> String {
    std::env::var("GATEHOUSE_TEST_PEBBLE").unwrap_or_else(|_| "pebble".to_owned())
}

/// A free port on 127.0.0.1 (free when asked; taken by whoever binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free UDP port")
        .port()
}

impl Pebble {
    /// Whether pebble and its DNS are installed; if not, says why the
    /// calling test does nothing.
    pub fn installed(test: &str) -> bool {
        let found = [binary().as_str(), "pebble-challtestsrv"]
            .iter()
            .all(|tool| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            });
        if !found {
            eprintln!("{test}: skipped: pebble is not installed (apt-get install pebble)");
        }
        found
    }

    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port` of 127.0.0.1, with `env` (e.g. `PEBBLE_WFE_NONCEREJECT`).
    /// Started again on other ports when a port it was given was taken
    /// meanwhile (tests start several at once).
    pub async fn start(http_port: u16, tls_port: u16, env: &[(&str, &str)]) -> Pebble {
        Pebble::start_with(http_port, tls_port, env, serde_json::json!({})).await
    }

    /// `start`, with `config` merged into pebble's configuration (e.g.
    /// `externalAccountMACKeys`).
    pub async fn start_with(
        http_port: u16,
        tls_port: u16,
        env: &[(&str, &str)],
        config: serde_json::Value,
    ) -> Pebble {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Pebble::try_start(http_port, tls_port, env, &config).await {
                Ok(pebble) => return pebble,
                Err(e) => failures.push(e),
            }
        }
        panic!("pebble did not start: {failures:#?}");
    }

    async fn try_start(
        http_port: u16,
        tls_port: u16,
        env: &[(&str, &str)],
        extra: &serde_json::Value,
    ) -> Result<Pebble, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::named("pebble HTTPS test CA");
        let leaf = pki.leaf_for(&["localhost", "127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).expect("write key");
        let (listen, management, dns) = (free_port(), free_port(), free_udp_port());
        let mut config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        for (key, value) in extra.as_object().into_iter().flatten() {
            config["pebble"][key] = value.clone();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write config");

        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log file");
        let dns_server = Command::new("pebble-challtestsrv")
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{}", free_port()),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("start pebble-challtestsrv");
        let mut pebble = Command::new(binary());
        pebble
            .args(["-config"])
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}"), "-strict=false"])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"));
        for (name, value) in env {
            pebble.env(name, value);
        }
        let pebble = pebble.spawn().expect("start pebble");
        let mut running = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            ca_bundle: base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem),
            root: CertificateDer::from(Vec::new()),
            listen: SocketAddr::from(([127, 0, 0, 1], listen)),
            management: SocketAddr::from(([127, 0, 0, 1], management)),
            pki,
            children: vec![dns_server, pebble],
            _dir: dir,
        };
        running.root = running.fetch_root().await?;
        Ok(running)
    }

    /// Pebble's issuing root, from its management interface (retried
    /// while pebble starts); an error when either process has exited.
    async fn fetch_root(&mut self) -> Result<CertificateDer<'static>, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self.get(self.management, "/roots/0").await {
                Ok(pem) => {
                    use rustls::pki_types::pem::PemObject;
                    return Ok(CertificateDer::from_pem_slice(&pem).expect("pebble root is PEM"));
                }
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(format!("no answer on {}: {e}", self.management))
                }
                Err(_) => {}
            }
            for (child, log) in self
                .children
                .iter_mut()
                .zip(["challtestsrv.err", "pebble.err"])
            {
                if let Ok(Some(status)) = child.try_wait() {
                    let said =
                        std::fs::read_to_string(self._dir.path().join(log)).unwrap_or_default();
                    return Err(format!("exited ({status}): {said}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the directory offers renewal information (ARI).
    pub async fn offers_renewal_info(&self) -> bool {
        let directory = self
            .get(self.listen, "/dir")
            .await
            .expect("pebble's directory");
        let directory: serde_json::Value =
            serde_json::from_slice(&directory).expect("directory JSON");
        directory.get("renewalInfo").is_some()
    }

    /// What pebble has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Pebble's CA for its own HTTPS, as PEM.
    pub fn https_ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    async fn get(&self, addr: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
        let config = tls_config(Some(&self.pki.ca), &[b"http/1.1"]);
        let (tls, _) = tls_connect(addr, "localhost", config)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let request = http::Request::get(path)
            .header("host", "localhost")
            .body(Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{path}: {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body.to_bytes().to_vec())
    }

    /// An `AcmeIssuer` manifest for this pebble.
    pub fn issuer(&self, name: &str, challenge: &str) -> String {
        format!(
            "apiVersion: gatehouse.dev/v1alpha1
kind: AcmeIssuer
metadata: {{name: {name}}}
spec:
  server: {}
  email: ops@shop.test
  privateKeySecretRef: {{name: {name}-account}}
  challenge: {challenge}
  caBundle: {}
",
            self.directory, self.ca_bundle
        )
    }
}

/// A GET of `/` over HTTPS to `host` at `addr`, verified against `root`.
pub async fn verified_get(
    addr: SocketAddr,
    host: &str,
    root: &rustls::pki_types::CertificateDer<'static>,
) -> Result<StatusCode, String> {
    let config = tls_config(Some(root), &[b"http/1.1"]);
    let (tls, _) = tls_connect(addr, host, config)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    super::send(&mut sender, host, "/")
        .await
        .map(|reply| reply.status)
        .map_err(|e| e.to_string())
}

/// A TCP relay that holds every connection until it is told where to
/// send them: it stands between pebble and the replica that validates,
/// so a test can stop a replica while pebble's validation is in flight.
pub struct Relay {
    pub addr: SocketAddr,
    /// Where the held connections go, once set.
    pub target: tokio::sync::watch::Sender<Option<SocketAddr>>,
    /// Connections accepted so far.
    pub connections: tokio::sync::watch::Receiver<usize>,
}

impl Relay {
    pub async fn start() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (target, targets) = tokio::sync::watch::channel(None::<SocketAddr>);
        let (count, connections) = tokio::sync::watch::channel(0usize);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.send_modify(|n| *n += 1);
                let mut targets = targets.clone();
                tokio::spawn(async move {
                    let Ok(to) = targets.wait_for(Option::is_some).await.map(|t| t.unwrap()) else {
                        return;
                    };
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay {
            addr,
            target,
            connections,
        }
    }
}
