//! A tenant's pathological Ingresses, for the test that shows they affect
//! only themselves (`hostile_tenants`) and the benchmark that times them
//! (`benches/pathological.rs`): ten thousand paths under a megabyte
//! annotation, a megabyte allowlist, and a regular expression past the size
//! limit; with `neighbours` ordinary Ingresses beside them, all in
//! namespace `test` behind Service `web` at `backend`.

pub fn manifests(backend: std::net::SocketAddr, neighbours: usize) -> String {
    let megabyte = "x".repeat(1 << 20);
    let mut paths = String::new();
    for i in 0..10_000 {
        paths += &format!(
            "      - {{path: /p{i}, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}\n"
        );
    }
    let ingress = |name: &str, host: &str, path: &str, annotations: &str| {
        format!(
            "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: test
  annotations: {{{annotations}}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: {host}
    http:
      paths:
      - {{path: \"{path}\", pathType: ImplementationSpecific, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
"
        )
    };
    let mut out = format!(
        "apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: gatehouse}}
spec: {{controller: gatehouse.dev/ingress-controller}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: test}}
spec:
  ports: [{{name: http, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: test
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, port: {port}}}]
endpoints:
- addresses: [\"{ip}\"]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: huge
  namespace: test
  annotations:
    nginx.ingress.kubernetes.io/cors-allow-origin: \"{megabyte}\"
spec:
  ingressClassName: gatehouse
  rules:
  - host: huge.test
    http:
      paths:
{paths}",
        port = backend.port(),
        ip = backend.ip(),
    );
    out += &ingress(
        "closed",
        "closed.test",
        "/",
        &format!("nginx.ingress.kubernetes.io/whitelist-source-range: \"{megabyte}\""),
    );
    out += &ingress(
        "regex",
        "regex.test",
        "/\\\\w{5000}",
        "nginx.ingress.kubernetes.io/use-regex: \"true\"",
    );
    out += &ingress("neighbour", "neighbour.test", "/", "");
    for i in 0..neighbours {
        out += &ingress(&format!("n{i}"), &format!("n{i}.test"), "/", "");
    }
    out
}
