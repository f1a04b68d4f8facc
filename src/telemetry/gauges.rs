//! The table's gauges: endpoints per backend, warnings by kind, and
//! certificate expiry per host, published from each new table.
//!
//! They read the route table, so they live here above it rather than with
//! the metric families (`crate::metrics`), which the table's routes carry.

use std::sync::Arc;

use crate::metrics::{BackendLabels, CertLabels, Metrics, WarningLabels};
use crate::table::{CertEntry, HostPattern, Route, RouteTable};
use crate::translate::Warning;
use crate::upstream::{Action, Backend, Upstream};

impl Metrics {
    /// The table's gauges: endpoints per backend, warnings by kind, and
    /// certificate expiry per host. The first time (and with a fresh
    /// `published`) every series; then by difference with the table
    /// published before: a pointer comparison per host, and series
    /// written only for the hosts that changed.
    pub fn observe_table(
        &self,
        table: &Arc<RouteTable>,
        warnings: &[Warning],
        published: &mut Published,
    ) {
        match published.table.take() {
            Some(before) => self.publish_difference(&before, table, published),
            None => self.publish_whole(table, published),
        }
        published.table = Some(table.clone());

        self.warnings.clear();
        for warning in warnings {
            let kind = serde_json::to_value(warning.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            self.warnings.get_or_create(&WarningLabels { kind }).inc();
        }
    }

    fn publish_whole(&self, table: &RouteTable, published: &mut Published) {
        self.backend_endpoints.clear();
        published.backends.clear();
        for route in table.iter_routes() {
            published.add(self, route);
        }
        self.cert_expiry.clear();
        if let Some(compat) = &self.ingress_nginx {
            compat.clear_ssl_expiry();
        }
        for (host, entry) in table.certs.iter() {
            self.set_cert(&host, entry);
        }
    }

    fn publish_difference(
        &self,
        before: &RouteTable,
        table: &RouteTable,
        published: &mut Published,
    ) {
        let diff = before.differences(table);
        // Every route that went first, so that a backend still in use
        // after the change keeps its series.
        for (gone, _) in &diff.routes {
            for route in gone.iter() {
                published.remove(self, route);
            }
        }
        for (_, came) in &diff.routes {
            for route in came.iter() {
                published.add(self, route);
            }
        }
        for (host, gone, came) in diff.certs {
            if let Some(entry) = gone {
                self.cert_expiry.remove(&cert_labels(&host, entry));
                if let Some(compat) = &self.ingress_nginx {
                    compat.remove_ssl_expiry(host.to_string(), secret(entry));
                }
            }
            if let Some(entry) = came {
                self.set_cert(&host, entry);
            }
        }
        // Endpoints replaced in place (a rolling update) change no route.
        published.refresh(self);
    }

    fn set_cert(&self, host: &HostPattern, entry: &CertEntry) {
        if let Some(not_after) = entry.not_after {
            let labels = cert_labels(host, entry);
            self.cert_expiry.get_or_create(&labels).set(not_after);
            if let Some(compat) = &self.ingress_nginx {
                compat.set_ssl_expiry(labels.host, secret(entry), not_after);
            }
        }
    }
}

fn secret(entry: &CertEntry) -> (&str, &str) {
    (&entry.secret.namespace, &entry.secret.name)
}

fn cert_labels(host: &HostPattern, entry: &CertEntry) -> CertLabels {
    CertLabels {
        host: host.to_string(),
        secret: entry.secret.to_string(),
    }
}

/// What the published gauges were computed from: the table, and how many
/// of its routes forward to each backend (a backend's series goes when
/// the last route to it does), with the backend and the count published.
#[derive(Default)]
pub struct Published {
    table: Option<Arc<RouteTable>>,
    backends: std::collections::HashMap<BackendLabels, PublishedBackend>,
}

struct PublishedBackend {
    routes: usize,
    backend: Arc<Backend>,
    endpoints: i64,
}

impl Published {
    fn labels(route: &Route) -> Option<(BackendLabels, &Arc<Backend>)> {
        let Action::Forward(backend) = &route.action else {
            return None;
        };
        let labels = BackendLabels {
            namespace: backend.service.namespace.clone(),
            service: backend.service.name.clone(),
            port: backend.port.clone(),
        };
        Some((labels, backend))
    }

    fn endpoints(backend: &Backend) -> i64 {
        match &*backend.upstream() {
            Upstream::Endpoints(set) => set.addrs().len() as i64,
            Upstream::External(_) => 1,
        }
    }

    fn add(&mut self, metrics: &Metrics, route: &Route) {
        let Some((labels, backend)) = Self::labels(route) else {
            return;
        };
        let endpoints = Self::endpoints(backend);
        metrics
            .backend_endpoints
            .get_or_create(&labels)
            .set(endpoints);
        let entry = self
            .backends
            .entry(labels)
            .or_insert_with(|| PublishedBackend {
                routes: 0,
                backend: backend.clone(),
                endpoints,
            });
        entry.routes += 1;
        entry.backend = backend.clone();
        entry.endpoints = endpoints;
    }

    fn remove(&mut self, metrics: &Metrics, route: &Route) {
        let Some((labels, _)) = Self::labels(route) else {
            return;
        };
        if let Some(entry) = self.backends.get_mut(&labels) {
            entry.routes -= 1;
            if entry.routes == 0 {
                self.backends.remove(&labels);
                metrics.backend_endpoints.remove(&labels);
            }
        }
    }

    /// Publishes again the backends whose endpoints were replaced in place
    /// since they were published: one look per backend.
    fn refresh(&mut self, metrics: &Metrics) {
        for (labels, entry) in &mut self.backends {
            let endpoints = Self::endpoints(&entry.backend);
            if endpoints != entry.endpoints {
                metrics
                    .backend_endpoints
                    .get_or_create(labels)
                    .set(endpoints);
                entry.endpoints = endpoints;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterState;
    use crate::metrics::Metrics;
    use crate::translate::{translate_next, BuildKind, Reuse, TranslateOptions};

    fn host(i: usize, service: &str) -> String {
        format!(
            "---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: i{i}, namespace: ns}}
spec:
  ingressClassName: gatehouse
  rules:
  - host: h{i}.test
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: {service}, port: {{number: 80}}}}}}}}]}}
"
        )
    }

    fn service(name: &str, addresses: &[&str]) -> String {
        format!(
            "---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: ns}}
spec: {{ports: [{{port: 80}}]}}
{}",
            slice(name, addresses)
        )
    }

    /// The Service's EndpointSlice alone: a change of it is applied to the
    /// backend in place.
    fn slice(name: &str, addresses: &[&str]) -> String {
        let addresses: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: ns, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{port: 8080}}]
endpoints: [{{addresses: [{}]}}]
",
            addresses.join(", ")
        )
    }

    fn gauges(metrics: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .encode()
            .lines()
            .filter(|l| {
                l.starts_with("gatehouse_backend_endpoints{")
                    || l.starts_with("gatehouse_certificate_expiry")
            })
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// Gauges published by difference after incremental builds equal
    /// gauges published whole from the same table: a backend's series
    /// follows its endpoints (replaced with the backend's routes, or in
    /// place), and goes with the last route to it.
    #[test]
    fn gauges_by_difference_equal_gauges_published_whole() {
        let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gatehouse}\nspec: {controller: gatehouse.dev/ingress-controller}\n";
        let text = [
            class.to_owned(),
            service("a", &["198.18.0.1"]),
            service("b", &["198.18.0.2", "198.18.0.3"]),
            host(1, "a"),
            host(2, "a"),
            host(3, "b"),
        ]
        .concat();
        let parse = |t: &str| crate::source::manifest::parse(t).expect("manifests");
        let mut state = ClusterState::from_objects(parse(&text));
        let options = TranslateOptions::default();
        let (first, _) = translate_next(&state, &options, Reuse::default());
        let metrics = Metrics::new();
        let mut published = Published::default();
        let mut table = Arc::new(first.table);
        let mut reuse = first.reuse;
        metrics.observe_table(&table, &[], &mut published);
        let changes = [
            service("a", &["198.18.0.1", "198.18.0.4", "198.18.0.5"]),
            slice("b", &["198.18.0.2"]),
            slice("a", &["198.18.0.1", "198.18.0.6"]),
            host(3, "a"),
            host(1, "b"),
            host(2, "b"),
            host(3, "b"),
        ];
        for change in changes {
            for object in parse(&change) {
                state.insert(object);
            }
            let (mut next, kind) = translate_next(&state, &options, reuse);
            assert_eq!(kind, BuildKind::Incremental);
            reuse = std::mem::take(&mut next.reuse);
            table = Arc::new(next.table);
            metrics.observe_table(&table, &[], &mut published);
            let whole = Metrics::new();
            whole.observe_table(&table, &[], &mut Published::default());
            assert_eq!(gauges(&metrics), gauges(&whole), "after {change}");
        }
        // Service a is no longer used by any route: its series is gone.
        let last = gauges(&metrics);
        assert_eq!(last.len(), 1, "{last:?}");
        assert!(
            last.iter().all(|l| !l.contains("service=\"a\"")),
            "{last:?}"
        );
        assert!(last.iter().any(|l| l.contains("service=\"b\"")), "{last:?}");
    }
}
