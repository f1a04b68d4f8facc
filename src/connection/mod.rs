//! Connection facts shared by the table, policy and the proxy: the
//! connection a request arrived on and the client it names, and the
//! headers that tell the next hop about it.
//!
//! A leaf below the table and policy: it imports no other module of
//! Gatehouse.

pub mod headers;

pub use headers::{prepare_request, remove_hop_by_hop, ConnInfo};
