//! Large bodies stream through with bounded memory, in both directions.
//! Its own test binary, so that the process's memory is this test's alone.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::*;

/// 128 MiB each way by default: twice the bound below, so that buffering a
/// whole body anywhere fails the test. `GATEHOUSE_STREAM_MIB=1024` runs the
/// same check with 1 GiB.
fn size() -> u64 {
    let mib = std::env::var("GATEHOUSE_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128u64);
    mib << 20
}
/// Growth of resident memory allowed during the transfers.
const MEMORY_BOUND: u64 = 64 << 20;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Samples RSS until dropped; `peak` holds the highest sample.
fn watch_memory() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(rss_bytes()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    (peak, sampler)
}

/// A request body of `size()` pattern bytes, generated as it is sent.
struct Upload {
    offset: u64,
    size: u64,
}

impl hyper::body::Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.offset >= self.size {
            return std::task::Poll::Ready(None);
        }
        let n = (self.size - self.offset).min(256 * 1024);
        let chunk: Vec<u8> = (self.offset..self.offset + n).map(pattern_byte).collect();
        self.offset += n;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(chunk)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.size - self.offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_with_bounded_memory() {
    let web = Backend::start("web").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = [
        INGRESS_CLASS.to_owned(),
        service("web", &[web.addr]),
        ingress_annotated(
            "big",
            "big.test",
            "/",
            "web",
            None,
            &[("nginx.ingress.kubernetes.io/proxy-body-size", "0")],
        ),
    ];
    std::fs::write(dir.path().join("all.yaml"), manifests.concat()).expect("write");
    let gatehouse = gatehouse::app::start(config_for(dir.path()))
        .await
        .expect("start");
    let size = size();
    let pattern: Vec<u8> = (0..size).map(pattern_byte).collect::<Vec<u8>>();
    let expected_sum = checksum(0, &pattern);
    drop(pattern);

    let before = rss_bytes();
    let (peak, sampler) = watch_memory();

    // Download: count and checksum as it arrives, holding nothing.
    let mut conn = http_connect(gatehouse.http_addr).await;
    conn.ready().await.expect("ready");
    let req = Request::get(format!("/bytes/{size}"))
        .header("host", "big.test")
        .body(http_body_util::Full::default())
        .expect("request");
    let response = conn.send_request(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (mut len, mut sum) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            len += data.len() as u64;
            sum = checksum(sum, &data);
        }
    }
    assert_eq!(len, size, "downloaded bytes");
    assert_eq!(sum, expected_sum, "downloaded checksum");

    // Upload: the backend counts and checksums as it reads.
    let stream = tokio::net::TcpStream::connect(gatehouse.http_addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = Request::post("/upload")
        .header("host", "big.test")
        .body(Upload { offset: 0, size })
        .expect("request");
    let response = sender.send_request(req).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let seen: serde_json::Value = serde_json::from_slice(
        &response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes(),
    )
    .expect("json");
    assert_eq!(seen["body_len"], size, "uploaded bytes");
    assert_eq!(seen["body_sum"], expected_sum, "uploaded checksum");

    sampler.abort();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "moved {} MiB each way; resident memory grew by {:.1} MiB",
        size >> 20,
        growth as f64 / (1 << 20) as f64
    );
    assert!(
        growth < MEMORY_BOUND,
        "resident memory grew by {} MiB moving {} MiB",
        growth >> 20,
        (2 * size) >> 20
    );
}
