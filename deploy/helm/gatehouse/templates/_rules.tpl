{{/* Rules on namespaced kinds: what a Role in a watched namespace needs. */}}
{{- define "gatehouse.namespacedRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses/status"]
  verbs: ["update", "patch"]
- apiGroups: [""]
  resources: ["services", "secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
# The ACME manager (on the elected replica) creates Secrets, and replaces
# them only at the resourceVersion it read; it never deletes one.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create", "update"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways", "httproutes", "grpcroutes", "referencegrants"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gateways/status", "httproutes/status", "grpcroutes/status"]
  verbs: ["patch", "update"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Rules on cluster-scoped kinds. */}}
{{- define "gatehouse.clusterRules" -}}
- apiGroups: ["networking.k8s.io"]
  resources: ["ingressclasses"]
  verbs: ["get", "list", "watch"]
# With --watch-namespace-selector: which namespaces carry its labels; with
# the Gateway API: their labels, for allowedRoutes selectors.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["gatewayclasses/status"]
  verbs: ["patch", "update"]
- apiGroups: ["gatehouse.dev"]
  resources: ["acmeissuers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gatehouse.dev"]
  resources: ["acmeissuers/status"]
  verbs: ["update"]
# Which CRDs exist, names only: the watches of the Gateway API and of
# AcmeIssuers start and stop with their CRDs, without a restart.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end -}}
