//! The command line (the contract in the design document).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::app::Config;
use crate::telemetry::logging::LogFormat;
use crate::translate::TranslateOptions;

/// Gatehouse: a Kubernetes Ingress controller with its own HTTP and HTTPS proxy.
///
/// Watches Ingress, IngressClass, Service, EndpointSlice and Secret objects,
/// builds a routing table and serves it, swapping in a new table on every
/// change without dropping a connection.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, long_about)]
pub struct Cli {
    /// Read objects from YAML manifests in DIR (every *.yaml and *.yml file,
    /// multi-document and List files included) and follow changes to them.
    #[arg(long, value_name = "DIR", required = true)]
    pub manifests: PathBuf,

    /// Address for plain HTTP.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Address for HTTPS.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub https_addr: SocketAddr,

    /// Address for /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:10254")]
    pub metrics_addr: SocketAddr,

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

    /// Log output format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Cli {
    pub fn config(&self) -> Config {
        Config {
            manifests: self.manifests.clone(),
            http_addr: self.http_addr,
            https_addr: self.https_addr,
            metrics_addr: self.metrics_addr,
            translate: TranslateOptions {
                ingress_class: self.ingress_class.clone(),
                controller_class: self.controller_class.clone(),
                watch_ingress_without_class: self.watch_ingress_without_class,
            },
        }
    }
}
