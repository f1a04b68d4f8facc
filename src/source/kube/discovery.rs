//! Discovery of the kinds that CRDs define, group by group (the Gateway
//! API, and `AcmeIssuer`): which of them the API server serves, at start
//! and whenever their CRDs come, change or go, so that their watches start
//! and stop without a restart (`crd_watches`).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Change, Kind, Stream};
use crate::acme::AcmeIssuer;
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

/// What the API server serves of the kinds CRDs define.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub gateway_api: GatewayApi,
    /// `AcmeIssuer` (`gatehouse.dev/v1alpha1`).
    pub acme_issuers: bool,
}

/// A group of kinds whose CRDs may be installed or removed while
/// Gatehouse runs; each has its watches, started and stopped together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Group {
    GatewayApi,
    AcmeIssuers,
}

impl Group {
    pub(super) const ALL: [Group; 2] = [Group::GatewayApi, Group::AcmeIssuers];

    /// Whether a CRD, by name, is one of the group's.
    fn defines(self, crd: &str) -> bool {
        match self {
            Group::GatewayApi => crd.ends_with(&format!(".{}", gateway::GROUP)),
            Group::AcmeIssuers => crd == acme_issuers_crd(),
        }
    }

    /// Whether `installed` holds every CRD without which the group is not
    /// served.
    fn installed(self, installed: &BTreeSet<String>) -> bool {
        match self {
            Group::GatewayApi => ROUTE_CRDS.iter().all(|plural| {
                let name = format!("{plural}.{}", gateway::GROUP);
                installed.contains(&name)
            }),
            Group::AcmeIssuers => installed.contains(&acme_issuers_crd()),
        }
    }
}

impl Served {
    /// What of this the watches of `group` are for; the other groups'
    /// part is left at its default (not served).
    pub(super) fn of(self, group: Group) -> Served {
        match group {
            Group::GatewayApi => Served {
                gateway_api: self.gateway_api,
                ..Served::default()
            },
            Group::AcmeIssuers => Served {
                acme_issuers: self.acme_issuers,
                ..Served::default()
            },
        }
    }

    /// Whether `group` is served (its watches run).
    pub(super) fn serves(self, group: Group) -> bool {
        match group {
            Group::GatewayApi => self.gateway_api.routes,
            Group::AcmeIssuers => self.acme_issuers,
        }
    }
}

/// The name of the `AcmeIssuer` CRD.
fn acme_issuers_crd() -> String {
    format!("{}.{}", AcmeIssuer::plural(&()), AcmeIssuer::group(&()))
}

/// Asks the API server (discovery) which of the kinds CRDs define it
/// serves. Not served, or not readable: none, said once per group in the
/// log.
pub async fn discover(client: &Client) -> Served {
    let found = served(client).await;
    for group in Group::ALL {
        log(group, found);
    }
    found
}

fn log(group: Group, found: Served) {
    match (group, found.serves(group)) {
        (Group::GatewayApi, true) => {
            let GatewayApi { grants, grpc, .. } = found.gateway_api;
            tracing::info!(target: "gatehouse::source", grants, grpc, "the Gateway API is served: watching GatewayClasses, Gateways and HTTPRoutes beside the Ingresses");
        }
        (Group::GatewayApi, false) => {
            tracing::info!(target: "gatehouse::source", "the Gateway API is not served (its CRDs are not installed): serving Ingresses only, until they are");
        }
        (Group::AcmeIssuers, true) => {
            tracing::info!(target: "gatehouse::source", "AcmeIssuers are served: watching them");
        }
        (Group::AcmeIssuers, false) => {
            tracing::info!(target: "gatehouse::source", "AcmeIssuers are not served (the CRD acmeissuers.gatehouse.dev is not installed): no ACME certificates are ordered, until it is");
        }
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

/// Follows what the API server serves of the kinds CRDs define, from
/// `known` on, and sends it (`Change::Served`) each time it changes.
///
/// A watch of the CustomResourceDefinitions, metadata only (their names:
/// a CRD's schema can be hundreds of kilobytes), says when one of the
/// groups' comes, changes or goes; discovery, which says what is
/// actually served, is asked then, again shortly while it does not agree
/// with the CRDs, and once a minute anyway, so that a cluster whose RBAC
/// does not allow watching CRDs still follows, a minute late. Without
/// `watch_crds` (`--watch-namespace`: nothing cluster-wide is asked for
/// but IngressClasses, which a Role per namespace allows), discovery once
/// a minute is all.
pub(super) fn spawn_follower(
    client: Client,
    watch_crds: bool,
    mut known: Served,
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
            let found = served(&client).await;
            // Discovery lags the CRDs a little: ask again soon until it agrees.
            next = if crds.disagree(found) && settling > 0 {
                settling -= 1;
                Instant::now() + SETTLE
            } else {
                Instant::now() + REDISCOVER
            };
            if found != known {
                for group in Group::ALL
                    .into_iter()
                    .filter(|g| found.of(*g) != known.of(*g))
                {
                    log(group, found);
                }
                known = found;
                // (The stream is not read for this change.)
                let stream = Stream {
                    kind: Kind::GatewayClass,
                    index: 0,
                };
                if tx.send((stream, Change::Served(found))).is_err() {
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
    /// One of the groups' CRDs came, changed or went.
    Changed,
    /// The time to ask again came.
    Again,
}

/// The CRDs of the groups followed, by name, as the watch of every CRD
/// lists them.
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
                    tracing::warn!(target: "gatehouse::source", "cannot watch CustomResourceDefinitions (Gateway API and AcmeIssuer CRDs installed or removed are noticed within a minute); retrying with backoff: {e}");
                    self.healthy = false;
                }
                return Look::Not;
            }
        };
        if !self.healthy && self.listed {
            tracing::info!(target: "gatehouse::source", "CustomResourceDefinition watch restored");
        }
        self.healthy = true;
        let ours = |crd: &PartialObjectMeta<CustomResourceDefinition>| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Group::ALL
                .iter()
                .any(|group| group.defines(&name))
                .then_some(name)
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
    /// a group is served.
    fn disagree(&self, found: Served) -> bool {
        let differ = |group: Group| group.installed(&self.names) != found.serves(group);
        self.listed && self.healthy && Group::ALL.into_iter().any(differ)
    }
}

/// What discovery says of every group followed, quietly.
async fn served(client: &Client) -> Served {
    Served {
        gateway_api: gateway_api_served(client).await,
        acme_issuers: acme_issuers_served(client).await,
    }
}

/// Whether a discovered group version lists every resource of `names`.
fn serves(list: &APIResourceList, names: &[&str]) -> bool {
    names
        .iter()
        .all(|n| list.resources.iter().any(|r| r.name == *n))
}

/// What discovery says of the Gateway API group, quietly.
async fn gateway_api_served(client: &Client) -> GatewayApi {
    let v1 = client
        .list_api_group_resources(&format!("{}/v1", gateway::GROUP))
        .await;
    let routes = match &v1 {
        Ok(list) => serves(list, &ROUTE_CRDS),
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

/// What discovery says of `AcmeIssuer`'s group version.
async fn acme_issuers_served(client: &Client) -> bool {
    let plural = AcmeIssuer::plural(&());
    client
        .list_api_group_resources(&AcmeIssuer::api_version(&()))
        .await
        .is_ok_and(|list| serves(&list, &[&plural]))
}
