//! Zero-drop hot swaps under load: clients keep requests flowing over
//! keep-alive HTTP/1.1 and HTTP/2 connections, and an upgraded connection
//! keeps echoing, while the routing table is swapped 500 times — endpoints
//! added and removed, the certificate rotated, other routes added and
//! removed. Not one request on the routes that stayed valid may fail.

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;

const SWAPS: usize = 500;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, ok: bool) {
        if ok { &self.ok } else { &self.failed }.fetch_add(1, Ordering::Relaxed);
    }
}

fn slice(endpoints: &[SocketAddr]) -> String {
    let addresses: Vec<String> = endpoints
        .iter()
        .map(|a| format!("\"{}\"", a.ip()))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: stable-1\n  namespace: test\n  labels: {{kubernetes.io/service-name: stable}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints:\n- addresses: [{}]\n",
        endpoints[0].port(),
        addresses.join(", ")
    )
}

async fn h1_client(
    addr: SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    while !stop.load(Ordering::Relaxed) {
        // A new connection (and TLS handshake) every 25 requests.
        let (mut conn, _) = https_connect(addr, "stable.test", &ca).await;
        for _ in 0..25 {
            let ok = matches!(send(&mut conn, "stable.test", "/").await, Ok(r) if r.status == StatusCode::OK);
            tally.count(ok);
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

async fn h2_client(
    addr: SocketAddr,
    ca: rustls::pki_types::CertificateDer<'static>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let (mut sender, _) = h2_connect(addr, "stable.test", &ca).await;
    while !stop.load(Ordering::Relaxed) {
        let req = Request::get("https://stable.test/")
            .body(Full::<Bytes>::default())
            .expect("request");
        let ok = match sender.send_request(req).await {
            Ok(response) => {
                let status = response.status();
                http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .is_ok()
                    && status == StatusCode::OK
            }
            Err(_) => false,
        };
        tally.count(ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_fails_while_the_table_is_swapped_500_times() {
    let a = Backend::start("a").await;
    let a2 = Backend::start_on(SocketAddr::from(([127, 0, 0, 5], a.addr.port())), "a2").await;
    let other = Backend::start("other").await;
    let pki = Pki::new();
    let leaves = [pki.leaf("stable.test"), pki.leaf("stable.test")];

    let dir = tempfile::tempdir().expect("tempdir");
    let base = [
        INGRESS_CLASS.to_owned(),
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: stable, namespace: test}\nspec:\n  ports: [{name: http, port: 80}]\n".to_owned(),
        service("other", &[other.addr]),
        ingress("stable", "stable.test", "/", "stable", Some("stable-tls")),
        ingress("ws", "ws.test", "/", "stable", None),
    ];
    std::fs::write(dir.path().join("base.yaml"), base.concat()).expect("write");
    let slice_file = dir.path().join("slice.yaml");
    let secret_file = dir.path().join("secret.yaml");
    let churn_file = dir.path().join("churn.yaml");
    std::fs::write(&slice_file, slice(&[a.addr])).expect("write");
    std::fs::write(&secret_file, tls_secret("stable-tls", &leaves[0])).expect("write");
    let gatehouse = gatehouse::app::start(config_for(dir.path()))
        .await
        .expect("start");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for i in 0..8 {
        let (stop, tally, ca) = (stop.clone(), tally.clone(), pki.ca.clone());
        let addr = gatehouse.https_addr;
        clients.push(if i % 2 == 0 {
            tokio::spawn(h1_client(addr, ca, stop, tally))
        } else {
            tokio::spawn(h2_client(addr, ca, stop, tally))
        });
    }
    let echoes = Arc::new(Tally::default());
    let websocket = {
        let (stop, echoes) = (stop.clone(), echoes.clone());
        let addr = gatehouse.http_addr;
        tokio::spawn(async move {
            let mut stream = open_upgrade(addr, "ws.test").await;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let message = format!("message {n}");
                let echoed = tokio::time::timeout(
                    Duration::from_secs(5),
                    echo(&mut stream, message.as_bytes()),
                )
                .await;
                echoes.count(matches!(echoed, Ok(ref back) if back == message.as_bytes()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut swaps = 0;
    for i in 0..SWAPS {
        let before = gatehouse.table.load_full();
        match i % 3 {
            0 => {
                let endpoints: &[SocketAddr] = if i % 2 == 0 {
                    &[a.addr, a2.addr]
                } else {
                    &[a.addr]
                };
                write_atomically(&slice_file, &slice(endpoints));
            }
            1 => write_atomically(&secret_file, &tls_secret("stable-tls", &leaves[i % 2])),
            _ => {
                let churn = if i % 2 == 0 {
                    ingress(
                        &format!("churn-{i}"),
                        &format!("churn-{i}.test"),
                        "/",
                        "other",
                        None,
                    )
                } else {
                    String::new()
                };
                write_atomically(&churn_file, &churn);
            }
        }
        // A missing swap is counted here and reported after the traffic stops.
        let (within, every) = (Duration::from_secs(2), Duration::from_millis(1));
        let swapped = poll::until(within, every, async || {
            !Arc::ptr_eq(&before, &gatehouse.table.load_full())
        });
        if swapped.await.is_ok() {
            swaps += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client");
    }
    websocket.await.expect("websocket");

    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let (echoed, lost) = (
        echoes.ok.load(Ordering::Relaxed),
        echoes.failed.load(Ordering::Relaxed),
    );
    eprintln!("{swaps} swaps; {ok} requests ok, {failed} failed; {echoed} echoes ok, {lost} lost");
    assert_eq!(swaps, SWAPS, "every change must produce a swap");
    assert_eq!(failed, 0, "requests failed during swaps ({ok} succeeded)");
    assert!(ok > 1000, "too little traffic to mean anything: {ok}");
    assert_eq!(lost, 0, "the upgraded connection dropped messages");
    assert!(echoed > 50, "the upgraded connection barely ran: {echoed}");
}
