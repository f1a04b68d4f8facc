//! Discovery of the Gateway API: which of its kinds the API server serves,
//! at start and whenever its CRDs come, change or go, so that its watches
//! start and stop without a restart (`gateway_watches`).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Change, Kind, Stream};
use crate::gateway;

/// Which Gateway API kinds the API server serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GatewayApi {
    /// GatewayClass, Gateway and HTTPRoute (v1).
    pub routes: bool,
    /// GRPCRoute (v1).
    pub grpc: bool,
    /// ReferenceGrant (v1beta1, served by every release that has it).
    pub grants: bool,
}

/// Asks the API server (discovery) which Gateway API kinds it serves. Not
/// served, or not readable: none, said once in the log.
pub async fn discover_gateway_api(client: &Client) -> GatewayApi {
    let found = gateway_api_served(client).await;
    log(found);
    found
}

fn log(found: GatewayApi) {
    if found.routes {
        let GatewayApi { grants, grpc, .. } = found;
        tracing::info!(target: "gatehouse::source", grants, grpc, "the Gateway API is served: watching GatewayClasses, Gateways and HTTPRoutes beside the Ingresses");
    } else {
        tracing::info!(target: "gatehouse::source", "the Gateway API is not served (its CRDs are not installed): serving Ingresses only, until they are");
    }
}

/// How often discovery is asked again whatever the CRDs' watch says (it
/// may not be allowed to watch them).
const REDISCOVER: Duration = Duration::from_secs(60);

/// How soon discovery is asked again when it does not agree with the
/// CRDs yet (a CRD just created is served once established), and how many
/// times.
const SETTLE: Duration = Duration::from_secs(1);
const SETTLE_TRIES: u32 = 30;

/// The CRDs without which the Gateway API is not served.
const ROUTE_CRDS: [&str; 3] = ["gatewayclasses", "gateways", "httproutes"];

/// Follows what the API server serves of the Gateway API, from `known`
/// on, and sends it (`Change::GatewayApi`) each time it changes.
///
/// A watch of the CustomResourceDefinitions, metadata only (their names:
/// a CRD's schema can be hundreds of kilobytes), says when one of the
/// group's comes, changes or goes; discovery, which says what is
/// actually served, is asked then, again shortly while it does not agree
/// with the CRDs, and once a minute anyway, so that a cluster whose RBAC
/// does not allow watching CRDs still follows, a minute late. Without
/// `watch_crds` (`--watch-namespace`: nothing cluster-wide is asked for
/// but IngressClasses, which a Role per namespace allows), discovery once
/// a minute is all.
pub(super) fn spawn_follower(
    client: Client,
    watch_crds: bool,
    mut known: GatewayApi,
    tx: mpsc::UnboundedSender<(Stream, Change)>,
) {
    tokio::spawn(async move {
        let api = Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client.clone());
        // (Never ends: the watch retries forever, and discovery is asked
        // once a minute whatever becomes of it.)
        let events = match watch_crds {
            true => watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed(),
            false => futures_util::stream::empty().boxed(),
        }
        .chain(futures_util::stream::pending());
        futures_util::pin_mut!(events);
        let mut crds = GroupCrds::default();
        let mut next = Instant::now() + REDISCOVER;
        let mut settling = 0;
        loop {
            let look = tokio::select! {
                Some(event) = events.next() => crds.apply(event),
                _ = tokio::time::sleep_until(next) => Look::Again,
            };
            match look {
                Look::Not => continue,
                Look::Changed => settling = SETTLE_TRIES,
                Look::Listed | Look::Again => {}
            }
            let found = gateway_api_served(&client).await;
            // Discovery lags the CRDs a little: ask again soon until it agrees.
            next = if crds.disagree(found) && settling > 0 {
                settling -= 1;
                Instant::now() + SETTLE
            } else {
                Instant::now() + REDISCOVER
            };
            if found != known {
                known = found;
                log(found);
                // (The stream is not read for this change.)
                let stream = Stream {
                    kind: Kind::GatewayClass,
                    index: 0,
                };
                if tx.send((stream, Change::GatewayApi(found))).is_err() {
                    return;
                }
            }
        }
    });
}

/// Whether to ask discovery.
enum Look {
    Not,
    /// The CRDs were listed.
    Listed,
    /// One of the group's CRDs came, changed or went.
    Changed,
    /// The time to ask again came.
    Again,
}

/// The Gateway API's CRDs, by name, as the watch of every CRD lists them.
#[derive(Default)]
struct GroupCrds {
    names: BTreeSet<String>,
    relist: Option<BTreeSet<String>>,
    listed: bool,
    healthy: bool,
}

type CrdEvent = watcher::Result<watcher::Event<PartialObjectMeta<CustomResourceDefinition>>>;

impl GroupCrds {
    fn apply(&mut self, event: CrdEvent) -> Look {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                if self.healthy {
                    tracing::warn!(target: "gatehouse::source", "cannot watch CustomResourceDefinitions (Gateway API CRDs installed or removed are noticed within a minute); retrying with backoff: {e}");
                    self.healthy = false;
                }
                return Look::Not;
            }
        };
        if !self.healthy && self.listed {
            tracing::info!(target: "gatehouse::source", "CustomResourceDefinition watch restored");
        }
        self.healthy = true;
        let suffix = format!(".{}", gateway::GROUP);
        let ours = |crd: &PartialObjectMeta<CustomResourceDefinition>| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            name.ends_with(&suffix).then_some(name)
        };
        match event {
            watcher::Event::Init => self.relist = Some(BTreeSet::new()),
            watcher::Event::InitApply(crd) => {
                if let Some(name) = ours(&crd) {
                    self.relist.get_or_insert_with(BTreeSet::new).insert(name);
                }
            }
            watcher::Event::InitDone => {
                self.names = self.relist.take().unwrap_or_default();
                self.listed = true;
                return Look::Listed;
            }
            watcher::Event::Apply(crd) => {
                if let Some(name) = ours(&crd) {
                    self.names.insert(name);
                    return Look::Changed;
                }
            }
            watcher::Event::Delete(crd) => {
                if let Some(name) = ours(&crd) {
                    self.names.remove(&name);
                    return Look::Changed;
                }
            }
        }
        Look::Not
    }

    /// Whether the CRDs, as listed, say otherwise than discovery whether
    /// the routes are served.
    fn disagree(&self, found: GatewayApi) -> bool {
        let installed = ROUTE_CRDS.iter().all(|plural| {
            let name = format!("{plural}.{}", gateway::GROUP);
            self.names.contains(&name)
        });
        self.listed && self.healthy && installed != found.routes
    }
}

/// What discovery says of the Gateway API group, quietly.
async fn gateway_api_served(client: &Client) -> GatewayApi {
    let serves = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
                  names: &[&str]| {
        names
            .iter()
            .all(|n| list.resources.iter().any(|r| r.name == *n))
    };
    let v1 = client
        .list_api_group_resources(&format!("{}/v1", gateway::GROUP))
        .await;
    let routes = match &v1 {
        Ok(list) => serves(list, &["gatewayclasses", "gateways", "httproutes"]),
        Err(_) => false,
    };
    let grpc = routes && v1.as_ref().is_ok_and(|list| serves(list, &["grpcroutes"]));
    let grants = routes
        && client
            .list_api_group_resources(&format!("{}/v1beta1", gateway::GROUP))
            .await
            .is_ok_and(|list| serves(&list, &["referencegrants"]));
    GatewayApi {
        routes,
        grpc,
        grants,
    }
}
