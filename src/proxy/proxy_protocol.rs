//! PROXY protocol (HAProxy's, v1 text and v2 binary), read first on every
//! connection when `--proxy-protocol` is on: the load balancer in front
//! says who the client is, and that address is the client's everywhere
//! (source ranges, limits, `X-Forwarded-For`, `X-Real-IP`, logs).
//!
//! The header is peeked at, not read, until it is complete, then exactly
//! its bytes are consumed: whatever the client sent after it (a TLS
//! ClientHello, an HTTP request) stays in the socket for the next layer.
//! Load balancers send the header at once, in the connection's first
//! segment; a header not complete within the header-read timeout, or one
//! that does not parse, closes the connection.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// v2's fixed part plus room for its addresses and a few TLVs; longer
/// headers are refused.
const MAX_HEADER: usize = 1024;
/// How long to wait before looking again at a header still incomplete.
const RECHECK: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no complete PROXY protocol header in time")]
    TimedOut,
    #[error("not a PROXY protocol header")]
    Invalid,
    #[error("connection closed before the PROXY protocol header")]
    Closed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the header; returns the client address it names, or `None` when
/// it names none (a health check's `LOCAL`, or `UNKNOWN`: the peer's own
/// address stands).
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .unwrap_or(Err(ProxyHeaderError::TimedOut))
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let seen = stream.peek(&mut buf).await?;
        if seen == 0 {
            return Err(ProxyHeaderError::Closed);
        }
        match parse(&buf[..seen]) {
            Parsed::Done { len, client } => {
                // Consume exactly the header; what follows stays unread.
                stream.read_exact(&mut buf[..len]).await?;
                return Ok(client);
            }
            Parsed::Invalid => return Err(ProxyHeaderError::Invalid),
            Parsed::Incomplete if seen == MAX_HEADER => return Err(ProxyHeaderError::Invalid),
            Parsed::Incomplete => tokio::time::sleep(RECHECK).await,
        }
    }
}

enum Parsed {
    Done {
        len: usize,
        client: Option<SocketAddr>,
    },
    Incomplete,
    Invalid,
}

fn parse(bytes: &[u8]) -> Parsed {
    match HeaderResult::parse(bytes) {
        HeaderResult::V1(Ok(header)) => {
            use ppp::v1::Addresses;
            let client = match header.addresses {
                Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                Addresses::Unknown => None,
            };
            Parsed::Done {
                len: header.header.len(),
                client,
            }
        }
        HeaderResult::V2(Ok(header)) => {
            use ppp::v2::{Addresses, Command};
            let client = match (header.command, header.addresses) {
                (Command::Local, _) => None,
                (_, Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, _) => None,
            };
            Parsed::Done {
                len: header.len(),
                client,
            }
        }
        HeaderResult::V1(Err(e)) if e.is_incomplete() => Parsed::Incomplete,
        HeaderResult::V2(Err(e)) if e.is_incomplete() => Parsed::Incomplete,
        _ => Parsed::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_names_the_client_and_its_length_stops_at_crlf() {
        let bytes = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        match parse(bytes) {
            Parsed::Done { len, client } => {
                assert_eq!(&bytes[len..len + 3], b"GET");
                assert_eq!(client, Some("198.51.100.7:51234".parse().unwrap()));
            }
            _ => panic!("parsed"),
        }
        assert!(matches!(parse(b"PROXY TCP4 198.51"), Parsed::Incomplete));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Invalid));
    }

    #[test]
    fn v2_names_the_client_and_local_names_none() {
        use ppp::v2::{Builder, Command, Protocol, Version};
        let addresses: ppp::v2::Addresses = (
            "[2001:db8::7]:4000".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:443".parse::<SocketAddr>().unwrap(),
        )
            .into();
        let header =
            Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
                .build()
                .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        match parse(&bytes) {
            Parsed::Done { len, client } => {
                assert_eq!(len, header.len());
                assert_eq!(client, Some("[2001:db8::7]:4000".parse().unwrap()));
            }
            _ => panic!("parsed"),
        }
        assert!(matches!(parse(&header[..10]), Parsed::Incomplete));
    }
}
