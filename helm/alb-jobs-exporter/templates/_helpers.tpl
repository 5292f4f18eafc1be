{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "alb-jobs-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "alb-jobs-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "alb-jobs-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "alb-jobs-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alb-jobs-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "alb-jobs-exporter.labels" -}}
helm.sh/chart: {{ include "alb-jobs-exporter.chart" . }}
{{ include "alb-jobs-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: alb-jobs-exporter
{{- end }}

{{- define "alb-jobs-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alb-jobs-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "alb-jobs-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* true when the chart itself creates the credentials Secret. */}}
{{- define "alb-jobs-exporter.createSecret" -}}
{{- if and (not .Values.credentials.existingSecret) (or .Values.credentials.accessKeyId .Values.credentials.accessKeySecret) }}true{{ end }}
{{- end }}

{{- define "alb-jobs-exporter.secretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else if include "alb-jobs-exporter.createSecret" . }}
{{- include "alb-jobs-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* The exporter config as rendered into the ConfigMap: .Values.config plus state_file from persistence. */}}
{{- define "alb-jobs-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if and .Values.persistence.enabled (not $config.state_file) }}
{{- $_ := set $config "state_file" (printf "%s/%s" (trimSuffix "/" .Values.persistence.mountPath) .Values.persistence.fileName) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Validation that values.schema.json cannot express. */}}
{{- define "alb-jobs-exporter.validate" -}}
{{- if and .Values.credentials.existingSecret (or .Values.credentials.accessKeyId .Values.credentials.accessKeySecret) }}
{{- fail "credentials: set either existingSecret or accessKeyId/accessKeySecret, not both" }}
{{- end }}
{{- if and (include "alb-jobs-exporter.createSecret" .) (not (and .Values.credentials.accessKeyId .Values.credentials.accessKeySecret)) }}
{{- fail "credentials: accessKeyId and accessKeySecret must be set together" }}
{{- end }}
{{- if and .Values.rrsa.enabled (not .Values.rrsa.roleName) }}
{{- fail "rrsa.roleName is required when rrsa.enabled is true" }}
{{- end }}
{{- if and .Values.rrsa.enabled (not .Values.serviceAccount.create) }}
{{- fail "rrsa.enabled needs serviceAccount.create=true (or annotate your own ServiceAccount with pod-identity.alibabacloud.com/role-name and leave rrsa.enabled false)" }}
{{- end }}
{{- if and .Values.persistence.enabled .Values.config.state_file (not (hasPrefix .Values.persistence.mountPath .Values.config.state_file)) }}
{{- fail (printf "config.state_file %q is outside persistence.mountPath %q: the root filesystem is read-only" .Values.config.state_file .Values.persistence.mountPath) }}
{{- end }}
{{- if and (eq .Values.persistence.type "persistentVolumeClaim") .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.type=persistentVolumeClaim supports replicaCount 1 only (one state file per exporter)" }}
{{- end }}
{{- end }}
