//! Discovery of the Gateway API: which of its kinds the API server serves
//! at start (they are watched only then), and a log line asking for a
//! restart when its CRDs are installed later.

use kube::Client;

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
    if found.routes {
        let GatewayApi { grants, grpc, .. } = found;
        tracing::info!(target: "gatehouse::source", grants, grpc, "the Gateway API is served: watching GatewayClasses, Gateways and HTTPRoutes beside the Ingresses");
    } else {
        tracing::info!(target: "gatehouse::source", "the Gateway API CRDs are not installed: serving Ingresses only (install them and restart to serve HTTPRoutes)");
        // Installed later, they are noticed (once a minute) and the
        // restart they need is asked for in the log.
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                if gateway_api_served(&client).await.routes {
                    tracing::warn!(target: "gatehouse::source", "the Gateway API CRDs are now installed: restart Gatehouse to serve HTTPRoutes");
                    return;
                }
            }
        });
    }
    found
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
