//! Gatehouse's integration tests, in one binary.
//!
//! Every test links the whole controller (kube, rustls, hyper), so each
//! separate test binary costs a link and a quarter of a gigabyte on disk.
//! One binary keeps the suite's build small and quick. A new test file here
//! needs a `mod` line below. `tests/streaming.rs` stays a binary of its own:
//! it measures the resident memory of its process, which other tests running
//! beside it would disturb.

#[path = "../support/mod.rs"]
mod support;

mod access;
mod access_log_format;
mod acme_challenge;
mod acme_kube;
mod acme_pebble;
mod acme_replicas;
mod admission;
mod admission_managed;
mod affinity;
mod aliases;
mod alpn_h2;
mod annotation_coverage;
mod annotations;
mod canary;
mod cli;
mod client_cert;
mod config_map;
mod cors;
mod cross_namespace;
mod data_plane;
mod deploy;
mod error_pages;
mod external_auth;
mod forwarded;
mod gateway_api;
mod helm;
mod host_ownership;
mod hostile_clients;
mod hostile_http2;
mod hostile_tenants;
mod hostile_tls;
mod hot_change;
mod hot_swap;
mod incremental;
mod ingress_nginx_dashboards;
mod ingress_nginx_metrics;
mod kube_source;
mod kube_status;
mod limits;
mod module_layers;
mod next_upstream;
mod passthrough;
mod properties;
mod protective_snippets;
mod proxy;
mod proxy_protocol;
mod request_snapshot;
mod service_upstream;
mod snippets;
mod snippets_nginx;
mod streamed_body_limit;
mod telemetry;
mod tls_server_order;
mod traces;
mod translate_fixtures;
mod unread_body;
mod websocket_h2;
