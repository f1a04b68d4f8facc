//! A request body the client is still sending when its response is
//! complete: a declared body over `proxy-body-size` (413 at once), or an
//! endpoint that answers without reading. The client must read its whole
//! answer before anything ends its upload, and the upload must then end
//! in bounded time: over HTTP/2 the stream is read on and then reset with
//! `NO_ERROR` (RFC 9113 §8.1), over HTTP/1.1 the connection is closed after
//! the response.
//!
//! A reset sent at once with the 413 used to reach curl in the same read
//! as the response, while it was still uploading; curl 7.x then reported
//! a stream error (92) instead of the 413.

use crate::support;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, SendStream};
use http::{Request, StatusCode};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The upper bound on every wait here: none of them is timed, this only
/// keeps a failure from hanging the suite.
const PATIENCE: Duration = Duration::from_secs(30);

/// More than the default `proxy-body-size` (1m), as in the report: a
/// 2 MB file sent with `curl --data-binary`.
const OVER_LIMIT: usize = 2_000_000;

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {PATIENCE:?}"))
}

/// An HTTP/2 client connection over `io`.
async fn h2_client<T>(io: T) -> SendRequest<Bytes>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io).await.expect("h2 handshake");
    tokio::spawn(connection);
    client
}

async fn h2c(addr: SocketAddr) -> SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    h2_client(tcp).await
}

async fn h2_tls(addr: SocketAddr) -> SendRequest<Bytes> {
    let (tls, _) = tls_connect(addr, "shop.test", tls_config(None, &[b"h2"]))
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2_client(tls).await
}

/// Why the server reset a stream we send on.
async fn reset_reason(send: &mut SendStream<Bytes>) -> Reason {
    match poll_fn(|cx| send.poll_reset(cx)).await {
        Ok(reason) => reason,
        Err(e) => e.reason().unwrap_or(Reason::INTERNAL_ERROR),
    }
}

/// Uploads `total` bytes (without end when `None`) as fast as the
/// server's window allows, as curl does. `Ok` once all was sent and the
/// stream ended; the reset's reason if the server reset the stream first.
async fn upload(mut send: SendStream<Bytes>, total: Option<usize>) -> Result<(), Reason> {
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let mut left = total.unwrap_or(usize::MAX);
    loop {
        send.reserve_capacity(chunk.len().min(left));
        let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(granted)) => granted.min(left),
            Some(Err(_)) | None => return Err(reset_reason(&mut send).await),
        };
        if granted == 0 {
            continue;
        }
        left -= granted;
        let last = total.is_some() && left == 0;
        if send.send_data(chunk.slice(..granted), last).is_err() {
            return Err(reset_reason(&mut send).await);
        }
        if last {
            return Ok(());
        }
    }
}

/// Starts a POST to `shop.test` that declares `length` (or none), and its
/// upload of that many bytes (endless without a length).
async fn post(
    client: &mut SendRequest<Bytes>,
    length: Option<usize>,
) -> (
    h2::client::ResponseFuture,
    tokio::task::JoinHandle<Result<(), Reason>>,
) {
    let mut request = Request::post("https://shop.test/");
    if let Some(length) = length {
        request = request.header(http::header::CONTENT_LENGTH, length);
    }
    let request = request.body(()).expect("request");
    within("the client's window for a stream", client.clone().ready())
        .await
        .expect("ready");
    let (response, send) = client.send_request(request, false).expect("send");
    (response, tokio::spawn(upload(send, length)))
}

/// Awaits a response and reads its body to the end (the DATA frame with
/// END_STREAM): any reset before that is an error here.
async fn whole_response(response: h2::client::ResponseFuture) -> (StatusCode, Bytes) {
    let response = within("the response head", response)
        .await
        .expect("a response head, not a reset");
    let status = response.status();
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(data) = within("the response body", body.data()).await {
        let data = data.expect("the response body to its end, not a reset");
        let _ = body.flow_control().release_capacity(data.len());
        got.extend_from_slice(&data);
    }
    (status, Bytes::from(got))
}

/// A GET on the same connection, answered 200: the connection is usable.
async fn still_serves(client: &mut SendRequest<Bytes>) {
    within("a second stream", client.clone().ready())
        .await
        .expect("ready");
    let request = Request::get("https://shop.test/").body(()).expect("get");
    let (response, _) = client.send_request(request, true).expect("send");
    let (status, _) = whole_response(response).await;
    assert_eq!(status, StatusCode::OK, "the connection serves on");
}

#[tokio::test]
async fn an_http2_413_is_read_whole_and_the_client_may_finish_its_upload() {
    let site = Site::one_route("shop", "shop.test", &[])
        .await
        .start()
        .await;
    let (plain, tls) = (site.gatehouse.http_addr, site.gatehouse.https_addr);
    for (transport, mut client) in [("h2c", h2c(plain).await), ("TLS", h2_tls(tls).await)] {
        let (response, uploading) = post(&mut client, Some(OVER_LIMIT)).await;
        let (status, body) = whole_response(response).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{transport}");
        assert!(!body.is_empty(), "{transport}: the 413 has its text");
        // The server reads on after its answer: the client, still
        // uploading when the 413 came, ends its stream itself.
        let uploaded = within("the upload", uploading).await.expect("upload task");
        assert_eq!(
            uploaded,
            Ok(()),
            "{transport}: the stream was reset while the client was still sending"
        );
        still_serves(&mut client).await;
    }
}

/// Runs `curl` with `args` and returns its exit code and the status it
/// printed; `None` when there is no curl on this machine.
async fn curl(args: Vec<String>) -> Option<(i32, String)> {
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--output", "/dev/null"])
            .args(["--write-out", "%{http_code}", "--max-time", "30"])
            .args(&args)
            .output()
    });
    let output = run.await.expect("curl task").ok()?;
    let status = String::from_utf8_lossy(&output.stdout).into_owned();
    Some((output.status.code().unwrap_or(-1), status))
}

#[tokio::test]
async fn curl_reads_the_http2_413_of_an_upload_over_the_limit() {
    let site = Site::one_route("shop", "shop.test", &[])
        .await
        .start()
        .await;
    let file = site.dir.path().join("2MB");
    std::fs::write(&file, vec![b'x'; OVER_LIMIT]).expect("upload file");
    let data = format!("@{}", file.display());
    let (plain, tls) = (site.gatehouse.http_addr, site.gatehouse.https_addr);
    let h2c = vec![
        "--http2-prior-knowledge".to_owned(),
        "--header".to_owned(),
        "host: shop.test".to_owned(),
        format!("http://{plain}/"),
    ];
    let over_tls = vec![
        "--http2".to_owned(),
        "--insecure".to_owned(),
        "--resolve".to_owned(),
        format!("shop.test:{}:127.0.0.1", tls.port()),
        format!("https://shop.test:{}/", tls.port()),
    ];
    for (transport, args) in [("h2c", h2c), ("TLS", over_tls)] {
        for _ in 0..3 {
            let mut args = args.clone();
            args.extend(["--data-binary".to_owned(), data.clone()]);
            let Some((code, status)) = curl(args).await else {
                eprintln!("curl is not installed here: skipping the curl check");
                return;
            };
            assert_eq!(
                (code, status.as_str()),
                (0, "413"),
                "{transport}: curl's exit code and the status it read"
            );
        }
    }
}

/// An HTTP/2 (gRPC-style) endpoint that answers at once and never reads
/// the request body, nor resets its stream: the upload's stream stays open
/// on its side, as a handler that ignores the body leaves it.
async fn answers_without_reading() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(tcp).await else {
                    return;
                };
                let mut unread = Vec::new();
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let response = http::Response::builder()
                        .header(http::header::CONTENT_LENGTH, 9)
                        .body(())
                        .expect("response");
                    if let Ok(mut send) = respond.send_response(response, false) {
                        let _ = send.send_data(Bytes::from_static(b"answered\n"), true);
                    }
                    // Held, never read.
                    unread.push(request.into_body());
                }
            });
        }
    });
    (addr, task)
}

async fn unread_site() -> (Site, tokio::task::JoinHandle<()>) {
    let (endpoint, task) = answers_without_reading().await;
    let grpc = ("nginx.ingress.kubernetes.io/backend-protocol", "GRPC");
    let site = Site::builder()
        .endpoint("deaf", endpoint)
        .manifests(ingress_annotated(
            "shop",
            "shop.test",
            "/",
            "deaf",
            None,
            &[grpc],
        ))
        .start()
        .await;
    (site, task)
}

#[tokio::test]
async fn an_http2_upload_nobody_reads_is_reset_with_no_error_after_its_response() {
    let (site, _endpoint) = unread_site().await;
    let mut client = h2c(site.gatehouse.http_addr).await;
    let (response, uploading) = post(&mut client, None).await;
    let (status, body) = whole_response(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "answered\n", "the response, whole");
    let ended = within("the end of the unread upload", uploading)
        .await
        .expect("upload task");
    assert_eq!(
        ended,
        Err(Reason::NO_ERROR),
        "after its response, the endless upload is reset with NO_ERROR"
    );
    still_serves(&mut client).await;
}

#[tokio::test]
async fn an_http1_upload_nobody_reads_ends_with_the_connection_after_its_response() {
    let (site, _endpoint) = unread_site().await;
    let stream = tokio::net::TcpStream::connect(site.gatehouse.http_addr)
        .await
        .expect("connect");
    let (mut reading, mut writing) = stream.into_split();
    let head = "POST / HTTP/1.1\r\nhost: shop.test\r\ntransfer-encoding: chunked\r\n\r\n";
    writing.write_all(head.as_bytes()).await.expect("head");
    let uploading = tokio::spawn(async move {
        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
        while writing.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match within("the response, then the close", reading.read(&mut buf)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nanswered\n"),
        "the whole response, then the close: {answer}"
    );
    uploading.abort();
}
