{{/* Names: <release>-portcullis, or the release name alone when it already contains the chart name. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: ext-authz
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portcullis.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "portcullis.configMapName" -}}
{{- .Values.existingConfigMap | default (include "portcullis.fullname" .) }}
{{- end }}

{{/* Replicas that run when no node is being drained: the HPA's floor when it owns the count. */}}
{{- define "portcullis.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/*
The config as a dict (an object `config`, or a string parsed as YAML), with listen and
admin_listen defaulted to the chart's ports and checked against them: the container ports,
Service and probes are built from `ports`, so a config on other ports could never be reached.
*/}}
{{- define "portcullis.configDict" -}}
{{- $cfg := dict }}
{{- if kindIs "string" .Values.config }}
{{- $cfg = fromYaml .Values.config }}
{{- if hasKey $cfg "Error" }}
{{- fail (printf "config: not a YAML mapping: %s" (get $cfg "Error")) }}
{{- end }}
{{- else }}
{{- $cfg = deepCopy .Values.config }}
{{- end }}
{{- range $key, $port := dict "listen" .Values.ports.grpc "admin_listen" .Values.ports.admin }}
{{- if hasKey $cfg $key }}
{{- if not (hasSuffix (printf ":%v" $port) (toString (get $cfg $key))) }}
{{- fail (printf "config.%s (%v) must use port %v (ports.%s)" $key (get $cfg $key) $port (ternary "grpc" "admin" (eq $key "listen"))) }}
{{- end }}
{{- else }}
{{- $_ := set $cfg $key (printf "0.0.0.0:%v" $port) }}
{{- end }}
{{- end }}
{{- toJson $cfg }}
{{- end }}

{{/*
portcullis.yaml: the string form verbatim (plus listen defaults); the object form as JSON, which
portcullis reads as YAML. Not toYaml: Helm holds every number of a values file as a float, and
toYaml prints 33554432 (cache.max_bytes) as 3.3554432e+07, which no integer field accepts.
*/}}
{{- define "portcullis.configText" -}}
{{- $cfg := include "portcullis.configDict" . | fromJson }}
{{- if kindIs "string" .Values.config }}
{{- $head := "" }}
{{- range $key := list "listen" "admin_listen" }}
{{- if not (regexMatch (printf "(?m)^%s:" $key) $.Values.config) }}
{{- $head = printf "%s%s: %s\n" $head $key (get $cfg $key) }}
{{- end }}
{{- end }}
{{- printf "%s%s" $head .Values.config }}
{{- else }}
{{- toPrettyJson $cfg }}
{{- end }}
{{- end }}
