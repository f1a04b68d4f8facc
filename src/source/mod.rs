//! Sources: where the cluster's objects come from.
//!
//! A source publishes whole `ClusterState` snapshots on a `watch` channel;
//! the channel keeps only the newest, which is what coalesces bursts.

pub mod files;
pub mod kube;
pub mod manifest;

use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::ClusterState;

/// The receiving end every source feeds.
pub type StateReceiver = watch::Receiver<Arc<ClusterState>>;
