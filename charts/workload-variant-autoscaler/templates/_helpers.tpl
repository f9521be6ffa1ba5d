{{/*
Names, labels and the install-mode switches shared by every template.
*/}}

{{/* The install mode, checked: a typo fails the render instead of installing nothing. */}}
{{- define "wva.mode" -}}
{{- $modes := list "all" "controller-only" "model-resources-only" -}}
{{- if not (has .Values.installMode $modes) -}}
{{- fail (printf "installMode: expected one of all, controller-only, model-resources-only; got %q" (toString .Values.installMode)) -}}
{{- end -}}
{{- .Values.installMode -}}
{{- end -}}

{{/* "true" when this release installs the controller. */}}
{{- define "wva.installsController" -}}
{{- $mode := include "wva.mode" . -}}
{{- if and (ne $mode "model-resources-only") .Values.wva.enabled -}}true{{- end -}}
{{- end -}}

{{/* "true" when this release installs one model's resources. */}}
{{- define "wva.installsModel" -}}
{{- $mode := include "wva.mode" . -}}
{{- if ne $mode "controller-only" -}}true{{- end -}}
{{- end -}}

{{/* Base name of the controller's objects; fixed, as the ConfigMap names the controller reads are. */}}
{{- define "wva.name" -}}workload-variant-autoscaler{{- end -}}

{{/* The leader-election Lease as the controller names it: a shadow's is its own (`--shadow`
appends -shadow to LEADER_ELECTION_ID). */}}
{{- define "wva.leaseName" -}}{{ include "wva.name" . }}-leader{{ if .Values.wva.shadow }}-shadow{{ end }}{{- end -}}

{{- define "wva.controllerName" -}}{{ include "wva.name" . }}-controller-manager{{- end -}}

{{/* The main ConfigMap, read by the controller at start-up (CONFIG_MAP_NAME). */}}
{{- define "wva.mainConfigMap" -}}{{ include "wva.name" . }}-variantautoscaling-config{{- end -}}

{{- define "wva.metricsService" -}}{{ include "wva.controllerName" . }}-metrics-service{{- end -}}

{{/* Name of the metrics port, on the container, the Service and the ServiceMonitor alike. */}}
{{- define "wva.metricsPortName" -}}{{ ternary "https" "http-metrics" .Values.wva.metrics.secure }}{{- end -}}

{{/* Cluster-scoped objects carry the release namespace, so two controllers never share one. */}}
{{- define "wva.clusterName" -}}{{ include "wva.name" . }}-{{ .Release.Namespace }}{{- end -}}

{{- define "wva.chartLabel" -}}{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}{{- end -}}

{{- define "wva.commonLabels" -}}
helm.sh/chart: {{ include "wva.chartLabel" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "wva.name" . }}
{{- end -}}

{{- define "wva.controllerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "wva.name" . }}
control-plane: controller-manager
{{- end -}}

{{- define "wva.controllerLabels" -}}
{{ include "wva.commonLabels" . }}
{{ include "wva.controllerSelectorLabels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "wva.modelLabels" -}}
{{ include "wva.commonLabels" . }}
app.kubernetes.io/name: {{ include "wva.name" . }}
llm-d.ai/model: {{ .Values.llmd.modelName | quote }}
{{- end -}}

{{/* The namespace watched when namespace-scoped. */}}
{{- define "wva.watchNamespace" -}}
{{- default .Values.llmd.namespace .Values.wva.watchNamespace -}}
{{- end -}}

{{/* The Deployment the model's VA and HPA scale. */}}
{{- define "wva.scaleTarget" -}}
{{- default (printf "%s-decode" .Values.llmd.modelName) .Values.llmd.scaleTargetName -}}
{{- end -}}

{{/* Hybrid mode as on/off/model-only: YAML 1.1 reads a bare on/off as a boolean. */}}
{{- define "wva.hybridMode" -}}
{{- $v := .Values.wva.experimentalHybridOptimization -}}
{{- if kindIs "bool" $v -}}{{- ternary "on" "off" $v -}}
{{- else if has (toString $v) (list "on" "off" "model-only") -}}{{- toString $v -}}
{{- else -}}
{{- fail (printf "wva.experimentalHybridOptimization: expected on, off or model-only; got %q" (toString $v)) -}}
{{- end -}}
{{- end -}}

{{/* The image reference of the controller. */}}
{{- define "wva.image" -}}
{{- printf "%s:%s" .Values.wva.image.repository (default .Chart.AppVersion .Values.wva.image.tag) -}}
{{- end -}}

{{/*
The labels that pick this variant's series, in a fixed order, as a JSON list of [name, value]:
the HPA selects on them and the KEDA query filters on them.
*/}}
{{- define "wva.seriesLabels" -}}
{{- $labels := list (list "variant_name" (include "wva.scaleTarget" .)) (list "exported_namespace" .Values.llmd.namespace) -}}
{{- with .Values.wva.controllerInstance -}}
{{- $labels = append $labels (list "controller_instance" .) -}}
{{- end -}}
{{- toJson $labels -}}
{{- end -}}

{{/* The published desired-replicas series name. */}}
{{- define "wva.desiredMetric" -}}
{{- if not (has .Values.wva.metricsPrefix (list "inferno" "wva")) -}}
{{- fail (printf "wva.metricsPrefix: expected inferno or wva; got %q" (toString .Values.wva.metricsPrefix)) -}}
{{- end -}}
{{- printf "%s_desired_replicas" .Values.wva.metricsPrefix -}}
{{- end -}}

{{/*
One capacity-scaling entry as YAML. `--set` passes 0.7 as the string "0.7", so thresholds are
turned back into numbers here, and fractions are checked to lie in 0..1.
*/}}
{{- define "wva.capacityEntry" -}}
{{- $out := dict -}}
{{- range $key, $value := .entry -}}
{{- if has $key (list "kvCacheThreshold" "queueLengthThreshold" "kvSpareTrigger" "queueSpareTrigger") -}}
{{- if not (regexMatch "^[0-9]+([.][0-9]+)?$" (toString $value)) -}}
{{- fail (printf "%s.%s: expected a number, got %q" $.path $key (toString $value)) -}}
{{- end -}}
{{- $n := float64 $value -}}
{{- if and (has $key (list "kvCacheThreshold" "kvSpareTrigger")) (gt $n 1.0) -}}
{{- fail (printf "%s.%s: expected a fraction between 0 and 1, got %v" $.path $key $value) -}}
{{- end -}}
{{- $_ := set $out $key $n -}}
{{- else -}}
{{- $_ := set $out $key $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- /* The Secret holding the metrics endpoint's serving certificate; empty when the controller
makes a self-signed one at start-up (or metrics are plain HTTP). */ -}}
{{- define "wva.metricsCertSecret" -}}
{{- $m := .Values.wva.metrics -}}
{{- if $m.secure -}}
{{- if $m.certSecretName -}}
{{ $m.certSecretName }}
{{- else if has $m.certificate (list "chart" "cert-manager") -}}
{{ include "wva.controllerName" . }}-metrics-cert
{{- else if ne $m.certificate "self-signed" -}}
{{- fail (printf "wva.metrics.certificate: expected chart, cert-manager or self-signed; got %q" (toString $m.certificate)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
