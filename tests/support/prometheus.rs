//! A real Prometheus scraping Gatehouse's metrics address, queried through
//! its HTTP API.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http_get;

pub struct Prometheus {
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Whether `prometheus` is installed; if not, says why the calling test
    /// does nothing.
    pub fn installed(test: &str) -> bool {
        let found = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!("{test}: skipped: prometheus is not installed (apt-get install prometheus)");
        }
        found
    }

    /// Prometheus on a free port of 127.0.0.1, scraping `target`'s
    /// `/metrics` every second with the target `labels` a Kubernetes
    /// service discovery would add. Started again on another port when
    /// the one it was given was taken meanwhile.
    pub async fn start(target: SocketAddr, labels: &[(&str, &str)]) -> Prometheus {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Prometheus::try_start(target, labels).await {
                Ok(prometheus) => return prometheus,
                Err(e) => failures.push(e),
            }
        }
        panic!("prometheus did not start: {failures:#?}");
    }

    async fn try_start(target: SocketAddr, labels: &[(&str, &str)]) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}: \"{v}\""))
            .collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
- job_name: gatehouse
  static_configs:
  - targets: [\"{target}\"]
    labels: {{{}}}
",
            labels.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let mut running = Prometheus { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = running.child.try_wait() {
                return Err(format!("exited ({status}): {}", running.log()));
            }
            let ready = tokio::time::timeout(Duration::from_secs(1), try_get(addr, "/-/ready"));
            if let Ok(Some(status)) = ready.await {
                if status.is_success() {
                    return Ok(running);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready on {addr}: {}", running.log()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result vector (`data.result`).
    pub async fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let reply = http_get(self.addr, "prometheus", &path).await;
        let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON answer");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The values `label` takes in the series `selector` matches, as
    /// Grafana's `label_values(selector, label)` lists them.
    pub async fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        let path = format!(
            "/api/v1/label/{label}/values?match[]={}",
            percent_encode(selector)
        );
        let reply = http_get(self.addr, "prometheus", &path).await;
        let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON answer");
        assert_eq!(body["status"], "success", "{selector}: {body}");
        serde_json::from_value(body["data"].clone()).expect("label values")
    }

    /// `query` again until it returns series, for at most `within`.
    pub async fn query_until_found(&self, expr: &str, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(expr).await;
            if !result.is_empty() || Instant::now() > deadline {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The status of `GET path`, or `None` when nothing answers yet.
async fn try_get(addr: SocketAddr, path: &str) -> Option<http::StatusCode> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header(http::header::HOST, "prometheus")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .ok()?;
    Some(sender.send_request(req).await.ok()?.status())
}

/// A query parameter's value, with everything but unreserved characters
/// percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
