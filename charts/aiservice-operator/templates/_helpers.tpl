{{/* Names, labels and images shared by every template of the chart. */}}

{{- define "aisvc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aisvc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "aisvc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "aisvc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: aiservice-operator
{{- end -}}

{{- define "aisvc.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aisvc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "aisvc.eventStore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aisvc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: event-store
{{- end -}}

{{- define "aisvc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aisvc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aisvc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "aisvc.eventStore.image" -}}
{{- $repo := default .Values.image.repository .Values.eventStore.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.eventStore.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "aisvc.eventStore.fullname" -}}
{{- printf "%s-event-store" (include "aisvc.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aisvc.eventStore.tokenSecret" -}}
{{- default (printf "%s-token" (include "aisvc.eventStore.fullname" .)) .Values.eventStore.token.existingSecret -}}
{{- end -}}

{{/* Fails unless the token, the sink key and the read-only token have an entry each: one
entry for two would make the read-only token the full one, or the ingest key a token. A
JSON schema cannot compare two values, so the check is here. */}}
{{- define "aisvc.eventStore.checkTokenKeys" -}}
{{- $t := .Values.eventStore.token -}}
{{- if eq $t.key $t.sinkKey -}}
{{- fail (printf "eventStore.token.sinkKey (%q) must differ from eventStore.token.key: the sink key and the API token need an entry each in the Secret" $t.sinkKey) -}}
{{- end -}}
{{- if and $t.readKey (or (eq $t.readKey $t.key) (eq $t.readKey $t.sinkKey)) -}}
{{- fail (printf "eventStore.token.readKey (%q) must differ from eventStore.token.key and eventStore.token.sinkKey: the read-only token would be the full token or the sink key" $t.readKey) -}}
{{- end -}}
{{- end -}}

{{- define "aisvc.eventStore.url" -}}
{{- $host := printf "%s.%s.svc.%s" .Values.eventStore.service.name .Release.Namespace .Values.clusterDomain -}}
{{- if eq (int .Values.eventStore.service.port) 80 -}}
{{- printf "http://%s" $host -}}
{{- else -}}
{{- printf "http://%s:%d" $host (int .Values.eventStore.service.port) -}}
{{- end -}}
{{- end -}}

{{/* The hardened security context of every container of the chart. */}}
{{- define "aisvc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "aisvc.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The event store's auth mode: eventStore.auth.mode when set; else kubernetes on a
fresh install, and on an upgrade whatever the running store uses (a store from before
the setting existed runs token mode, so an upgrade never locks its users out). */}}
{{- define "aisvc.eventStore.authMode" -}}
{{- $mode := .Values.eventStore.auth.mode -}}
{{- if not $mode -}}
{{- $mode = "kubernetes" -}}
{{- $running := lookup "apps/v1" "Deployment" .Release.Namespace (include "aisvc.eventStore.fullname" .) -}}
{{- if and .Release.IsUpgrade $running -}}
{{- $mode = "token" -}}
{{- range (index $running.spec.template.spec.containers 0).env -}}
{{- if eq .name "AISVC_EVENT_STORE_AUTH_MODE" -}}{{- $mode = .value -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $mode -}}
{{- end -}}
