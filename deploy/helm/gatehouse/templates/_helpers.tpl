{{/* Names and labels, as ingress-nginx's chart builds them. */}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Released as "gatehouse" (the usual name), every object is called
"gatehouse", as deploy/ calls them. */}}
{{- define "gatehouse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: gatehouse
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.electionID" -}}
{{- default (printf "%s-leader" (include "gatehouse.fullname" .)) .Values.controller.electionID -}}
{{- end -}}

{{/* Where the webhook's certificate comes from: "cert-manager"; "managed",
Gatehouse keeps it itself (what ingress-nginx's patch jobs do, so
admissionWebhooks.patch.enabled asks for it); or nothing (no webhook, or
one the plan refuses). */}}
{{- define "gatehouse.webhookMode" -}}
{{- $w := .Values.controller.admissionWebhooks -}}
{{- if $w.enabled -}}
{{- if dig "certManager" "enabled" false $w -}}cert-manager
{{- else if dig "patch" "enabled" true $w -}}managed
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.defaultBackend.fullname" -}}
{{- printf "%s-%s" (include "gatehouse.fullname" .) .Values.defaultBackend.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* ingress-nginx's controller image, named in a values file written for
it: it has no effect here. */}}
{{- define "gatehouse.nginxImage" -}}
{{- $image := printf "%s %s" (.Values.controller.image.image | default "") (.Values.controller.image.repository | default "") -}}
{{- if or (contains "ingress-nginx/controller" $image) (contains "nginx-ingress-controller" $image) -}}
true
{{- end -}}
{{- end -}}

{{/* registry/image:tag@digest, as ingress-nginx composes it. */}}
{{- define "gatehouse.image" -}}
{{- $image := .Values.controller.image -}}
{{- if include "gatehouse.nginxImage" . -}}
{{- printf "gatehouse:%s" .Chart.AppVersion -}}
{{- else -}}
{{- $registry := default .Values.global.image.registry $image.registry -}}
{{- $name := ternary $image.image (printf "%s/%s" $registry $image.image) (empty $registry) -}}
{{- $ref := printf "%s:%s" $name (default .Chart.AppVersion $image.tag) -}}
{{- if $image.digest -}}{{- $ref = printf "%s@%s" $ref $image.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}
{{- end -}}

{{/* The ports Gatehouse listens on in the Pod. */}}
{{- define "gatehouse.containerPort" -}}
http: {{ .Values.controller.containerPort.http | default (index .Values.controller.extraArgs "http-port") | default 8080 }}
https: {{ .Values.controller.containerPort.https | default (index .Values.controller.extraArgs "https-port") | default 8443 }}
{{- end -}}

{{/* Seconds of drain: worker-shutdown-timeout is ingress-nginx's word for
the time in-flight requests get after SIGTERM ("240s", "4m"). */}}
{{- define "gatehouse.drainSeconds" -}}
{{- $timeout := index .Values.controller.config "worker-shutdown-timeout" -}}
{{- if $timeout -}}
{{- $text := toString $timeout -}}
{{- if hasSuffix "m" $text -}}{{- mul (trimSuffix "m" $text | int) 60 -}}
{{- else if hasSuffix "h" $text -}}{{- mul (trimSuffix "h" $text | int) 3600 -}}
{{- else -}}{{- trimSuffix "s" $text | int -}}
{{- end -}}
{{- else -}}
{{- .Values.gatehouse.drainTimeoutSeconds | int -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.shutdownGraceSeconds" -}}
{{- index .Values.controller.extraArgs "shutdown-grace-period" | default .Values.gatehouse.shutdownGraceSeconds | int -}}
{{- end -}}
