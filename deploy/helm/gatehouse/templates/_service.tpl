{{/* The spec of the external or the internal Service, as ingress-nginx
renders it: 80 and 443 to the Pod's http and https ports. */}}
{{- define "gatehouse.serviceSpec" -}}
{{- $svc := .svc -}}
{{- $root := .root -}}
type: {{ $svc.type }}
{{- with $svc.clusterIP }}
clusterIP: {{ . }}
{{- end }}
{{- with $svc.clusterIPs }}
clusterIPs:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.externalIPs }}
externalIPs:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.loadBalancerIP }}
loadBalancerIP: {{ . }}
{{- end }}
{{- with $svc.loadBalancerSourceRanges }}
loadBalancerSourceRanges:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.loadBalancerClass }}
loadBalancerClass: {{ . }}
{{- end }}
{{- if hasKey $svc "allocateLoadBalancerNodePorts" }}
allocateLoadBalancerNodePorts: {{ $svc.allocateLoadBalancerNodePorts }}
{{- end }}
{{- if and $svc.externalTrafficPolicy (ne $svc.type "ClusterIP") }}
externalTrafficPolicy: {{ $svc.externalTrafficPolicy }}
{{- end }}
{{- with $svc.sessionAffinity }}
sessionAffinity: {{ . }}
{{- end }}
{{- with $svc.healthCheckNodePort }}
healthCheckNodePort: {{ . }}
{{- end }}
{{- with $svc.trafficDistribution }}
trafficDistribution: {{ . }}
{{- end }}
{{- with $svc.ipFamilyPolicy }}
ipFamilyPolicy: {{ . }}
{{- end }}
{{- with $svc.ipFamilies }}
ipFamilies:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $nodePorts := or (eq $svc.type "NodePort") (eq $svc.type "LoadBalancer") }}
ports:
{{- range $name := list "http" "https" }}
{{- if ne (get $.enable $name) false }}
- name: {{ $name }}
  port: {{ get $svc.ports $name | default (get $root.Values.controller.service.ports $name) }}
  protocol: TCP
  targetPort: {{ get $svc.targetPorts $name | default (get $root.Values.controller.service.targetPorts $name) }}
  {{- if $svc.appProtocol }}
  appProtocol: {{ $name }}
  {{- end }}
  {{- if and $nodePorts (get $svc.nodePorts $name) }}
  nodePort: {{ get $svc.nodePorts $name }}
  {{- end }}
{{- end }}
{{- end }}
selector:
  {{- include "gatehouse.selectorLabels" $root | nindent 2 }}
{{- end -}}
