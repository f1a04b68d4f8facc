//! The command line (the contract in the design document).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::admission::{managed, CertificateSource, ManagedCertificate, WebhookConfig};
use crate::app::{Config, SourceConfig};
use crate::cluster::ObjectKey;
use crate::policy::hsts::HstsOptions;
use crate::policy::rate_limit::Statuses;
use crate::policy::{AccessOptions, ProtectionMode};

/// A status the parser has checked (400–599).
fn status(code: u16) -> http::StatusCode {
    http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::SERVICE_UNAVAILABLE)
}
use crate::connection::ForwardedHeaders;
use crate::metrics::ingress_nginx::{ControllerLabels, MetricsCompat};
use crate::proxy::{parse_duration, Limits};
use crate::source::controller_namespace;
use crate::source::kube::{ClientError, KubeSource};
use crate::status::{Publish, StatusConfig};
use crate::table::GlobalSettings;
use crate::telemetry::access_log::{AccessLogFormat, AccessLogTarget};
use crate::telemetry::logging::LogFormat;
use crate::translate::{AcmeOptions, AdmissionOptions, HostOwnership, TranslateOptions};
use crate::upstream::UpstreamKeepalive;

/// Gatehouse: a Kubernetes Ingress controller with its own HTTP and HTTPS proxy.
///
/// Watches Ingress, IngressClass, Service, EndpointSlice and Secret objects,
/// builds a routing table and serves it, swapping in a new table on every
/// change without dropping a connection.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub routing: RoutingArgs,

    /// Address for plain HTTP.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Address for HTTPS.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,

    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:10254")]
    pub metrics_addr: SocketAddr,

    /// Also export another controller's metric names on /metrics, beside
    /// Gatehouse's: `ingress-nginx` adds its `nginx_ingress_controller_*`
    /// series, for the dashboards and alerts written for them (labelled
    /// with POD_NAMESPACE, POD_NAME and --controller-class, as ingress-nginx
    /// does; see docs/operations.md).
    #[arg(long, value_enum, value_name = "NAMES")]
    pub metrics_compat: Option<MetricsCompat>,

    /// Log output format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Where the access log goes: stdout, stderr, a file path, or off.
    #[arg(long, value_name = "TARGET", default_value = "stdout")]
    pub access_log: AccessLogTarget,

    /// Access log line format: Gatehouse's JSON, or `text`, ingress-nginx's
    /// default line. The controller ConfigMap's `log-format-upstream`
    /// replaces either.
    #[arg(long, value_enum, default_value = "json")]
    pub access_log_format: AccessLogFormat,

    /// After SIGTERM/SIGINT, how long to keep accepting connections while
    /// /readyz reports 503 (time for the load balancer to deregister us).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Then, how long in-flight requests and upgraded connections get to
    /// finish before the process exits.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger
    /// requests get 431.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_header_bytes)]
    pub max_header_size: usize,

    /// Time a client has to send a complete request head, also the longest
    /// a kept-alive connection may wait idle for its next request.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// HTTP/2 streams one client connection may have open at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().h2_max_concurrent_streams)]
    pub h2_max_concurrent_streams: u32,

    /// Client connections open at once over both listeners; past it a new
    /// connection waits, unserved, until another closes (logged).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,

    /// Data-plane threads, each serving its own connections (nginx's
    /// worker_processes); 0 means one per CPU.
    #[arg(long, value_name = "N", default_value_t = Limits::default().workers)]
    pub workers: usize,

    /// Believe the X-Forwarded-For (see --forwarded-for-header),
    /// X-Forwarded-Proto, -Host and -Port of peers in --proxy-real-ip-cidr:
    /// the client is the rightmost forwarded-for address that is not a
    /// trusted proxy. Off, they are replaced.
    #[arg(long)]
    pub use_forwarded_headers: bool,

    /// The header a trusted proxy names the client in.
    #[arg(long, value_name = "NAME", default_value = "X-Forwarded-For")]
    pub forwarded_for_header: http::HeaderName,

    /// Send upstream X-Forwarded-For as the chain received plus the peer,
    /// instead of the client address alone.
    #[arg(long)]
    pub compute_full_forwarded_for: bool,

    /// Comma-separated CIDRs of trusted proxies (default: everyone, as
    /// ingress-nginx's proxy-real-ip-cidr, once --use-forwarded-headers is
    /// on).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub proxy_real_ip_cidr: Vec<ipnet::IpNet>,

    /// Every connection (HTTP and HTTPS, not the metrics port) starts with
    /// a PROXY protocol v1 or v2 header from the load balancer; its client
    /// address is used everywhere. Connections without one are closed.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// Idle keep-alive connections each worker keeps open per endpoint.
    #[arg(long, value_name = "N", default_value_t = UpstreamKeepalive::default().connections)]
    pub upstream_keepalive_connections: usize,

    /// Write this Service's LoadBalancer addresses (else its ClusterIP) into
    /// the status of our Ingresses.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_object_key, conflicts_with = "publish_status_address")]
    pub publish_service: Option<ObjectKey>,

    /// Write these comma-separated IPs or host names into the status of our
    /// Ingresses.
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    pub publish_status_address: Vec<String>,

    /// Serve the validating admission webhook on this address (HTTPS only,
    /// any path), as ingress-nginx's flag: the API server asks it about
    /// each Ingress, HTTPRoute and Gateway before storing it, and it
    /// refuses what Gateway would close or not serve as written (see
    /// docs/deploy.md). Its certificate comes from the two files below,
    /// or, without them, from a CA Gatehouse keeps itself in
    /// --validating-webhook-secret.
    #[arg(long, value_name = "ADDR")]
    pub validating_webhook: Option<SocketAddr>,

    /// The webhook's serving certificate (PEM chain, leaf first); read
    /// again when it changes.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["validating_webhook", "validating_webhook_key"]
    )]
    pub validating_webhook_certificate: Option<PathBuf>,

    /// The webhook certificate's private key (PEM); read again when it
    /// changes.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["validating_webhook", "validating_webhook_certificate"]
    )]
    pub validating_webhook_key: Option<PathBuf>,

    /// Without certificate files: the Secret holding the webhook's own CA
    /// and serving certificate (ca.crt, ca.key, tls.crt, tls.key), which
    /// the elected replica creates and renews and every replica serves
    /// from. Default: gatehouse-admission in the Pod's namespace.
    #[arg(
        long,
        value_name = "NS/NAME",
        value_parser = parse_object_key,
        requires = "validating_webhook",
        conflicts_with = "validating_webhook_certificate"
    )]
    pub validating_webhook_secret: Option<ObjectKey>,

    /// Without certificate files: the Service the API server calls the
    /// webhook through; the serving certificate is for NAME.NS.svc and
    /// NAME.NS.svc.cluster.local. Default: gatehouse-admission in the
    /// Pod's namespace.
    #[arg(
        long,
        value_name = "NS/NAME",
        value_parser = parse_object_key,
        requires = "validating_webhook",
        conflicts_with = "validating_webhook_certificate"
    )]
    pub validating_webhook_service: Option<ObjectKey>,

    /// Without certificate files: the ValidatingWebhookConfiguration whose
    /// webhooks' caBundle the elected replica keeps the CA's.
    #[arg(
        long,
        value_name = "NAME",
        default_value = crate::admission::managed::DEFAULT_NAME,
        requires = "validating_webhook",
        conflicts_with = "validating_webhook_certificate"
    )]
    pub validating_webhook_configuration: String,

    /// Name of the Lease replicas elect a status writer with (in the Pod's
    /// namespace, $POD_NAMESPACE).
    #[arg(long, value_name = "NAME", default_value = "gatehouse-leader")]
    pub election_id: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the routing table the objects produce, and every warning.
    ///
    /// Exits with status 1 when a manifest does not parse or any warning is
    /// raised, so it can check manifests in CI.
    Routes {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        routing: RoutingArgs,
        /// Lint this controller ConfigMap manifest and apply it, as
        /// `--configmap` would: an unknown key or a bad value is a warning
        /// (exit status 1) naming the key.
        #[arg(long, value_name = "FILE", conflicts_with = "configmap")]
        configmap_file: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Read objects from YAML manifests in DIR (every *.yaml and *.yml file,
    /// multi-document and List files included) and follow changes to them,
    /// instead of the Kubernetes API.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["kubeconfig", "watch_namespace"])]
    pub manifests: Option<PathBuf>,

    /// Kubeconfig to reach the API server with. Without it: the in-cluster
    /// service account, else $KUBECONFIG, else ~/.kube/config.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Watch Ingresses, Services, EndpointSlices, Secrets and ConfigMaps
    /// of these comma-separated namespaces only (IngressClasses are
    /// cluster-scoped); a Role in each suffices.
    #[arg(long, value_name = "NS,...", value_delimiter = ',')]
    pub watch_namespace: Vec<String>,

    /// Serve only namespaces whose labels match this selector
    /// (`team=shop,env!=dev`), as ingress-nginx's flag of the same name;
    /// Namespaces are watched, and a labelled namespace is served at once.
    #[arg(long, value_name = "SELECTOR", conflicts_with = "manifests")]
    pub watch_namespace_selector: Option<String>,
}

impl SourceArgs {
    /// The source these flags select; connects a Kubernetes client if needed.
    pub async fn source(&self, routing: &RoutingArgs) -> Result<SourceConfig, ClientError> {
        if let Some(dir) = &self.manifests {
            return Ok(SourceConfig::Manifests(dir.clone()));
        }
        let client = crate::source::kube::client(self.kubeconfig.as_deref()).await?;
        Ok(SourceConfig::Kube(KubeSource {
            client,
            namespaces: self.watch_namespace.clone(),
            namespace_selector: self.watch_namespace_selector.clone(),
            config_map: routing.configmap.clone(),
            default_certificate: routing.default_ssl_certificate.clone(),
            annotations_prefix: routing.translate_options().annotations_prefix,
        }))
    }
}

/// The options that decide routing; shared by the controller and `routes`.
#[derive(Debug, Args)]
pub struct RoutingArgs {
    /// The IngressClass name that is ours (also accepted in the legacy
    /// kubernetes.io/ingress.class annotation).
    #[arg(long, value_name = "NAME", default_value = "gatehouse")]
    pub ingress_class: String,

    /// IngressClasses whose spec.controller equals this are ours.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "gatehouse.dev/ingress-controller"
    )]
    pub controller_class: String,

    /// Also serve Ingresses that name no class at all.
    #[arg(long)]
    pub watch_ingress_without_class: bool,

    /// Our annotation prefix, read besides nginx.ingress.kubernetes.io (ours
    /// wins when both are set).
    #[arg(long, value_name = "PREFIX", default_value = "gatehouse.dev")]
    pub annotations_prefix: String,

    /// Service (first port) that receives requests no rule matches, instead
    /// of a 404 from Gatehouse.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_object_key)]
    pub default_backend_service: Option<ObjectKey>,

    /// TLS Secret served to server names no Ingress covers, instead of the
    /// self-signed certificate generated at start.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_object_key)]
    pub default_ssl_certificate: Option<ObjectKey>,

    /// What to do with an Ingress whose protective annotation (auth-*,
    /// source ranges, satisfy, modsecurity) cannot be enforced: `deny`
    /// answers 503 on all its routes; `warn` serves them WITHOUT that
    /// protection, as ingress-nginx migrations did before.
    #[arg(long, value_enum, value_name = "MODE", default_value = "deny")]
    pub unsupported_protection: ProtectionMode,

    /// Read configuration-snippet and server-snippet annotations as the
    /// typed subset of nginx directives docs/annotations.md lists (header
    /// edits, return, rewrite, allow/deny, timeouts, body size). A snippet with
    /// anything else is not applied; one that restricts access closes its
    /// routes. Off, every snippet is refused (the ConfigMap key
    /// allow-snippet-annotations wins over this flag).
    #[arg(long)]
    pub allow_snippet_annotations: bool,

    /// Let annotations name Secrets of other namespaces (auth-secret:
    /// namespace/name). Off, such a reference closes the Ingress's routes.
    #[arg(long)]
    pub allow_cross_namespace_secrets: bool,

    /// Send Strict-Transport-Security on HTTPS responses of hosts that an
    /// Ingress's tls section covers.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub hsts: bool,

    /// HSTS max-age, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = HstsOptions::default().max_age)]
    pub hsts_max_age: u64,

    /// HSTS includeSubDomains.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    pub hsts_include_subdomains: bool,

    /// HSTS preload.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = ArgAction::Set)]
    pub hsts_preload: bool,

    /// Pass TLS connections for hosts with `ssl-passthrough: "true"` whole
    /// to their backend, unterminated.
    #[arg(long)]
    pub enable_ssl_passthrough: bool,

    /// Status for requests over limit-rps / limit-rpm (429 is common).
    #[arg(long, value_name = "CODE", default_value_t = 503, value_parser = parse_status)]
    pub limit_req_status_code: u16,

    /// Status for requests over limit-connections.
    #[arg(long, value_name = "CODE", default_value_t = 503, value_parser = parse_status)]
    pub limit_conn_status_code: u16,

    /// Who may publish rules for a host: `shared`, any namespace (as
    /// ingress-nginx); `namespace`, the namespace of the host's oldest
    /// Ingress, and the namespaces its `gatehouse.dev/allow-namespaces`
    /// annotation lists.
    #[arg(long, value_enum, value_name = "MODE", default_value = "shared")]
    pub host_ownership: HostOwnership,

    /// The controller ConfigMap: ingress-nginx's global settings (see
    /// docs/configuration.md), watched and applied without restart. Its
    /// keys win over these flags; annotations win over both.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_object_key)]
    pub configmap: Option<ObjectKey>,

    /// The `controllerName` of the GatewayClasses that are ours: their
    /// Gateways' HTTPRoutes are served beside the Ingresses.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "gatehouse.dev/gateway-controller"
    )]
    pub gateway_controller_name: String,

    /// The AcmeIssuer that `kubernetes.io/tls-acme: "true"` on an Ingress
    /// asks for (docs/certificates.md). Without it, that annotation asks
    /// for nothing and is warned about; `gatehouse.dev/acme-issuer: NAME`
    /// names an issuer either way.
    #[arg(long, value_name = "NAME")]
    pub acme_default_issuer: Option<String>,

    /// Admission (and `routes`) also refuse an Ingress whose host+path or
    /// default backend another Ingress already serves. Off, that is a
    /// warning: renaming an Ingress needs both for a moment.
    #[arg(long)]
    pub admission_reject_conflicts: bool,
}

fn parse_status(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
        .ok_or_else(|| format!("{value:?} is not an HTTP status between 400 and 599"))
}

impl RoutingArgs {
    pub fn translate_options(&self) -> TranslateOptions {
        TranslateOptions {
            ingress_class: self.ingress_class.clone(),
            controller_class: self.controller_class.clone(),
            watch_ingress_without_class: self.watch_ingress_without_class,
            annotations_prefix: self.annotations_prefix.trim_end_matches('/').to_owned(),
            default_backend_service: self.default_backend_service.clone(),
            default_ssl_certificate: self.default_ssl_certificate.clone(),
            access: AccessOptions {
                unsupported_protection: self.unsupported_protection,
                cross_namespace_secrets: self.allow_cross_namespace_secrets,
                allow_snippets: self.allow_snippet_annotations,
                ..AccessOptions::default()
            },
            ssl_passthrough: self.enable_ssl_passthrough,
            limit_statuses: Statuses {
                rate: status(self.limit_req_status_code),
                connections: status(self.limit_conn_status_code),
            },
            hsts: HstsOptions {
                enabled: self.hsts,
                max_age: self.hsts_max_age,
                include_subdomains: self.hsts_include_subdomains,
                preload: self.hsts_preload,
            },
            config_map: self.configmap.clone(),
            edge: GlobalSettings::default(),
            host_ownership: self.host_ownership,
            gateway_controller: self.gateway_controller_name.clone(),
            acme: AcmeOptions {
                default_issuer: self.acme_default_issuer.clone(),
                challenges: crate::source::acme_challenges_secret(),
            },
        }
    }

    pub fn admission_options(&self) -> AdmissionOptions {
        AdmissionOptions {
            reject_conflicts: self.admission_reject_conflicts,
        }
    }

    /// Says loudly, once at start, that protections may be skipped.
    pub fn warn_about_unenforced_protection(&self) {
        if self.unsupported_protection == ProtectionMode::Warn {
            tracing::warn!("--unsupported-protection warn: Ingresses whose access-control annotations Gatehouse cannot enforce are served WITHOUT that protection; every such Ingress is named in a ProtectionNotEnforced warning");
        }
    }
}

fn parse_object_key(value: &str) -> Result<ObjectKey, String> {
    match value.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("{value:?} is not NAMESPACE/NAME")),
    }
}

impl Cli {
    /// The controller's configuration (when no subcommand was given).
    pub fn config(&self, source: SourceConfig) -> Config {
        Config {
            source,
            http_addr: self.http_addr,
            https_addr: self.https_addr,
            metrics_addr: self.metrics_addr,
            ingress_nginx_metrics: self.metrics_compat.map(|compat| match compat {
                MetricsCompat::IngressNginx => {
                    ControllerLabels::from_env(&self.routing.controller_class)
                }
            }),
            translate: TranslateOptions {
                edge: self.edge(),
                ..self.routing.translate_options()
            },
            access_log: self.access_log.clone(),
            access_log_format: self.access_log_format,
            limits: Limits {
                max_header_bytes: self.max_header_size,
                header_read_timeout: self.header_read_timeout,
                h2_max_concurrent_streams: self.h2_max_concurrent_streams,
                max_connections: self.max_connections,
                workers: self.workers,
                ..Limits::default()
            },
            shutdown_grace: self.shutdown_grace,
            drain_timeout: self.drain_timeout,
            status: Some(self.status_config()),
            webhook: self.webhook_config(),
        }
    }

    /// The webhook, when `--validating-webhook` is given: its certificate
    /// from the files (clap has made sure both are given, or neither), or
    /// managed, in the Pod's namespace unless the flags say otherwise.
    fn webhook_config(&self) -> Option<WebhookConfig> {
        let files = (
            &self.validating_webhook_certificate,
            &self.validating_webhook_key,
        );
        let certificate = match files {
            (Some(certificate), Some(key)) => CertificateSource::Files {
                certificate: certificate.clone(),
                key: key.clone(),
            },
            _ => {
                let ours = || ObjectKey::new(controller_namespace(), managed::DEFAULT_NAME);
                CertificateSource::Managed(ManagedCertificate {
                    secret: self.validating_webhook_secret.clone().unwrap_or_else(ours),
                    service: self.validating_webhook_service.clone().unwrap_or_else(ours),
                    configuration: self.validating_webhook_configuration.clone(),
                })
            }
        };
        Some(WebhookConfig {
            addr: self.validating_webhook?,
            certificate,
            admission: self.routing.admission_options(),
            limits: crate::admission::Limits::default(),
        })
    }

    /// The edge settings these flags set; the controller ConfigMap's keys
    /// win over them.
    fn edge(&self) -> GlobalSettings {
        let defaults = ForwardedHeaders::default();
        let forwarded = ForwardedHeaders {
            use_forwarded_headers: self.use_forwarded_headers,
            header: self.forwarded_for_header.clone(),
            compute_full: self.compute_full_forwarded_for,
            trusted: if self.proxy_real_ip_cidr.is_empty() {
                defaults.trusted
            } else {
                self.proxy_real_ip_cidr.clone()
            },
            ..defaults
        };
        GlobalSettings {
            proxy_protocol: self.proxy_protocol,
            forwarded,
            upstream: UpstreamKeepalive {
                connections: self.upstream_keepalive_connections,
                ..UpstreamKeepalive::default()
            },
            ..GlobalSettings::default()
        }
    }

    /// Status writing: what to publish, and the Lease to elect a writer.
    /// Namespace and identity come from the Pod (downward API), with
    /// fallbacks for running outside one.
    pub fn status_config(&self) -> StatusConfig {
        let publish = match (
            &self.publish_service,
            self.publish_status_address.as_slice(),
        ) {
            (Some(service), _) => Publish::Service(service.clone()),
            (None, []) => Publish::Nothing,
            (None, addresses) => {
                Publish::Addresses(addresses.iter().map(|a| a.trim().to_owned()).collect())
            }
        };
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("gatehouse-{}", uuid::Uuid::new_v4().simple()));
        StatusConfig {
            publish,
            election_id: self.election_id.clone(),
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
            identity,
        }
    }
}
