{{/* The full name: every object's name starts with it. */}}
{{- define "nfsguard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nfsguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; `component` is passed as .component. */}}
{{- define "nfsguard.labels" -}}
app.kubernetes.io/name: {{ include "nfsguard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: nfsguard
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels: stable across upgrades (a Deployment's selector is immutable). */}}
{{- define "nfsguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nfsguard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "nfsguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nfsguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nfsguard.replicas" -}}
{{- if not (kindIs "invalid" .Values.replicaCount) -}}{{ .Values.replicaCount }}{{- else -}}{{ .Values.replicas }}{{- end -}}
{{- end -}}

{{/* repository[:tag][@digest], with the optional registry in front. */}}
{{- define "nfsguard.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $repo -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "nfsguard.tlsSecret" -}}{{ include "nfsguard.fullname" . }}-tls{{- end -}}
{{- define "nfsguard.auditKeySecret" -}}
{{- default (printf "%s-audit-key" (include "nfsguard.fullname" .)) .Values.audit.signingKey.existingSecret -}}
{{- end -}}
{{/* The audit key is made by the chart's Job only when signing is on without a Secret of yours. */}}
{{- define "nfsguard.makesAuditKey" -}}
{{- if and .Values.audit.enabled .Values.audit.signingKey.enabled (not .Values.audit.signingKey.existingSecret) -}}true{{- end -}}
{{- end -}}
{{- define "nfsguard.registrationName" -}}{{ include "nfsguard.fullname" . }}-registration{{- end -}}

{{- define "nfsguard.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
- name: {{ if kindIs "string" . }}{{ . }}{{ else }}{{ .name }}{{ end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* A small container of the chart's jobs: same image and hardening, small resources. */}}
{{- define "nfsguard.jobContainer" -}}
image: {{ include "nfsguard.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
env:
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
resources:
  requests:
    cpu: 50m
    memory: 64Mi
  limits:
    cpu: 500m
    memory: 256Mi
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
{{- end -}}
