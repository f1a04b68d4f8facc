//! A site for the end-to-end tests: backends behind Services, a CA for the
//! certificates, manifests in a temporary directory, and Gatehouse serving
//! them. A test file says what is particular to its site (the Ingresses,
//! the limits, the flags); the starting, the directory and the waiting for
//! Gatehouse to be ready are here.

use std::net::SocketAddr;

use gatehouse::app::Running;
use gatehouse::proxy::Limits;
use gatehouse::translate::TranslateOptions;

use super::{config_for, ingress_annotated, service, tls_secret, Backend, Pki, INGRESS_CLASS};

/// Where the Services of a site's backends are written; a test rewrites
/// this file to change their endpoints.
pub const SERVICES_FILE: &str = "services.yaml";

/// Gatehouse serving a site's manifests, with what it routes to.
///
/// Fields drop in order: Gatehouse stops before its backends and before its
/// directory goes away.
pub struct Site {
    pub gatehouse: Running,
    pub backends: Vec<Backend>,
    /// The CA of the site's certificates.
    pub pki: Pki,
    /// Holds `all.yaml` (the IngressClass and the manifests given),
    /// `services.yaml` and the files given by name.
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn builder() -> SiteBuilder {
        SiteBuilder {
            backends: Vec::new(),
            services: Vec::new(),
            pki: Pki::new(),
            manifests: String::new(),
            files: Vec::new(),
            limits: Limits::default(),
            translate: TranslateOptions::default(),
        }
    }

    /// A backend `web` and an Ingress `name` for `host`, `/` to it, with
    /// `annotations`: the set-up of most single-route tests.
    pub async fn one_route(name: &str, host: &str, annotations: &[(&str, &str)]) -> SiteBuilder {
        Site::builder()
            .backend("web")
            .await
            .manifests(ingress_annotated(name, host, "/", "web", None, annotations))
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }
}

pub struct SiteBuilder {
    backends: Vec<Backend>,
    /// Each Service and its endpoints, in the order they were named.
    services: Vec<(String, Vec<SocketAddr>)>,
    pki: Pki,
    manifests: String,
    files: Vec<(String, String)>,
    limits: Limits,
    translate: TranslateOptions,
}

impl SiteBuilder {
    /// Starts a backend `name` behind a Service of the same name.
    pub async fn backend(self, name: &'static str) -> Self {
        self.backend_of(name, name).await
    }

    /// Starts a backend `name` as a further endpoint of Service `service`
    /// (at `next_endpoint`).
    pub async fn backend_of(mut self, service: &str, name: &'static str) -> Self {
        let backend = Backend::start_on(self.next_endpoint(service), name).await;
        self = self.endpoint(service, backend.addr);
        self.backends.push(backend);
        self
    }

    /// Where the next endpoint of `service` listens. A Service has one
    /// target port, so its endpoints share the first one's port, each on a
    /// loopback address of its own: 127.0.0.1, then .2, .3 …
    pub fn next_endpoint(&self, service: &str) -> SocketAddr {
        match self.services.iter().find(|(name, _)| name == service) {
            Some((_, endpoints)) => {
                let host = endpoints.len() + 1;
                let port = endpoints[0].port();
                format!("127.0.0.{host}:{port}").parse().expect("address")
            }
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Adds `addr` to the endpoints of Service `service`: for a server a
    /// test starts itself.
    pub fn endpoint(mut self, service: &str, addr: SocketAddr) -> Self {
        match self.services.iter_mut().find(|(name, _)| name == service) {
            Some((_, endpoints)) => endpoints.push(addr),
            None => self.services.push((service.to_owned(), vec![addr])),
        }
        self
    }

    /// The site's CA, for one with a name of its own (the default is
    /// `Pki::new()`). Set it before `certificate`.
    pub fn ca(mut self, pki: Pki) -> Self {
        self.pki = pki;
        self
    }

    /// A `kubernetes.io/tls` Secret `secret` with a certificate for `host`
    /// from the site's CA.
    pub fn certificate(self, host: &str, secret: &str) -> Self {
        let secret = tls_secret(secret, &self.pki.leaf(host));
        self.manifests(secret)
    }

    /// Manifests for `all.yaml`.
    pub fn manifests(mut self, text: impl AsRef<str>) -> Self {
        self.manifests.push_str(text.as_ref());
        self
    }

    /// Manifests in a file of their own, which a test can rewrite.
    pub fn file(mut self, name: &str, text: impl Into<String>) -> Self {
        self.files.push((name.to_owned(), text.into()));
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Changes the translate options (the flags) from their defaults.
    pub fn translate(mut self, change: impl FnOnce(&mut TranslateOptions)) -> Self {
        change(&mut self.translate);
        self
    }

    /// Writes the manifests and starts Gatehouse on them; returns once it
    /// serves them.
    pub async fn start(self) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text)
                .unwrap_or_else(|e| panic!("write {name}: {e}"));
        };
        let services: String = self
            .services
            .iter()
            .map(|(name, endpoints)| service(name, endpoints))
            .collect();
        if !services.is_empty() {
            write(SERVICES_FILE, &services);
        }
        write("all.yaml", &format!("{INGRESS_CLASS}{}", self.manifests));
        for (name, text) in &self.files {
            write(name, text);
        }
        let mut config = config_for(dir.path());
        config.limits = self.limits;
        config.translate = self.translate;
        let gatehouse = gatehouse::app::start(config)
            .await
            .expect("gatehouse starts");
        Site {
            gatehouse,
            backends: self.backends,
            pki: self.pki,
            dir,
        }
    }
}
