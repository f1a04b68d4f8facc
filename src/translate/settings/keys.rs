//! Every key of ingress-nginx's controller ConfigMap, and what Gatehouse
//! does with it: applied, accepted without effect (nginx internals that
//! have nothing to tune here), refused (snippets), protective but not
//! enforced (closes routes when switched on), or not implemented (named
//! in a warning). The list follows ingress-nginx's ConfigMap documentation;
//! docs/configuration.md has a row for each key.

/// What Gatehouse does with a ConfigMap key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Read and applied.
    Applied,
    /// Accepted without effect and without a warning.
    Accepted,
    /// A snippet: refused by design, with a warning.
    Refused,
    /// Asks to protect every route, which Gatehouse cannot do: switched on,
    /// every route answers 503.
    Protective,
    /// Not implemented: a warning names it; the rest applies.
    NotImplemented,
}

use KeyStatus::*;

/// The ConfigMap keys of ingress-nginx, in its documentation's order.
pub const KEYS: &[(&str, KeyStatus)] = &[
    ("add-headers", Applied),
    ("allow-backend-server-header", Applied),
    ("allow-cross-namespace-resources", Applied),
    ("allow-snippet-annotations", Applied),
    ("annotations-risk-level", Applied),
    ("annotation-value-word-blocklist", Accepted),
    ("hide-headers", Applied),
    ("access-log-params", NotImplemented),
    ("access-log-path", NotImplemented),
    ("http-access-log-path", NotImplemented),
    ("stream-access-log-path", NotImplemented),
    ("enable-access-log-for-default-backend", NotImplemented),
    ("error-log-path", NotImplemented),
    ("enable-modsecurity", Protective),
    ("modsecurity-snippet", Refused),
    ("enable-owasp-modsecurity-crs", Protective),
    ("client-header-buffer-size", Accepted),
    ("client-header-timeout", Applied),
    ("client-body-buffer-size", Accepted),
    ("client-body-timeout", Applied),
    ("disable-access-log", NotImplemented),
    ("disable-ipv6", NotImplemented),
    ("disable-ipv6-dns", Accepted),
    ("enable-underscores-in-headers", NotImplemented),
    ("enable-ocsp", NotImplemented),
    ("ignore-invalid-headers", NotImplemented),
    ("retry-non-idempotent", NotImplemented),
    ("error-log-level", Accepted),
    ("http2-max-field-size", NotImplemented),
    ("http2-max-header-size", NotImplemented),
    ("http2-max-requests", NotImplemented),
    ("http2-max-concurrent-streams", Applied),
    ("hsts", Applied),
    ("hsts-include-subdomains", Applied),
    ("hsts-max-age", Applied),
    ("hsts-preload", Applied),
    ("keep-alive", Applied),
    ("keep-alive-requests", Applied),
    ("large-client-header-buffers", NotImplemented),
    ("log-format-escape-none", Applied),
    ("log-format-escape-json", Applied),
    ("log-format-upstream", Applied),
    ("log-format-stream", NotImplemented),
    ("enable-multi-accept", Accepted),
    ("max-worker-connections", NotImplemented),
    ("max-worker-open-files", Accepted),
    ("map-hash-bucket-size", Accepted),
    ("nginx-status-ipv4-whitelist", NotImplemented),
    ("nginx-status-ipv6-whitelist", NotImplemented),
    ("proxy-real-ip-cidr", Applied),
    ("proxy-set-headers", Applied),
    ("server-name-hash-max-size", Accepted),
    ("server-name-hash-bucket-size", Accepted),
    ("proxy-headers-hash-max-size", Accepted),
    ("proxy-headers-hash-bucket-size", Accepted),
    ("reuse-port", Accepted),
    ("server-tokens", Applied),
    ("ssl-ciphers", Applied),
    ("ssl-ecdh-curve", NotImplemented),
    ("ssl-dh-param", NotImplemented),
    ("ssl-protocols", Applied),
    ("ssl-session-cache", Accepted),
    ("ssl-session-cache-size", Accepted),
    ("ssl-session-tickets", NotImplemented),
    ("ssl-session-ticket-key", NotImplemented),
    ("ssl-session-timeout", NotImplemented),
    ("ssl-buffer-size", Accepted),
    ("use-proxy-protocol", Applied),
    ("proxy-protocol-header-timeout", NotImplemented),
    ("enable-aio-write", Accepted),
    ("use-gzip", NotImplemented),
    ("use-geoip", NotImplemented),
    ("use-geoip2", NotImplemented),
    ("geoip2-autoreload-in-minutes", NotImplemented),
    ("enable-brotli", NotImplemented),
    ("brotli-level", NotImplemented),
    ("brotli-min-length", NotImplemented),
    ("brotli-types", NotImplemented),
    ("use-http2", NotImplemented),
    ("gzip-disable", NotImplemented),
    ("gzip-level", NotImplemented),
    ("gzip-min-length", NotImplemented),
    ("gzip-types", NotImplemented),
    ("worker-processes", Applied),
    ("worker-cpu-affinity", Accepted),
    ("worker-shutdown-timeout", NotImplemented),
    ("enable-serial-reloads", Accepted),
    ("load-balance", Applied),
    ("variables-hash-bucket-size", Accepted),
    ("variables-hash-max-size", Accepted),
    ("upstream-keepalive-connections", Applied),
    ("upstream-keepalive-time", NotImplemented),
    ("upstream-keepalive-timeout", Applied),
    ("upstream-keepalive-requests", Applied),
    ("limit-conn-zone-variable", NotImplemented),
    ("proxy-stream-timeout", NotImplemented),
    ("proxy-stream-next-upstream", NotImplemented),
    ("proxy-stream-next-upstream-timeout", NotImplemented),
    ("proxy-stream-next-upstream-tries", NotImplemented),
    ("proxy-stream-responses", NotImplemented),
    ("bind-address", NotImplemented),
    ("use-forwarded-headers", Applied),
    ("enable-real-ip", Applied),
    ("forwarded-for-header", Applied),
    ("forwarded-for-proxy-protocol-header", NotImplemented),
    ("compute-full-forwarded-for", Applied),
    ("proxy-add-original-uri-header", NotImplemented),
    ("generate-request-id", Accepted),
    ("jaeger-collector-host", NotImplemented),
    ("jaeger-collector-port", NotImplemented),
    ("jaeger-endpoint", NotImplemented),
    ("jaeger-service-name", NotImplemented),
    ("jaeger-propagation-format", NotImplemented),
    ("jaeger-sampler-type", NotImplemented),
    ("jaeger-sampler-param", NotImplemented),
    ("jaeger-sampler-host", NotImplemented),
    ("jaeger-sampler-port", NotImplemented),
    ("jaeger-trace-context-header-name", NotImplemented),
    ("jaeger-debug-header", NotImplemented),
    ("jaeger-baggage-header", NotImplemented),
    ("jaeger-trace-baggage-header-prefix", NotImplemented),
    ("enable-opentelemetry", Applied),
    ("opentelemetry-trust-incoming-span", Applied),
    ("opentelemetry-operation-name", Applied),
    ("opentelemetry-config", NotImplemented),
    ("otlp-collector-host", Applied),
    ("otlp-collector-port", Applied),
    ("otel-max-queuesize", Applied),
    ("otel-schedule-delay-millis", Applied),
    ("otel-max-export-batch-size", Applied),
    ("otel-service-name", Applied),
    ("otel-sampler", Applied),
    ("otel-sampler-parent-based", Applied),
    ("otel-sampler-ratio", Applied),
    ("main-snippet", Refused),
    ("http-snippet", Refused),
    ("server-snippet", Refused),
    ("stream-snippet", Refused),
    ("location-snippet", Refused),
    ("custom-http-errors", Applied),
    ("proxy-body-size", Applied),
    ("proxy-connect-timeout", Applied),
    ("proxy-read-timeout", Applied),
    ("proxy-send-timeout", Applied),
    ("proxy-buffers-number", Accepted),
    ("proxy-buffer-size", Accepted),
    ("proxy-busy-buffers-size", Accepted),
    ("proxy-cookie-path", NotImplemented),
    ("proxy-cookie-domain", NotImplemented),
    ("proxy-next-upstream", Applied),
    ("proxy-next-upstream-timeout", Applied),
    ("proxy-next-upstream-tries", Applied),
    ("proxy-redirect-from", NotImplemented),
    ("proxy-request-buffering", Accepted),
    ("ssl-redirect", Applied),
    ("force-ssl-redirect", Applied),
    ("denylist-source-range", Applied),
    ("whitelist-source-range", Applied),
    ("skip-access-log-urls", NotImplemented),
    ("limit-rate", NotImplemented),
    ("limit-rate-after", NotImplemented),
    ("lua-shared-dicts", Accepted),
    ("http-redirect-code", NotImplemented),
    ("proxy-buffering", Accepted),
    ("limit-req-status-code", Applied),
    ("limit-conn-status-code", Applied),
    ("enable-syslog", NotImplemented),
    ("syslog-host", NotImplemented),
    ("syslog-port", NotImplemented),
    ("no-tls-redirect-locations", NotImplemented),
    ("global-allowed-response-headers", NotImplemented),
    ("global-auth-url", Protective),
    ("global-auth-method", NotImplemented),
    ("global-auth-signin", NotImplemented),
    ("global-auth-signin-redirect-param", NotImplemented),
    ("global-auth-response-headers", NotImplemented),
    ("global-auth-request-redirect", NotImplemented),
    ("global-auth-snippet", Refused),
    ("global-auth-cache-key", NotImplemented),
    ("global-auth-cache-duration", NotImplemented),
    ("no-auth-locations", NotImplemented),
    ("block-cidrs", Applied),
    ("block-user-agents", Applied),
    ("block-referers", Applied),
    ("proxy-ssl-location-only", NotImplemented),
    ("default-type", NotImplemented),
    ("service-upstream", Applied),
    ("ssl-reject-handshake", NotImplemented),
    ("debug-connections", NotImplemented),
    ("strict-validate-path-type", Accepted),
    ("grpc-buffer-size-kb", Accepted),
    ("relative-redirects", NotImplemented),
];

/// What Gatehouse does with `key`; `None` for a key ingress-nginx does not
/// have either.
pub fn status(key: &str) -> Option<KeyStatus> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, s)| *s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (key, _) in KEYS {
            assert!(seen.insert(*key), "{key} twice");
        }
    }

    #[test]
    fn the_configuration_document_has_a_row_for_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        for (key, _) in KEYS {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "docs/configuration.md lacks {key}"
            );
        }
    }
}
