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
{{- $repository := printf "%s/%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The web config's place in the pod (the chart renders it from .Values.web). */}}
{{- define "alb-jobs-exporter.webConfigOn" -}}
{{- if or .Values.web.tls.enabled .Values.web.basicAuth.enabled }}true{{ end }}
{{- end }}

{{- define "alb-jobs-exporter.webConfig" -}}
{{- if .Values.web.tls.enabled }}
tls_server_config:
  cert_file: /etc/alb-jobs-exporter-tls/tls.crt
  key_file: /etc/alb-jobs-exporter-tls/tls.key
{{- end }}
{{- if .Values.web.basicAuth.enabled }}
basic_auth_users:
  {{ .Values.web.basicAuth.username | quote }}: {{ .Values.web.basicAuth.passwordHash | quote }}
{{- end }}
{{- end }}

{{/*
  A probe from .Values.livenessProbe/readinessProbe that works with the web config:
  HTTPS when TLS is on (the kubelet does not verify the certificate); with basic auth, an
  exec probe that sends the monitors' credentials from the mounted Secrets, since the
  kubelet's httpGet could only carry them in the pod spec. Probes without httpGet (a
  tcpSocket of your own) pass unchanged.
*/}}
{{- define "alb-jobs-exporter.probe" -}}
{{- $probe := deepCopy (index .root.Values .name) }}
{{- $values := .root.Values }}
{{- if $probe.httpGet }}
{{- if $values.web.basicAuth.enabled }}
{{- $scheme := ternary "https" "http" $values.web.tls.enabled }}
{{- $url := printf "%s://127.0.0.1:9868%s" $scheme $probe.httpGet.path }}
{{- $_ := unset $probe "httpGet" }}
{{- $_ := set $probe "exec" (dict "command" (list "python3" "-c" (include "alb-jobs-exporter.probeScript" .root) $url "/etc/alb-jobs-exporter-probe")) }}
{{- else if $values.web.tls.enabled }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* argv: URL, the folder holding `username` and `password`. Exit 0 on a 2xx answer. */}}
{{- define "alb-jobs-exporter.probeScript" -}}
import base64, ssl, sys, urllib.request as u
def read(name): return open(sys.argv[2] + "/" + name, "rb").read().strip()
r = u.Request(sys.argv[1])
r.add_header("Authorization", "Basic " + base64.b64encode(read("username") + b":" + read("password")).decode())
u.urlopen(r, timeout=4, context=ssl._create_unverified_context())
{{- end }}

{{/*
  One scrape endpoint of the ServiceMonitor (endpoints[]) and the PodMonitor
  (podMetricsEndpoints[]): scheme, TLS and basic auth follow .Values.web unless
  serviceMonitor.{scheme,tlsConfig,basicAuth} say otherwise.
*/}}
{{- define "alb-jobs-exporter.scrapeEndpoint" -}}
{{- $sm := .Values.serviceMonitor -}}
port: http-metrics
path: /metrics
scheme: {{ default (ternary "https" "http" .Values.web.tls.enabled) $sm.scheme }}
interval: {{ $sm.interval }}
scrapeTimeout: {{ $sm.scrapeTimeout }}
honorLabels: {{ $sm.honorLabels }}
{{- if $sm.tlsConfig }}
tlsConfig:
  {{- toYaml $sm.tlsConfig | nindent 2 }}
{{- else if .Values.web.tls.enabled }}
tlsConfig:
  ca:
    secret:
      name: {{ .Values.web.tls.secretName | quote }}
      key: ca.crt
  serverName: {{ printf "%s.%s.svc" (include "alb-jobs-exporter.fullname" .) .Release.Namespace | quote }}
{{- end }}
{{- if $sm.basicAuth }}
basicAuth:
  {{- toYaml $sm.basicAuth | nindent 2 }}
{{- else if .Values.web.basicAuth.enabled }}
basicAuth:
  username:
    name: {{ printf "%s-web" (include "alb-jobs-exporter.fullname" .) | quote }}
    key: username
  password:
    name: {{ .Values.web.basicAuth.secretName | quote }}
    key: {{ .Values.web.basicAuth.passwordKey | quote }}
{{- end }}
{{- with $sm.relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $sm.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
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

{{/* The exporter config as rendered into the ConfigMap: .Values.config plus state_file from persistence (always on with sharding: a claim per replica). */}}
{{- define "alb-jobs-exporter.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if and (or .Values.persistence.enabled .Values.sharding.enabled) (not $config.state_file) }}
{{- $_ := set $config "state_file" (printf "%s/%s" (trimSuffix "/" .Values.persistence.mountPath) .Values.persistence.fileName) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Validation that values.schema.json cannot express. */}}
{{- define "alb-jobs-exporter.validate" -}}
{{- if not .Values.image.registry }}
{{- fail "image.registry is empty: no public registry hosts this image. Build it from the project's Dockerfile, push it to your registry (e.g. ACR) and set image.registry and image.repository (docs/deploy.md \"Quick start\")" }}
{{- end }}
{{- if and .Values.web.tls.enabled (not .Values.web.tls.secretName) }}
{{- fail "web.tls.secretName is required when web.tls.enabled is true (a kubernetes.io/tls Secret: tls.crt, tls.key)" }}
{{- end }}
{{- if and .Values.web.basicAuth.enabled (not (and .Values.web.basicAuth.passwordHash .Values.web.basicAuth.secretName)) }}
{{- fail "web.basicAuth.enabled needs web.basicAuth.passwordHash (the bcrypt hash the exporter checks) and web.basicAuth.secretName (the plain password Prometheus and the probes send)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled: choose one, or every target is scraped twice" }}
{{- end }}
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
{{- if and (or .Values.persistence.enabled .Values.sharding.enabled) .Values.config.state_file (not (hasPrefix .Values.persistence.mountPath .Values.config.state_file)) }}
{{- fail (printf "config.state_file %q is outside persistence.mountPath %q: the root filesystem is read-only" .Values.config.state_file .Values.persistence.mountPath) }}
{{- end }}
{{- if and .Values.sharding.enabled (ne (int .Values.replicaCount) 1) }}
{{- fail "sharding.enabled: set the number of replicas with sharding.shards; replicaCount applies to the unsharded Deployment only" }}
{{- end }}
{{- if and .Values.sharding.enabled .Values.persistence.existingClaim }}
{{- fail "sharding.enabled: each shard gets its own claim from the StatefulSet's volumeClaimTemplates; persistence.existingClaim cannot be shared" }}
{{- end }}
{{- if and .Values.sharding.enabled (ne .Values.service.type "ClusterIP") }}
{{- fail "sharding.enabled: the Service is headless (clusterIP: None), so service.type must be ClusterIP" }}
{{- end }}
{{- if and (eq .Values.persistence.type "persistentVolumeClaim") .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "persistence.type=persistentVolumeClaim supports replicaCount 1 only (one state file per exporter)" }}
{{- end }}
{{- end }}

{{/*
  The pod template the Deployment and the sharded StatefulSet share. The StatefulSet's
  state volume comes from its volumeClaimTemplates (one claim per replica), so the pod
  lists no "state" volume then.
*/}}
{{- define "alb-jobs-exporter.podTemplate" -}}
{{- $secretName := include "alb-jobs-exporter.secretName" . -}}
template:
  metadata:
    annotations:
      checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
      {{- if include "alb-jobs-exporter.webConfigOn" . }}
      checksum/web: {{ include (print $.Template.BasePath "/web-secret.yaml") . | sha256sum }}
      {{- end }}
      {{- if include "alb-jobs-exporter.createSecret" . }}
      checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
      {{- end }}
      {{- with .Values.podAnnotations }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    labels:
      {{- include "alb-jobs-exporter.labels" . | nindent 6 }}
      {{- if .Values.rrsa.enabled }}
      pod-identity.alibabacloud.com/injection: "on"
      {{- end }}
      {{- with .Values.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  spec:
    serviceAccountName: {{ include "alb-jobs-exporter.serviceAccountName" . }}
    automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
    {{- with .Values.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.priorityClassName }}
    priorityClassName: {{ . | quote }}
    {{- end }}
    securityContext:
      {{- toYaml .Values.podSecurityContext | nindent 6 }}
    terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
    containers:
      - name: exporter
        image: {{ include "alb-jobs-exporter.image" . | quote }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        args:
          - --config.file=/etc/alb-jobs-exporter/config.yaml
          - --web.listen-address=:9868
          - --log.level={{ .Values.log.level }}
          - --log.format={{ .Values.log.format }}
          {{- if include "alb-jobs-exporter.webConfigOn" . }}
          - --web.config.file=/etc/alb-jobs-exporter-web/web.yaml
          {{- end }}
          {{- if .Values.sharding.enabled }}
          # One config for every pod; each takes its shard from its <name>-<ordinal>.
          - --shard.count={{ .Values.sharding.shards }}
          - --shard.index=hostname
          {{- end }}
          {{- range .Values.extraArgs }}
          - {{ . | quote }}
          {{- end }}
        ports:
          - name: http-metrics
            containerPort: 9868
            protocol: TCP
        {{- if or $secretName .Values.extraEnv }}
        env:
          {{- if $secretName }}
          - name: ALIBABA_CLOUD_ACCESS_KEY_ID
            valueFrom:
              secretKeyRef:
                name: {{ $secretName | quote }}
                key: {{ .Values.credentials.accessKeyIdKey | quote }}
          - name: ALIBABA_CLOUD_ACCESS_KEY_SECRET
            valueFrom:
              secretKeyRef:
                name: {{ $secretName | quote }}
                key: {{ .Values.credentials.accessKeySecretKey | quote }}
          {{- if .Values.credentials.securityTokenKey }}
          - name: ALIBABA_CLOUD_SECURITY_TOKEN
            valueFrom:
              secretKeyRef:
                name: {{ $secretName | quote }}
                key: {{ .Values.credentials.securityTokenKey | quote }}
          {{- end }}
          {{- end }}
          {{- with .Values.extraEnv }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        {{- end }}
        {{- with .Values.extraEnvFrom }}
        envFrom:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        securityContext:
          {{- toYaml .Values.securityContext | nindent 10 }}
        livenessProbe:
          {{- include "alb-jobs-exporter.probe" (dict "root" . "name" "livenessProbe") | nindent 10 }}
        readinessProbe:
          {{- include "alb-jobs-exporter.probe" (dict "root" . "name" "readinessProbe") | nindent 10 }}
        resources:
          {{- toYaml .Values.resources | nindent 10 }}
        volumeMounts:
          - name: config
            mountPath: /etc/alb-jobs-exporter
            readOnly: true
          - name: tmp
            mountPath: /tmp
          {{- if or .Values.persistence.enabled .Values.sharding.enabled }}
          - name: state
            mountPath: {{ .Values.persistence.mountPath }}
          {{- end }}
          {{- if include "alb-jobs-exporter.webConfigOn" . }}
          - name: web
            mountPath: /etc/alb-jobs-exporter-web
            readOnly: true
          {{- end }}
          {{- if .Values.web.tls.enabled }}
          - name: tls
            mountPath: /etc/alb-jobs-exporter-tls
            readOnly: true
          {{- end }}
          {{- if .Values.web.basicAuth.enabled }}
          - name: probe
            mountPath: /etc/alb-jobs-exporter-probe
            readOnly: true
          {{- end }}
          {{- with .Values.extraVolumeMounts }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
    volumes:
      - name: config
        configMap:
          name: {{ include "alb-jobs-exporter.fullname" . }}
      # The root filesystem is read-only; a small scratch dir for anything that needs one.
      - name: tmp
        emptyDir:
          sizeLimit: 16Mi
      {{- if .Values.sharding.enabled }}
      {{- if eq .Values.sharding.stateVolume "emptyDir" }}
      - name: state
        emptyDir:
          sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
      {{- end }}
      {{- else if .Values.persistence.enabled }}
      - name: state
        {{- if eq .Values.persistence.type "persistentVolumeClaim" }}
        persistentVolumeClaim:
          claimName: {{ default (include "alb-jobs-exporter.fullname" .) .Values.persistence.existingClaim }}
        {{- else }}
        emptyDir:
          sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
        {{- end }}
      {{- end }}
      {{- if include "alb-jobs-exporter.webConfigOn" . }}
      - name: web
        secret:
          secretName: {{ printf "%s-web" (include "alb-jobs-exporter.fullname" .) }}
          items:
            - key: web.yaml
              path: web.yaml
      {{- end }}
      {{- if .Values.web.tls.enabled }}
      - name: tls
        secret:
          secretName: {{ .Values.web.tls.secretName }}
      {{- end }}
      {{- if .Values.web.basicAuth.enabled }}
      # What the probes send: the same user and password as the monitors.
      - name: probe
        projected:
          sources:
            - secret:
                name: {{ printf "%s-web" (include "alb-jobs-exporter.fullname" .) }}
                items:
                  - key: username
                    path: username
            - secret:
                name: {{ .Values.web.basicAuth.secretName }}
                items:
                  - key: {{ .Values.web.basicAuth.passwordKey }}
                    path: password
      {{- end }}
      {{- with .Values.extraVolumes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with .Values.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.topologySpreadConstraints }}
    topologySpreadConstraints:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
