{{/*
The plan: what the values ask of Gatehouse, worked out once.
  args:     the command line, flag name to value ("" for a bare switch);
  refused:  "key: why; what to do" for each value Gatehouse cannot honour;
  accepted: the refused ones that gatehouse.acceptUnsupported names;
  noEffect: "key: why" for each value that changes nothing here.
validate.yaml fails on refused, NOTES.txt lists accepted and noEffect.
*/}}
{{- define "gatehouse.plan" -}}
{{- $v := .Values -}}
{{- $c := $v.controller -}}
{{- $ns := include "gatehouse.namespace" . -}}
{{- $fullname := include "gatehouse.fullname" . -}}
{{- $refusals := list -}}
{{- $noEffect := list -}}
{{- $args := dict -}}

{{- /* The command line deploy/ gives, then what the values change. */ -}}
{{- $ports := include "gatehouse.containerPort" . | fromYaml -}}
{{- $_ := set $args "http-addr" (printf "0.0.0.0:%v" $ports.http) -}}
{{- $_ := set $args "https-addr" (printf "0.0.0.0:%v" $ports.https) -}}
{{- $_ := set $args "metrics-addr" (printf "0.0.0.0:%v" $c.metrics.port) -}}
{{- $_ := set $args "configmap" (printf "%s/%s" (default $ns $c.configMapNamespace) $fullname) -}}
{{- if and $c.publishService.enabled $c.service.enabled -}}
{{- $path := default (printf "%s/%s" $ns $fullname) $c.publishService.pathOverride -}}
{{- if and (not $c.service.external.enabled) $c.service.internal.enabled -}}
{{- $path = printf "%s-internal" $path -}}
{{- end -}}
{{- $_ := set $args "publish-service" $path -}}
{{- end -}}
{{- if ne (include "gatehouse.electionID" .) "gatehouse-leader" -}}
{{- $_ := set $args "election-id" (include "gatehouse.electionID" .) -}}
{{- end -}}
{{- if ne $c.ingressClassResource.controllerValue "gatehouse.dev/ingress-controller" -}}
{{- $_ := set $args "controller-class" $c.ingressClassResource.controllerValue -}}
{{- end -}}
{{- if and $c.ingressClass (ne $c.ingressClass "gatehouse") -}}
{{- $_ := set $args "ingress-class" $c.ingressClass -}}
{{- end -}}
{{- if $c.watchIngressWithoutClass -}}
{{- $_ := set $args "watch-ingress-without-class" "" -}}
{{- end -}}
{{- if $c.scope.enabled -}}
{{- $_ := set $args "watch-namespace" (default $ns $c.scope.namespace) -}}
{{- else if $c.scope.namespaceSelector -}}
{{- $_ := set $args "watch-namespace-selector" $c.scope.namespaceSelector -}}
{{- end -}}
{{- if $v.defaultBackend.enabled -}}
{{- $_ := set $args "default-backend-service" (printf "%s/%s" $ns (include "gatehouse.defaultBackend.fullname" .)) -}}
{{- end -}}
{{- if $c.metrics.enabled -}}
{{- $_ := set $args "metrics-compat" "ingress-nginx" -}}
{{- end -}}
{{- $webhook := include "gatehouse.webhookMode" . -}}
{{- if $webhook -}}
{{- $_ := set $args "validating-webhook" (printf "0.0.0.0:%v" $c.admissionWebhooks.port) -}}
{{- end -}}
{{- if eq $webhook "cert-manager" -}}
{{- $_ := set $args "validating-webhook-certificate" "/etc/gatehouse/webhook/tls.crt" -}}
{{- $_ := set $args "validating-webhook-key" "/etc/gatehouse/webhook/tls.key" -}}
{{- else if and (eq $webhook "managed") (ne $fullname "gatehouse") -}}
{{- /* The flags' defaults are gatehouse-admission in the Pod's namespace. */ -}}
{{- $_ := set $args "validating-webhook-secret" (printf "%s/%s-admission" $ns $fullname) -}}
{{- $_ := set $args "validating-webhook-service" (printf "%s/%s-admission" $ns $fullname) -}}
{{- $_ := set $args "validating-webhook-configuration" (printf "%s-admission" $fullname) -}}
{{- end -}}
{{- $grace := include "gatehouse.shutdownGraceSeconds" . | int -}}
{{- $drain := include "gatehouse.drainSeconds" . | int -}}
{{- if ne $grace 5 -}}{{- $_ := set $args "shutdown-grace" (printf "%ds" $grace) -}}{{- end -}}
{{- if ne $drain 30 -}}{{- $_ := set $args "drain-timeout" (printf "%ds" $drain) -}}{{- end -}}

{{- /* extraArgs: ingress-nginx's flags. Those Gatehouse has under the same
name and meaning pass as they are (Gatehouse's own flags too); a few are
mapped; the rest either change nothing here or are refused. */ -}}
{{- $switches := list "watch-ingress-without-class" "enable-ssl-passthrough" "use-forwarded-headers" "compute-full-forwarded-for" "proxy-protocol" "allow-cross-namespace-secrets" -}}
{{- $valued := list "default-ssl-certificate" "default-backend-service" "watch-namespace" "watch-namespace-selector" "publish-service" "publish-status-address" "ingress-class" "controller-class" "election-id" "annotations-prefix" "configmap" "metrics-compat" "log-format" "access-log" "access-log-format" "max-header-size" "header-read-timeout" "h2-max-concurrent-streams" "max-connections" "workers" "forwarded-for-header" "proxy-real-ip-cidr" "upstream-keepalive-connections" "unsupported-protection" "hsts" "hsts-max-age" "hsts-include-subdomains" "hsts-preload" "limit-req-status-code" "limit-conn-status-code" "host-ownership" "gateway-controller-name" "acme-default-issuer" -}}
{{- $mapped := list "shutdown-grace-period" "http-port" "https-port" -}}
{{- $quiet := dict
  "v" "log verbosity of the nginx controller; Gatehouse logs at RUST_LOG (extraEnvs)"
  "enable-metrics" "Gatehouse always serves /metrics"
  "metrics-per-host" "Gatehouse's metrics are per Ingress and host already"
  "ingress-class-by-name" "Gatehouse always serves the IngressClass named by --ingress-class"
  "enable-annotation-validation" "Gatehouse always parses annotations into typed values"
  "sync-period" "Gatehouse rebuilds on every change"
  "sync-rate-limit" "Gatehouse coalesces rebuilds itself"
  "election-ttl" "Gatehouse's Lease timings are fixed"
  "post-shutdown-grace-period" "Gatehouse exits once drained"
  "profiling" "an nginx controller debug endpoint"
  "healthz-port" "Gatehouse serves /healthz on the metrics port"
  "default-server-port" "an nginx internal port"
  "status-port" "an nginx internal port"
  "stream-port" "an nginx internal port"
  "ssl-passthrough-proxy-port" "an nginx internal port"
-}}
{{- $refusedArgs := dict
  "tcp-services-configmap" "Gatehouse proxies HTTP and HTTPS only"
  "udp-services-configmap" "Gatehouse proxies HTTP and HTTPS only"
  "disable-leader-election" "Gatehouse always elects one status writer"
  "report-node-internal-ip-address" "Gatehouse publishes the Service's or the given addresses (publish-status-address)"
  "enable-topology-aware-routing" "Gatehouse balances over all ready endpoints"
  "maxmind-license-key" "Gatehouse has no GeoIP"
-}}
{{- range $name, $value := $c.extraArgs -}}
{{- $text := toString $value -}}
{{- if has $name $switches -}}
{{- if has $text (list "" "true" "<nil>") -}}
{{- $_ := set $args $name "" -}}
{{- else if eq $text "false" -}}
{{- $_ := unset $args $name -}}
{{- else -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.extraArgs.%s" $name) "why" (printf "%q is neither true nor false; set one of them" $text)) -}}
{{- end -}}
{{- else if has $name $valued -}}
{{- $_ := set $args $name $text -}}
{{- else if has $name $mapped -}}
{{- else if eq $name "update-status" -}}
{{- if eq $text "false" -}}
{{- $_ := unset $args "publish-service" -}}
{{- $_ := unset $args "publish-status-address" -}}
{{- end -}}
{{- else if hasKey $quiet $name -}}
{{- $noEffect = append $noEffect (printf "controller.extraArgs.%s: %s" $name (get $quiet $name)) -}}
{{- else if hasKey $refusedArgs $name -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.extraArgs.%s" $name) "why" (printf "%s; remove it" (get $refusedArgs $name))) -}}
{{- else -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.extraArgs.%s" $name) "why" "Gatehouse has no such flag (gatehouse --help lists them); remove it") -}}
{{- end -}}
{{- end -}}

{{- /* As ingress-nginx: the Service's address wins over fixed ones. */ -}}
{{- if and (hasKey $args "publish-service") (hasKey $args "publish-status-address") -}}
{{- $_ := unset $args "publish-status-address" -}}
{{- $noEffect = append $noEffect "controller.extraArgs.publish-status-address: the Service's address is published while controller.publishService.enabled, as with ingress-nginx" -}}
{{- end -}}

{{- /* controller.config: Gatehouse's own list of ingress-nginx's keys
(files/config-keys.yaml). */ -}}
{{- $keys := $.Files.Get "files/config-keys.yaml" | fromYaml -}}
{{- range $key, $value := $c.config -}}
{{- $text := toString $value -}}
{{- $status := get $keys $key -}}
{{- $path := printf "controller.config.%s" $key -}}
{{- if eq $key "worker-shutdown-timeout" -}}
{{- /* Becomes --drain-timeout. */ -}}
{{- else if eq $status "applied" -}}
{{- else if eq $status "accepted" -}}
{{- $noEffect = append $noEffect (printf "%s: accepted without effect (docs/configuration.md)" $path) -}}
{{- else if eq $status "refused" -}}
{{- if ne $text "" -}}
{{- $refusals = append $refusals (dict "key" $path "why" "a snippet, refused by design; remove it and express it with annotations or ConfigMap keys Gatehouse applies (docs/configuration.md)") -}}
{{- end -}}
{{- else if eq $status "protective" -}}
{{- if not (has $text (list "" "false")) -}}
{{- $refusals = append $refusals (dict "key" $path "why" "a protection Gatehouse cannot enforce: every route it covers would answer 503; remove it and protect routes with annotations Gatehouse enforces (docs/annotations.md)") -}}
{{- end -}}
{{- else if eq $status "not-implemented" -}}
{{- $refusals = append $refusals (dict "key" $path "why" "not implemented by Gatehouse (docs/configuration.md); remove it") -}}
{{- else -}}
{{- $refusals = append $refusals (dict "key" $path "why" "not an ingress-nginx ConfigMap key; remove it") -}}
{{- end -}}
{{- end -}}

{{- /* Header values: those sent to endpoints expand a fixed set of
nginx variables (docs/annotations.md); response headers are static. */ -}}
{{- $known := list "host" "http_host" "best_http_host" "scheme" "pass_access_scheme" "request_uri" "escaped_request_uri" "request_method" "remote_addr" "args" "query_string" "is_args" -}}
{{- range $name, $value := $c.proxySetHeaders -}}
{{- range $var := regexFindAll "\\$\\{?[A-Za-z0-9_]*" (toString $value) -1 -}}
{{- $bare := trimPrefix "{" (trimPrefix "$" $var) -}}
{{- if not (or (has $bare $known) (regexMatch "^(http|cookie|arg)_[A-Za-z0-9_]+$" $bare)) -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.proxySetHeaders.%s" $name) "why" (printf "uses $%s, which Gatehouse does not expand (it expands $host, $http_host, $scheme, $request_uri, $escaped_request_uri, $request_method, $remote_addr, $args, $is_args, $http_<header>, $cookie_<name> and $arg_<name>); remove it or use those" $bare)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $value := $c.addHeaders -}}
{{- if contains "$" (toString $value) -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.addHeaders.%s" $name) "why" "uses nginx variables, which response headers do not expand here; give a fixed value") -}}
{{- end -}}
{{- end -}}

{{- /* The rest of the values. */ -}}
{{- if $v.tcp -}}
{{- $refusals = append $refusals (dict "key" "tcp" "why" "Gatehouse proxies HTTP and HTTPS only; keep ingress-nginx (or a Service of type LoadBalancer per port) for these TCP services") -}}
{{- end -}}
{{- if $v.udp -}}
{{- $refusals = append $refusals (dict "key" "udp" "why" "Gatehouse proxies HTTP and HTTPS only; keep ingress-nginx (or a Service of type LoadBalancer per port) for these UDP services") -}}
{{- end -}}
{{- $w := $c.admissionWebhooks -}}
{{- if and $w.enabled (not (include "gatehouse.webhookMode" .)) -}}
{{- $refusals = append $refusals (dict "key" "controller.admissionWebhooks.patch.enabled" "why" "false asks for a certificate made and a caBundle set outside the chart, which Gatehouse does not read: set it true (Gatehouse then keeps the webhook's certificate and caBundle itself, as the patch jobs would), or controller.admissionWebhooks.certManager.enabled: true") -}}
{{- end -}}
{{- if eq (include "gatehouse.webhookMode" .) "managed" -}}
{{- range $key := list "patch" "createSecretJob" "patchWebhookJob" -}}
{{- if gt (len (omit (get $w $key | default dict) "enabled")) 0 -}}
{{- $noEffect = append $noEffect (printf "controller.admissionWebhooks.%s: no certificate jobs are rendered; Gatehouse's elected replica creates the webhook's certificate and sets the caBundle itself" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $c.admissionWebhooks.enabled (not (has (toString $c.admissionWebhooks.failurePolicy) (list "Fail" "Ignore"))) -}}
{{- $refusals = append $refusals (dict "key" "controller.admissionWebhooks.failurePolicy" "why" "Fail or Ignore") -}}
{{- end -}}
{{- if not (has $c.kind (list "Deployment" "DaemonSet")) -}}
{{- $refusals = append $refusals (dict "key" "controller.kind" "why" (printf "%q: Deployment or DaemonSet" $c.kind)) -}}
{{- end -}}
{{- if and $c.hostNetwork (not (or $c.containerPort.http (index $c.extraArgs "http-port"))) -}}
{{- $refusals = append $refusals (dict "key" "controller.hostNetwork" "why" "Gatehouse would listen on the node's ports 8080 and 8443, not 80 and 443: it runs without privileges; set controller.containerPort.http and .https to the node ports to listen on (80 and 443 also need controller.image.runAsUser: 0 and runAsNonRoot: false), or use controller.hostPort instead") -}}
{{- end -}}
{{- if and (or (lt ($ports.http | int) 1024) (lt ($ports.https | int) 1024)) (ne ($c.image.runAsUser | int) 0) -}}
{{- $refusals = append $refusals (dict "key" "controller.containerPort" "why" "ports below 1024 need privileges Gatehouse does not take as uid 65532; set controller.image.runAsUser: 0 and runAsNonRoot: false (the container keeps NET_BIND_SERVICE only), or listen on ports from 1024") -}}
{{- end -}}
{{- if le ($c.terminationGracePeriodSeconds | int) (add $grace $drain | int) -}}
{{- $refusals = append $refusals (dict "key" "controller.terminationGracePeriodSeconds" "why" (printf "%v s does not cover Gatehouse's shutdown grace (%d s) plus drain (%d s); raise it above %d, or lower gatehouse.drainTimeoutSeconds (controller.config.worker-shutdown-timeout)" $c.terminationGracePeriodSeconds $grace $drain (add $grace $drain))) -}}
{{- end -}}
{{- range $key, $why := dict "disableLeaderElection" "Gatehouse always elects one status writer" "reportNodeInternalIp" "Gatehouse publishes the Service's address, or publish-status-address (controller.extraArgs)" "enableTopologyAwareRouting" "Gatehouse balances over all ready endpoints" "maxmindLicenseKey" "Gatehouse has no GeoIP" "extraModules" "nginx modules do not load into Gatehouse" -}}
{{- if get $c $key -}}
{{- $refusals = append $refusals (dict "key" (printf "controller.%s" $key) "why" (printf "%s; remove it" $why)) -}}
{{- end -}}
{{- end -}}
{{- if dig "customTemplate" "configMapName" "" $c -}}
{{- $refusals = append $refusals (dict "key" "controller.customTemplate" "why" "Gatehouse generates no nginx.conf; remove it and express its changes with annotations or ConfigMap keys Gatehouse applies") -}}
{{- end -}}
{{- if dig "keda" "enabled" false $c -}}
{{- $refusals = append $refusals (dict "key" "controller.keda.enabled" "why" "not rendered by this chart; use controller.autoscaling") -}}
{{- end -}}
{{- if dig "networkPolicy" "enabled" false $c -}}
{{- $refusals = append $refusals (dict "key" "controller.networkPolicy.enabled" "why" "not rendered by this chart yet; write the NetworkPolicy beside it") -}}
{{- end -}}
{{- if include "gatehouse.nginxImage" . -}}
{{- $noEffect = append $noEffect (printf "controller.image (%s): the ingress-nginx image; gatehouse:%s is used (set controller.image.image to Gatehouse's)" (default $c.image.repository $c.image.image) $.Chart.AppVersion) -}}
{{- end -}}
{{- range $key := list "chroot" "digestChroot" -}}
{{- if get $c.image $key -}}
{{- $noEffect = append $noEffect (printf "controller.image.%s: the nginx chroot image" $key) -}}
{{- end -}}
{{- end -}}
{{- range $key, $why := dict "enableMimalloc" "an nginx allocator" "electionTTL" "Gatehouse's Lease timings are fixed" "healthCheckHost" "Gatehouse serves /healthz on the metrics port" "ingressClassByName" "Gatehouse always serves the IngressClass named by controller.ingressClass" "enableAnnotationValidations" "Gatehouse always parses annotations into typed values" "name" "the objects are named after the release alone" "containerName" "the container is named gatehouse" "hostname" "not rendered by this chart" -}}
{{- if hasKey $c $key -}}
{{- $noEffect = append $noEffect (printf "controller.%s: %s" $key $why) -}}
{{- end -}}
{{- end -}}
{{- if and $c.healthCheckPath (ne $c.healthCheckPath "/healthz") -}}
{{- $noEffect = append $noEffect "controller.healthCheckPath: Gatehouse serves /healthz and /readyz" -}}
{{- end -}}
{{- if $v.defaultBackend.enabled -}}
{{- range $key := list "livenessProbe" "readinessProbe" "updateStrategy" "minReadySeconds" "topologySpreadConstraints" "podSecurityContext" "containerSecurityContext" "autoscaling" "networkPolicy" "priorityClassName" "runtimeClassName" "labels" "serviceAccount" "minAvailable" "unhealthyPodEvictionPolicy" "extraVolumes" "extraVolumeMounts" "extraConfigMaps" -}}
{{- if hasKey $v.defaultBackend $key -}}
{{- $noEffect = append $noEffect (printf "defaultBackend.%s: not rendered by this chart's default backend" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $c.ingressClassResource.parameters -}}
{{- $noEffect = append $noEffect "controller.ingressClassResource.parameters: Gatehouse reads no IngressClass parameters" -}}
{{- end -}}
{{- if $v.dhParam -}}
{{- $noEffect = append $noEffect "dhParam: Gatehouse offers no DHE cipher suites (rustls)" -}}
{{- end -}}
{{- if $v.portNamePrefix -}}
{{- $noEffect = append $noEffect "portNamePrefix: names tcp and udp ports, which Gatehouse does not have" -}}
{{- end -}}
{{- if include "gatehouse.nginxLifecycle" . -}}
{{- $noEffect = append $noEffect "controller.lifecycle: nginx's /wait-shutdown; Gatehouse drains on SIGTERM itself" -}}
{{- end -}}
{{- if eq (dig "httpGet" "path" "" $c.readinessProbe) "/healthz" -}}
{{- $noEffect = append $noEffect "controller.readinessProbe.httpGet.path: /healthz becomes /readyz, which says 503 until the first table is built and while draining" -}}
{{- end -}}

{{- $accept := $v.gatehouse.acceptUnsupported | default list -}}
{{- $refused := list -}}
{{- $accepted := list -}}
{{- range $refusals -}}
{{- if has .key $accept -}}
{{- $accepted = append $accepted (printf "%s: %s" .key .why) -}}
{{- else -}}
{{- $refused = append $refused (printf "%s: %s" .key .why) -}}
{{- end -}}
{{- end -}}
{{- $refusedKeys := list -}}
{{- range $refusals -}}{{- $refusedKeys = append $refusedKeys .key -}}{{- end -}}
{{- range $accept -}}
{{- if not (has . $refusedKeys) -}}
{{- $noEffect = append $noEffect (printf "gatehouse.acceptUnsupported: %s names nothing the install refuses" .) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "args" $args "refused" $refused "accepted" $accepted "noEffect" $noEffect) -}}
{{- end -}}

{{/* ingress-nginx's preStop hook, which its image alone has. */}}
{{- define "gatehouse.nginxLifecycle" -}}
{{- if contains "/wait-shutdown" (toYaml .Values.controller.lifecycle) -}}true{{- end -}}
{{- end -}}

{{/* The container's args, from the plan. */}}
{{- define "gatehouse.args" -}}
{{- $plan := include "gatehouse.plan" . | fromYaml -}}
{{- range $name, $value := $plan.args }}
- {{ if eq (toString $value) "" }}--{{ $name }}{{ else }}{{ printf "--%s=%s" $name (toString $value) | quote }}{{ end }}
{{- end }}
{{- end -}}
