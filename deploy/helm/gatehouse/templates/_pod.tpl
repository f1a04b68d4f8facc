{{/* The Pod: hardened as deploy/'s, probed on /healthz and /readyz, given
time to drain. */}}
{{- define "gatehouse.podTemplate" -}}
{{- $c := .Values.controller -}}
{{- $ports := include "gatehouse.containerPort" . | fromYaml -}}
{{- $lowPorts := or (lt ($ports.http | int) 1024) (lt ($ports.https | int) 1024) -}}
{{- $webhook := include "gatehouse.webhookMode" . -}}
{{- $mounted := eq $webhook "cert-manager" -}}
metadata:
  labels:
    {{- include "gatehouse.selectorLabels" . | nindent 4 }}
    {{- with $c.podLabels }}{{ toYaml . | nindent 4 }}{{ end }}
  annotations:
    {{- $scrape := dict "prometheus.io/scrape" "true" "prometheus.io/port" (toString $c.metrics.port) }}
    {{- toYaml (merge (dict) $c.podAnnotations $scrape) | nindent 4 }}
spec:
  serviceAccountName: {{ include "gatehouse.serviceAccountName" . }}
  # Longer than Gatehouse's shutdown grace plus its drain timeout.
  terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $c.hostNetwork }}
  hostNetwork: true
  {{- end }}
  {{- with $c.dnsPolicy }}
  dnsPolicy: {{ . }}
  {{- end }}
  {{- with $c.dnsConfig }}
  dnsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.hostAliases }}
  hostAliases:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $c.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- if $c.shareProcessNamespace }}
  shareProcessNamespace: true
  {{- end }}
  {{- /* The values' security contexts add to the hardening, field by
  field, rather than replace it. */}}
  {{- $pod := dict "runAsNonRoot" $c.image.runAsNonRoot "runAsUser" $c.image.runAsUser "runAsGroup" $c.image.runAsGroup }}
  {{- with $c.image.seccompProfile }}{{ $_ := set $pod "seccompProfile" . }}{{ end }}
  {{- range $field, $value := $c.podSecurityContext }}{{ $_ := set $pod $field $value }}{{ end }}
  securityContext:
    {{- toYaml $pod | nindent 4 }}
    {{- if $c.sysctls }}
    sysctls:
    {{- range $name, $value := $c.sysctls }}
    - name: {{ $name | quote }}
      value: {{ $value | quote }}
    {{- end }}
    {{- end }}
  {{- with $c.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $c.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- tpl (toYaml .) $ | nindent 4 }}
  {{- end }}
  {{- with $c.extraInitContainers }}
  initContainers:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
  - name: gatehouse
    image: {{ include "gatehouse.image" . }}
    imagePullPolicy: {{ $c.image.pullPolicy }}
    args:
    {{- include "gatehouse.args" . | trim | nindent 4 }}
    env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: RUST_LOG
      value: info
    {{- with $c.extraEnvs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    ports:
    - name: http
      containerPort: {{ $ports.http }}
      protocol: TCP
      {{- if $c.hostPort.enabled }}
      hostPort: {{ $c.hostPort.ports.http }}
      {{- end }}
    - name: https
      containerPort: {{ $ports.https }}
      protocol: TCP
      {{- if $c.hostPort.enabled }}
      hostPort: {{ $c.hostPort.ports.https }}
      {{- end }}
    - name: {{ $c.metrics.portName }}
      containerPort: {{ $c.metrics.port }}
      protocol: TCP
    {{- if $webhook }}
    - name: webhook
      containerPort: {{ $c.admissionWebhooks.port }}
      protocol: TCP
    {{- end }}
    {{- with $c.livenessProbe }}
    livenessProbe:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $c.readinessProbe }}
    {{- $probe := deepCopy . }}
    {{- if eq (dig "httpGet" "path" "" $probe) "/healthz" }}
    {{- $_ := set $probe.httpGet "path" "/readyz" }}
    {{- end }}
    readinessProbe:
      {{- toYaml $probe | nindent 6 }}
    {{- end }}
    {{- with $c.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $c.resizePolicy }}
    resizePolicy:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if and $c.lifecycle (not (include "gatehouse.nginxLifecycle" .)) }}
    lifecycle:
      {{- toYaml $c.lifecycle | nindent 6 }}
    {{- end }}
    {{- $capabilities := dict "drop" (list "ALL") }}
    {{- if $lowPorts }}{{ $_ := set $capabilities "add" (list "NET_BIND_SERVICE") }}{{ end }}
    {{- $container := dict "allowPrivilegeEscalation" $c.image.allowPrivilegeEscalation "readOnlyRootFilesystem" $c.image.readOnlyRootFilesystem "capabilities" $capabilities }}
    {{- range $field, $value := $c.containerSecurityContext }}{{ $_ := set $container $field $value }}{{ end }}
    securityContext:
      {{- toYaml $container | nindent 6 }}
    {{- if or $mounted $c.extraVolumeMounts }}
    volumeMounts:
    {{- if $mounted }}
    - name: webhook-certificate
      mountPath: /etc/gatehouse/webhook
      readOnly: true
    {{- end }}
    {{- with $c.extraVolumeMounts }}
      {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- end }}
  {{- with $c.extraContainers }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if or $mounted $c.extraVolumes }}
  volumes:
  {{- if $mounted }}
  - name: webhook-certificate
    secret:
      secretName: {{ include "gatehouse.fullname" . }}-admission-tls
  {{- end }}
  {{- with $c.extraVolumes }}
    {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- end }}
{{- end -}}
