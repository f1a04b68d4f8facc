//! Rate-limit memory under a flood of distinct client addresses.
//!
//! Run: `cargo bench --bench limits` (or `-- N` for another count).
//! One Ingress's `limit-rps: 10` and `limit-connections: 5` (burst ×5), fed
//! 1,000,000 distinct source addresses (half IPv4, half IPv6) as fast as
//! one thread can, on the binary's allocator. Reported: RSS before and
//! after, the addresses the limits still remember, and the time per check.
//! A second pass repeats the flood to show the memory does not grow.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Instant;

use gatehouse::policy::rate_limit::{LimitConfig, Statuses};
use gatehouse::policy::Annotations;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let count: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let annotations = [
        ("nginx.ingress.kubernetes.io/limit-rps", "10"),
        ("nginx.ingress.kubernetes.io/limit-connections", "5"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut notes = Vec::new();
    let config = LimitConfig::parse(
        &Annotations::new(Some(&annotations), "gatehouse.dev"),
        &mut notes,
    )
    .expect("limits");
    let limits = Arc::new(config.compile(Statuses::default()));

    let before = rss_mib();
    for pass in 1..=2 {
        let started = Instant::now();
        let mut refused = 0u32;
        for i in 0..count {
            let client = if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
            } else {
                IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) + u128::from(i)))
            };
            match limits.admit(client, Instant::now()) {
                Ok(held) => drop(black_box(held)),
                Err(_) => refused += 1,
            }
        }
        let took = started.elapsed();
        println!(
            "pass {pass}: {count} distinct addresses in {:.2} s ({:.0} ns per check), {refused} refused; \
             remembered {}; RSS {before:.1} MiB before, {:.1} MiB after",
            took.as_secs_f64(),
            took.as_nanos() as f64 / f64::from(count),
            limits.remembered(),
            rss_mib(),
        );
    }
}

fn rss_mib() -> f64 {
    common::memory_mib().0
}
