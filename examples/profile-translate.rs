//! Builds a cluster of N hosts (one Prefix `/` route and a TLS Secret each)
//! and translates it repeatedly, for a profiler to watch.
//! Usage: profile-translate [N] [ROUNDS]

use gatehouse::cluster::ClusterState;
use gatehouse::source::manifest;
use gatehouse::translate::{translate, translate_with, TranslateOptions};

/// The binary's allocator, so that the profile is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let cert = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).expect("cert");
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls{i}}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {:?}, tls.key: {:?}}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}}}\nspec: {{ports: [{{port: 80, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc{i}-1, labels: {{kubernetes.io/service-name: svc{i}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [\"10.0.0.1\"]}}, {{addresses: [\"10.0.0.2\"]}}, {{addresses: [\"10.0.0.3\"]}}]\n\
             ---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing{i}}}\nspec:\n  ingressClassName: gatehouse\n  tls: [{{hosts: [h{i}.test], secretName: tls{i}}}]\n  rules:\n  - host: h{i}.test\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: svc{i}, port: {{number: 80}}}}}}}}]}}\n",
            cert.cert.pem(),
            cert.signing_key.serialize_pem()
        ));
    }
    text.push_str("---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gatehouse}\nspec: {controller: gatehouse.dev/ingress-controller}\n");
    let state = ClusterState::from_objects(manifest::parse(&text).expect("parse"));
    let options = TranslateOptions::default();
    let t = std::time::Instant::now();
    let mut last = translate(&state, &options);
    eprintln!("cold {:?}", t.elapsed());
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        last = translate_with(&state, &options, &last.reuse);
        eprintln!("warm {:?}", t.elapsed());
    }
}
