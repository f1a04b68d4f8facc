//! service-upstream end to end: traffic goes to the Service's ClusterIP and
//! port, not to its endpoints.

use crate::support;

use http::StatusCode;
use support::*;

#[tokio::test]
async fn requests_go_to_the_cluster_ip_not_the_endpoints() {
    let backend = Backend::start("through-cluster-ip").await;
    let closed = closed_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The Service's ClusterIP is where the backend listens; its only
    // endpoint is a closed port.
    let service = format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: test}}
spec:
  clusterIP: 127.0.0.1
  ports: [{{name: http, port: {port}, targetPort: {closed}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: test, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: {closed}}}]
endpoints: [{{addresses: [\"127.0.0.1\"]}}]
",
        port = backend.addr.port()
    );
    let ingress = ingress_annotated(
        "web",
        "web.test",
        "/",
        "web",
        None,
        &[("nginx.ingress.kubernetes.io/service-upstream", "true")],
    )
    .replace("number: 80", &format!("number: {}", backend.addr.port()));
    std::fs::write(
        dir.path().join("all.yaml"),
        [INGRESS_CLASS, service.as_str(), ingress.as_str()].concat(),
    )
    .expect("write");
    let gatehouse = start_gatehouse(dir.path()).await;
    let reply = http_get(gatehouse.http_addr, "web.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.backend(), "through-cluster-ip");
}
