//! HTTP/2 clients that abuse the protocol, spoken frame by frame over
//! h2c (prior knowledge, on the plain listener): CONTINUATION, SETTINGS and
//! PING floods, an HPACK bomb, a stream window that never opens, and too
//! many streams at once. Each must be cut off or bounded, never buffered
//! without limit, and a well-behaved client is served meanwhile.

use crate::support;

use std::time::Duration;

use http::StatusCode;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header field as an HPACK literal without indexing (names lower case).
fn literal(name: &str, value: &str) -> Vec<u8> {
    let mut out = vec![0x00];
    for s in [name, value] {
        assert!(s.len() < 127, "short strings only");
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// The header block of `GET <path>` for `shop.test`.
fn get_block(path: &str) -> Vec<u8> {
    // :method GET (static 2), :scheme http (static 6).
    let mut block = vec![0x82, 0x86];
    block.extend(literal(":path", path));
    block.extend(literal(":authority", "shop.test"));
    block
}

/// A plain-listener connection past the preface, with our SETTINGS
/// (`settings`: id and value pairs) sent.
async fn h2c(addr: std::net::SocketAddr, settings: &[(u16, u32)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    stream.write_all(PREFACE).await.expect("preface");
    stream
        .write_all(&frame(SETTINGS, 0, 0, &payload))
        .await
        .expect("settings");
    stream
}

/// Reads one frame: type, flags, stream and payload; `None` at the end of
/// the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

/// Reads frames until one of `kind` on `stream_id` (or GOAWAY), for at
/// most five seconds; `what` names the frame awaited.
async fn until(
    stream: &mut TcpStream,
    kinds: &[u8],
    stream_id: u32,
    what: &str,
) -> (u8, u8, u32, Vec<u8>) {
    // Frames are read as they come, with barely a pause between them.
    let (within, every) = (Duration::from_secs(5), Duration::from_millis(1));
    poll::eventually_every(what, within, every, async || {
        let f = read_frame(stream).await?;
        (f.0 == GOAWAY || (kinds.contains(&f.0) && f.2 == stream_id)).then_some(f)
    })
    .await
}

/// Writes `chunk` until `total` bytes are out or the peer stops taking
/// them (a write blocked for two seconds, or an error); returns what was
/// written.
async fn pour(stream: &mut TcpStream, chunk: &[u8], total: usize) -> usize {
    let mut written = 0;
    while written < total {
        match tokio::time::timeout(Duration::from_secs(2), stream.write_all(chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    written
}

/// A TLS site `shop.test` over plain HTTP too.
async fn site() -> Site {
    let site = Site::builder().backend("web").await;
    site.manifests(ingress("shop", "shop.test", "/", "web", None))
        .start()
        .await
}

async fn others_are_served(gatehouse: &gatehouse::app::Running) {
    assert_eq!(
        status_of(gatehouse.http_addr, "shop.test").await,
        StatusCode::OK
    );
}

/// A well-formed exchange first: the framing helpers speak HTTP/2.
#[tokio::test]
async fn a_plain_exchange_frame_by_frame() {
    let site = site().await;
    let mut conn = h2c(site.gatehouse.http_addr, &[]).await;
    let headers = frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block("/hello"));
    conn.write_all(&headers).await.expect("headers");
    let (kind, _, _, _) = until(&mut conn, &[HEADERS], 1, "a response").await;
    assert_eq!(kind, HEADERS);
    let (kind, _, _, body) = until(&mut conn, &[DATA], 1, "a body").await;
    assert_eq!(kind, DATA);
    assert!(String::from_utf8_lossy(&body).contains("/hello"));
}

/// CVE-2024-27316 and its family: a header block that never ends, in
/// CONTINUATION frames. After a handful of frames the connection is ended
/// (GOAWAY ENHANCE_YOUR_CALM); what the client keeps sending is drained
/// by the lingering close, within its bound (10 s or 64 MiB), and never
/// held.
#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let site = site().await;
    let mut conn = h2c(site.gatehouse.http_addr, &[]).await;
    conn.write_all(&frame(HEADERS, 0, 1, &get_block("/")))
        .await
        .expect("headers");
    // 64 header fields per frame, ~2 KB.
    let fields: Vec<u8> = (0..64)
        .flat_map(|_| literal("x-flood", "aaaaaaaaaaaaaaaaaaaa"))
        .collect();
    let continuation = frame(CONTINUATION, 0, 1, &fields);
    for _ in 0..64 {
        if conn.write_all(&continuation).await.is_err() {
            break;
        }
    }
    let (kind, _, _, payload) = until(&mut conn, &[], 0, "a GOAWAY").await;
    assert_eq!(kind, GOAWAY);
    // ENHANCE_YOUR_CALM (11).
    assert_eq!(payload[4..8], [0, 0, 0, 11], "{payload:?}");
    // The rest of the flood is drained within the lingering close's bound.
    let sent = pour(&mut conn, &continuation, 256 << 20).await;
    assert!(sent < 80 << 20, "{sent} bytes taken after the GOAWAY");
    others_are_served(&site.gatehouse).await;
}

/// SETTINGS and PING floods: each asks for an answer; a client that never
/// reads them must not make Gatehouse queue answers without bound (it
/// stops reading, or closes).
#[tokio::test]
async fn settings_and_ping_floods_are_bounded() {
    let site = site().await;
    for flood in [
        frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]),
        frame(PING, 0, 0, b"pingping"),
    ] {
        let mut conn = h2c(site.gatehouse.http_addr, &[]).await;
        let burst: Vec<u8> = flood.repeat(4096);
        let sent = pour(&mut conn, &burst, 512 << 20).await;
        // Measured: 8–11 MB taken, then nothing (socket buffers and one
        // answer queued at a time).
        assert!(
            sent < 64 << 20,
            "{sent} bytes of frames asking for answers were taken"
        );
        drop(conn);
    }
    others_are_served(&site.gatehouse).await;
}

/// An HPACK bomb: one large header put in the dynamic table, then named
/// again and again by a one-byte index. The decoded list passes the
/// limit: the request is refused (431, or the stream reset), nothing is
/// forwarded, and the connection's other streams are served.
#[tokio::test]
async fn an_hpack_bomb_is_refused() {
    let site = site().await;
    let before = site.backend("web").seen.lock().expect("seen").len();
    let mut conn = h2c(site.gatehouse.http_addr, &[]).await;
    let mut block = get_block("/bomb");
    // Literal with incremental indexing, new name: x-bomb, 4000 bytes.
    block.push(0x40);
    block.push(6);
    block.extend_from_slice(b"x-bomb");
    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]); // length 4000 (127 + 3873)
    block.extend(std::iter::repeat_n(b'b', 4000));
    // Index 62 (the entry just added), 4000 times: 16 MB decoded.
    block.extend(std::iter::repeat_n(0xbe, 4000));
    for (i, chunk) in block.chunks(16_000).enumerate() {
        let last = (i + 1) * 16_000 >= block.len();
        let (kind, flags) = match (i, last) {
            (0, true) => (HEADERS, END_HEADERS | END_STREAM),
            (0, false) => (HEADERS, END_STREAM),
            (_, true) => (CONTINUATION, END_HEADERS),
            (_, false) => (CONTINUATION, 0),
        };
        if conn.write_all(&frame(kind, flags, 1, chunk)).await.is_err() {
            break;
        }
    }
    // A 431, the stream reset, or (h2's answer) the connection ended with
    // GOAWAY ENHANCE_YOUR_CALM.
    let answer = until(
        &mut conn,
        &[HEADERS, RST_STREAM],
        1,
        "an answer to the bomb",
    )
    .await;
    if let (HEADERS, _, _, payload) = &answer {
        // `:status` 431 is not in the static table: a literal, `431`.
        assert!(
            payload.windows(3).any(|w| w == b"431"),
            "the bomb was answered: {payload:?}"
        );
    }
    let after = site.backend("web").seen.lock().expect("seen").len();
    assert_eq!(after, before, "nothing reached the backend");
    others_are_served(&site.gatehouse).await;
}

/// A stream whose window never opens (SETTINGS_INITIAL_WINDOW_SIZE 0,
/// no WINDOW_UPDATE): Gatehouse cannot send the body, so it must stop
/// reading it from the upstream, not hold it. The upstream writes as fast
/// as it may; what it got out is bounded by the buffers in between.
#[tokio::test]
async fn a_stalled_stream_window_back_pressures_the_upstream() {
    let (upstream, written, _task) = endless_upstream().await;
    let manifests = INGRESS_CLASS.to_owned()
        + &service("big", &[upstream])
        + &ingress("big", "shop.test", "/", "big", None);
    let (_dir, gatehouse) = serve_manifests(&manifests).await;
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 0.
    let mut conn = h2c(gatehouse.http_addr, &[(4, 0)]).await;
    let headers = frame(HEADERS, END_HEADERS | END_STREAM, 1, &get_block("/big"));
    conn.write_all(&headers).await.expect("headers");
    until(&mut conn, &[HEADERS], 1, "the response head").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = written.load(std::sync::atomic::Ordering::Relaxed);
    // Measured: about 4 MB (the sockets' kernel buffers, autotuned up to
    // ~6 MB each on loopback, and the stream's). What matters is that it
    // stops.
    assert!(
        out < 32 << 20,
        "{out} bytes left the upstream for a stalled stream"
    );
    let later = {
        tokio::time::sleep(Duration::from_secs(1)).await;
        written.load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(
        later - out < 1 << 20,
        "the upstream kept going: {out} then {later}"
    );
    drop(conn);
}

/// More concurrent streams than SETTINGS_MAX_CONCURRENT_STREAMS allows:
/// the extra ones are refused (RST_STREAM REFUSED_STREAM, or the
/// connection ended), never queued without bound.
#[tokio::test]
async fn streams_beyond_the_concurrency_limit_are_refused() {
    let site = site().await;
    let mut conn = h2c(site.gatehouse.http_addr, &[]).await;
    // The server's SETTINGS first: its stream limit.
    let (kind, _, _, settings) = read_frame(&mut conn).await.expect("settings");
    assert_eq!(kind, SETTINGS);
    let limit = settings
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
        .expect("a SETTINGS_MAX_CONCURRENT_STREAMS");
    // Each stream asks for a slow answer, so all are open at once.
    let mut burst = Vec::new();
    for i in 0..limit + 50 {
        let id = 1 + 2 * i;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("/sleep/2000"),
        ));
    }
    conn.write_all(&burst).await.expect("streams");
    let refused = async {
        let mut refused = 0;
        while let Some((kind, _, _, payload)) = read_frame(&mut conn).await {
            match kind {
                // REFUSED_STREAM (7).
                RST_STREAM if payload == [0, 0, 0, 7] => refused += 1,
                GOAWAY => return None,
                _ => {}
            }
            if refused == 50 {
                break;
            }
        }
        Some(refused)
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("an answer to the extra streams");
    if let Some(refused) = refused {
        assert_eq!(refused, 50, "limit {limit}");
    }
    others_are_served(&site.gatehouse).await;
}
