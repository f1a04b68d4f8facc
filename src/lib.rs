//! Gatehouse: a Kubernetes Ingress controller with its own proxy.
//!
//! The flow of data, one folder per step:
//! `source` (files, kube) → `cluster::ClusterState` → `translate` (pure) →
//! `table::RouteTable` (immutable, swapped atomically) → `proxy`
//! (hyper + rustls), with `telemetry` beside them, and `admission`, the
//! webhook that asks translate about an object before it is stored. The value types several
//! of them share (`upstream`, `connection`, `tls`, `metrics`) sit below
//! them; docs/architecture.md has the module map, and no two top-level
//! modules import each other, directly or around a cycle.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod acme;
pub mod admission;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod connection;
pub mod controller;
pub mod gateway;
pub mod issuing;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod source;
pub mod status;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod translate;
pub mod upstream;
