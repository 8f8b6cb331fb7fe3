{{/* Chart name, truncated to what a label value allows. */}}
{{- define "poolnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every resource name: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". Cluster-scoped names (ClusterRole,
webhook configurations) carry it too, so they follow the release.
*/}}
{{- define "poolnet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := include "poolnet.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "poolnet.operatorName" -}}
{{- printf "%s-operator" (include "poolnet.fullname" .) }}
{{- end }}

{{- define "poolnet.webhookServiceName" -}}
{{- printf "%s-webhook" (include "poolnet.fullname" .) }}
{{- end }}

{{- define "poolnet.metricsServiceName" -}}
{{- printf "%s-metrics" (include "poolnet.fullname" .) }}
{{- end }}

{{- define "poolnet.mutatingConfigurationName" -}}
{{- default (printf "%s-host-ports" (include "poolnet.fullname" .)) .Values.webhook.mutatingConfigurationName }}
{{- end }}

{{- define "poolnet.validatingConfigurationName" -}}
{{- default (printf "%s-validation" (include "poolnet.fullname" .)) .Values.webhook.validatingConfigurationName }}
{{- end }}

{{- define "poolnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "poolnet.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the name of an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "poolnet.leaseName" -}}
{{- default (include "poolnet.operatorName" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Secret of the self-managed webhook certificate. */}}
{{- define "poolnet.selfSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "poolnet.fullname" .)) .Values.webhook.certificates.self.secretName }}
{{- end }}

{{/* Secret cert-manager writes (certManager mode). */}}
{{- define "poolnet.certManagerSecretName" -}}
{{- printf "%s-webhook-cert-manager-tls" (include "poolnet.fullname" .) }}
{{- end }}

{{- define "poolnet.certificateName" -}}
{{- printf "%s-webhook" (include "poolnet.fullname" .) }}
{{- end }}

{{/* Selector labels: stable for the life of the release (a Deployment's selector is immutable). */}}
{{- define "poolnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poolnet.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "poolnet.labels" -}}
{{ include "poolnet.selectorLabels" . }}
app.kubernetes.io/part-of: poolnet
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
metadata.annotations of a top-level resource, when there are any. It starts with a newline
and carries its own indentation: call it as `  {{- include "poolnet.annotations" . }}` right
after the labels, so nothing (not even a blank line) is rendered without annotations.
*/}}
{{- define "poolnet.annotations" -}}
{{- with .Values.commonAnnotations }}
{{- printf "\n  annotations:" }}
{{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{- define "poolnet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* cert-manager's CA injector annotation, in certManager mode. */}}
{{- define "poolnet.webhookAnnotations" -}}
{{- $a := dict }}
{{- if eq .Values.webhook.certificates.mode "certManager" }}
{{- $_ := set $a "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "poolnet.certificateName" .)) }}
{{- end }}
{{- with .Values.commonAnnotations }}
{{- $a = merge $a . }}
{{- end }}
{{- with $a }}
{{- printf "\n  annotations:" }}
{{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/*
clientConfig of one webhook: the Service, and in `secret` mode the CA bundle given in the
values. In `self` mode the operator writes caBundle itself; in `certManager` mode the CA
injector does. Neither is rendered here, so the manifests never change between renders.
*/}}
{{- define "poolnet.clientConfig" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 -}}
clientConfig:
  service:
    name: {{ include "poolnet.webhookServiceName" $root }}
    namespace: {{ $root.Release.Namespace }}
    path: {{ $path }}
    port: 443
  {{- if eq $root.Values.webhook.certificates.mode "secret" }}
  caBundle: {{ $root.Values.webhook.certificates.secret.caBundle | b64enc }}
  {{- end }}
{{- end }}

{{/* Values the schema cannot check. */}}
{{- define "poolnet.validate" -}}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics: enable either serviceMonitor or podMonitor, not both (each would scrape every replica)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "leaderElection.enabled=false needs replicaCount: 1 (two replicas without the Lease would both write to ARM)" }}
{{- end }}
{{- if and (eq .Values.webhook.certificates.mode "secret") .Values.webhook.enabled }}
{{- if not .Values.webhook.certificates.secret.name }}
{{- fail "webhook.certificates.secret.name: the existing Secret with tls.crt and tls.key (mode: secret)" }}
{{- end }}
{{- if not (contains "BEGIN CERTIFICATE" .Values.webhook.certificates.secret.caBundle) }}
{{- fail "webhook.certificates.secret.caBundle: the PEM of the CA that signed that Secret's certificate (mode: secret)" }}
{{- end }}
{{- end }}
{{- end }}
