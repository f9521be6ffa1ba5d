{{- /*
The controller's pod template, shared by its two workload forms (Deployment, StatefulSet).
*/ -}}
{{- define "wva.controllerPodTemplate" -}}
{{- $p := .Values.wva.prometheus }}
{{- $m := .Values.wva.metrics }}
{{- $cert := include "wva.metricsCertSecret" . }}
template:
  metadata:
    labels:
      {{- include "wva.controllerLabels" . | nindent 6 }}
    annotations:
      kubectl.kubernetes.io/default-container: manager
      checksum/config: {{ include (print $.Template.BasePath "/controller/configmaps.yaml") . | sha256sum }}
      {{- with .Values.wva.podAnnotations }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  spec:
    serviceAccountName: {{ include "wva.controllerName" . }}
    automountServiceAccountToken: true
    terminationGracePeriodSeconds: {{ int .Values.wva.terminationGracePeriodSeconds }}
    {{- with .Values.wva.priorityClassName }}
    priorityClassName: {{ . }}
    {{- end }}
    {{- with .Values.wva.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    securityContext:
      runAsNonRoot: true
      runAsUser: 65532
      runAsGroup: 65532
      fsGroup: 65532
      fsGroupChangePolicy: OnRootMismatch
      seccompProfile:
        type: RuntimeDefault
    containers:
      - name: manager
        image: {{ include "wva.image" . | quote }}
        imagePullPolicy: {{ .Values.wva.imagePullPolicy }}
        args:
          - run
          {{- if .Values.wva.namespaceScoped }}
          - --watch-namespace={{ include "wva.watchNamespace" . }}
          {{- end }}
          {{- if gt (int .Values.wva.shards) 1 }}
          {{- if not .Values.wva.leaderElection.enabled }}
          {{- fail (printf "wva.shards: %d shards are held through Leases; set wva.leaderElection.enabled: true" (int .Values.wva.shards)) }}
          {{- end }}
          {{- if .Values.wva.externalScaler.enabled }}
          {{- fail (printf "wva.externalScaler.enabled: a replica's external scaler answers only for the models of its own shards (wva.shards: %d); with shards, use keda.mode: prometheus and leave wva.externalScaler.enabled false" (int .Values.wva.shards)) }}
          {{- end }}
          - --shards={{ int .Values.wva.shards }}
          {{- end }}
          {{- if .Values.wva.shadow }}
          {{- if .Values.wva.externalScaler.enabled }}
          {{- fail "wva.shadow: a shadow's answers must not reach KEDA; leave wva.externalScaler.enabled false" }}
          {{- end }}
          {{- if ne .Values.installMode "controller-only" }}
          {{- fail (printf "wva.shadow: a shadow installs no model resources (no HPA or ScaledObject may read it); set installMode: controller-only, got %s" .Values.installMode) }}
          {{- end }}
          - --shadow
          {{- end }}
        env:
          - name: POD_NAMESPACE
            valueFrom:
              fieldRef:
                fieldPath: metadata.namespace
          - name: POD_NAME
            valueFrom:
              fieldRef:
                fieldPath: metadata.name
          - name: CONFIG_MAP_NAME
            value: {{ include "wva.mainConfigMap" . }}
          - name: WVA_DATA_DIR
            value: /var/lib/wva
          - name: METRICS_BIND_ADDRESS
            value: {{ printf "0.0.0.0:%d" (int $m.port) | quote }}
          - name: METRICS_SECURE
            value: {{ $m.secure | quote }}
          {{- if $cert }}
          - name: METRICS_CERT_PATH
            value: /etc/wva/metrics-cert/tls.crt
          - name: METRICS_KEY_PATH
            value: /etc/wva/metrics-cert/tls.key
          {{- end }}
          - name: HEALTH_PROBE_BIND_ADDRESS
            value: {{ printf "0.0.0.0:%d" (int .Values.wva.healthProbePort) | quote }}
          - name: LEADER_ELECT
            value: {{ .Values.wva.leaderElection.enabled | quote }}
          - name: LEADER_ELECTION_ID
            value: {{ include "wva.name" . }}-leader
          # The Prometheus connection, from the chart's values only (the main ConfigMap is not
          # trusted with it).
          - name: PROMETHEUS_FROM_CONFIG_MAP
            value: "false"
          - name: PROMETHEUS_BASE_URL
            value: {{ required "wva.prometheus.baseURL: the Prometheus (or Thanos Querier) URL is required" $p.baseURL | quote }}
          - name: PROMETHEUS_ALLOW_HTTP
            value: {{ $p.allowHTTP | quote }}
          - name: PROMETHEUS_TLS_INSECURE_SKIP_VERIFY
            value: {{ $p.tls.insecureSkipVerify | quote }}
          {{- if $p.caCert }}
          - name: PROMETHEUS_CA_CERT_PATH
            value: {{ $p.tls.caCertPath | quote }}
          {{- end }}
          {{- if $p.tls.serverName }}
          - name: PROMETHEUS_SERVER_NAME
            value: {{ $p.tls.serverName | quote }}
          {{- end }}
          {{- if $p.tls.clientCertSecretName }}
          - name: PROMETHEUS_CLIENT_CERT_PATH
            value: /etc/wva/prometheus-client/tls.crt
          - name: PROMETHEUS_CLIENT_KEY_PATH
            value: /etc/wva/prometheus-client/tls.key
          {{- end }}
          {{- if and $p.useServiceAccountToken (not $p.bearerTokenSecret.name) }}
          - name: PROMETHEUS_TOKEN_PATH
            value: /var/run/secrets/wva/prometheus/token
          {{- end }}
          - name: PROMETHEUS_QUERY_TIMEOUT
            value: {{ $p.queryTimeout | quote }}
          - name: PROMETHEUS_QUERY_RETRIES
            value: {{ $p.queryRetries | quote }}
          {{- if $p.bearerTokenSecret.name }}
          - name: PROMETHEUS_BEARER_TOKEN
            valueFrom:
              secretKeyRef:
                name: {{ $p.bearerTokenSecret.name }}
                key: {{ $p.bearerTokenSecret.key }}
          {{- end }}
          {{- if .Values.wva.externalScaler.enabled }}
          - name: EXTERNAL_SCALER_BIND_ADDRESS
            value: {{ printf "0.0.0.0:%d" (int .Values.wva.externalScaler.port) | quote }}
          {{- if .Values.wva.externalScaler.tlsSecretName }}
          - name: EXTERNAL_SCALER_CERT_PATH
            value: /etc/wva/external-scaler-cert/tls.crt
          - name: EXTERNAL_SCALER_KEY_PATH
            value: /etc/wva/external-scaler-cert/tls.key
          {{- end }}
          {{- end }}
          - name: LOG_LEVEL
            value: {{ .Values.wva.logging.level | quote }}
          - name: LOG_FORMAT
            value: {{ .Values.wva.logging.format | quote }}
        ports:
          - name: health
            containerPort: {{ int .Values.wva.healthProbePort }}
            protocol: TCP
          - name: {{ include "wva.metricsPortName" . }}
            containerPort: {{ int $m.port }}
            protocol: TCP
          {{- if .Values.wva.externalScaler.enabled }}
          - name: grpc
            containerPort: {{ int .Values.wva.externalScaler.port }}
            protocol: TCP
          {{- end }}
        livenessProbe:
          httpGet:
            path: /healthz
            port: health
          initialDelaySeconds: 10
          periodSeconds: 20
        readinessProbe:
          httpGet:
            path: /readyz
            port: health
          initialDelaySeconds: 5
          periodSeconds: 10
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities:
            drop: ["ALL"]
        resources:
          {{- toYaml .Values.wva.resources | nindent 10 }}
        volumeMounts:
          - name: data
            mountPath: /var/lib/wva
          - name: tmp
            mountPath: /tmp
          {{- if $p.caCert }}
          - name: prometheus-ca
            mountPath: {{ $p.tls.caCertPath }}
            subPath: ca.crt
            readOnly: true
          {{- end }}
          {{- if $p.tls.clientCertSecretName }}
          - name: prometheus-client
            mountPath: /etc/wva/prometheus-client
            readOnly: true
          {{- end }}
          {{- if and $p.useServiceAccountToken (not $p.bearerTokenSecret.name) }}
          - name: prometheus-token
            mountPath: /var/run/secrets/wva/prometheus
            readOnly: true
          {{- end }}
          {{- if $cert }}
          - name: metrics-cert
            mountPath: /etc/wva/metrics-cert
            readOnly: true
          {{- end }}
          {{- if and .Values.wva.externalScaler.enabled .Values.wva.externalScaler.tlsSecretName }}
          - name: external-scaler-cert
            mountPath: /etc/wva/external-scaler-cert
            readOnly: true
          {{- end }}
    volumes:
      # `wva history` and `wva replay`, run in the pod, read a snapshot copy of the log here.
      - name: tmp
        emptyDir:
          sizeLimit: {{ .Values.wva.persistence.size | quote }}
      {{- if not .Values.wva.persistence.enabled }}
      - name: data
        emptyDir: {}
      {{- else if eq .Values.wva.workload "Deployment" }}
      - name: data
        persistentVolumeClaim:
          claimName: {{ include "wva.controllerName" . }}-data
      {{- end }}
      {{- if $p.caCert }}
      - name: prometheus-ca
        configMap:
          name: {{ include "wva.name" . }}-prometheus-ca
      {{- end }}
      {{- if $p.tls.clientCertSecretName }}
      - name: prometheus-client
        secret:
          secretName: {{ $p.tls.clientCertSecretName }}
      {{- end }}
      {{- if and $p.useServiceAccountToken (not $p.bearerTokenSecret.name) }}
      # The token sent to Prometheus is its own: short-lived, rotated by the kubelet (the
      # controller re-reads it), and with `tokenAudience` set, useless against the API server.
      - name: prometheus-token
        projected:
          sources:
            - serviceAccountToken:
                path: token
                expirationSeconds: {{ int $p.tokenExpirationSeconds }}
                {{- with $p.tokenAudience }}
                audience: {{ . | quote }}
                {{- end }}
      {{- end }}
      {{- if $cert }}
      - name: metrics-cert
        secret:
          secretName: {{ $cert }}
      {{- end }}
      {{- if and .Values.wva.externalScaler.enabled .Values.wva.externalScaler.tlsSecretName }}
      - name: external-scaler-cert
        secret:
          secretName: {{ .Values.wva.externalScaler.tlsSecretName }}
      {{- end }}
    {{- with .Values.wva.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.wva.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.wva.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end -}}
