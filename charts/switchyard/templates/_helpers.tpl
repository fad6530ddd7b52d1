{{/* The release's name prefix for every object. */}}
{{- define "switchyard.fullname" -}}
{{- if contains "switchyard" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-switchyard" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; `component` names the role. */}}
{{- define "switchyard.labels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: switchyard
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels a role's pods are selected by. */}}
{{- define "switchyard.selector" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "switchyard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "switchyard.secretName" -}}
{{- if .Values.secrets.create -}}
{{ include "switchyard.fullname" . }}
{{- else -}}
{{ required "secrets.existingSecret is required when secrets.create is false" .Values.secrets.existingSecret }}
{{- end -}}
{{- end -}}

{{/* One env var from the chart's (or the existing) Secret. */}}
{{- define "switchyard.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchyard.secretName" .root }}
      key: {{ .key }}
{{- if .optional }}
      optional: true
{{- end }}
{{- end -}}

{{/* What every process reads: the environment, tracing, the router secret. */}}
{{- define "switchyard.commonEnv" -}}
- name: SWITCHYARD_ENV
  value: production
- name: SWITCHYARD_LOG_FORMAT
  value: json
{{- with .Values.otlp.endpoint }}
- name: SWITCHYARD_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: SWITCHYARD_OTLP_PROTOCOL
  value: {{ .Values.otlp.protocol | quote }}
- name: SWITCHYARD_TRACE_SAMPLE_RATIO
  value: {{ .Values.otlp.sampleRatio | quote }}
{{ include "switchyard.secretEnv" (dict "root" . "name" "SWITCHYARD_ROUTER_SECRET" "key" "router-secret") }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Every subgraph's shard URLs (primaries and replicas), for subgraphs, workers and migrations. */}}
{{- define "switchyard.shardEnv" -}}
{{- range $name := list "accounts" "posts" "engagement" "notifications" }}
{{ include "switchyard.secretEnv" (dict "root" $ "name" (printf "SWITCHYARD_%s_SHARDS" (upper $name)) "key" (printf "%s-shards" $name)) }}
{{ include "switchyard.secretEnv" (dict "root" $ "name" (printf "SWITCHYARD_%s_REPLICAS" (upper $name)) "key" (printf "%s-replicas" $name) "optional" true) }}
{{- end }}
{{- end -}}

{{/* The pod-level settings every role shares. */}}
{{- define "switchyard.podSpec" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
securityContext:
{{ toYaml .Values.podSecurityContext | indent 2 }}
automountServiceAccountToken: false
{{- end -}}

{{/* Spread a role's replicas over nodes and zones. */}}
{{- define "switchyard.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
{{ include "switchyard.selector" . | indent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
{{ include "switchyard.selector" . | indent 8 }}
{{- end -}}
