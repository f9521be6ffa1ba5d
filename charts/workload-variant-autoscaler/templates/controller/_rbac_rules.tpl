{{/* Generated from src/controller/rbac.rs (WVA_BLESS=1 cargo test -p wva rbac). Do not edit. */}}

{{- define "wva.rules.watched" -}}
# the VAs to manage (get: the guides check access with `kubectl auth can-i get`)
- apiGroups: ["llmd.ai"]
  resources: ["variantautoscalings"]
  verbs: ["get", "list", "watch"]
# server-side apply of the VA status
- apiGroups: ["llmd.ai"]
  resources: ["variantautoscalings/status"]
  verbs: ["patch"]
# replicas of each variant, discovery mode
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch"]
# live pods of each Deployment, to drop series of pods that are gone
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# HPAs annotated llm-d.ai/managed (variants without a VA), and the bounds of every variant
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch"]
# ScaledObjects annotated llm-d.ai/managed, and bounds; ignored until KEDA is installed
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch"]
# LeaderWorkerSets as scale targets (groups); ignored until their CRD is installed
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["list", "watch"]
# Events on VAs, annotated HPAs and ScaledObjects, and ConfigMaps
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{- define "wva.rules.own" -}}
# the configuration ConfigMaps, reloaded live
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
# leader election: the Lease is created once (create cannot be limited by name)
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
# leader election: read and renew its own Lease only
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "update"]
  resourceNames: [{{ include "wva.leaseName" . }}]
# Events on invalid ConfigMaps
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{- define "wva.rules.sharded" -}}
# shards: list the shard and membership Leases and renew the ones held (their names follow the shard count and the replica, so they cannot be listed here)
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "update"]
{{- end -}}

{{- define "wva.rules.pool" -}}
# accelerator pool: what each node can allocate, of which accelerator type
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["list", "watch"]
# accelerator pool: what the pods of every namespace hold on their nodes
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end -}}

{{- define "wva.rules.cluster" -}}
# authenticate scrapers of the metrics endpoint
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# authorize scrapers of the metrics endpoint (GET /metrics)
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}
