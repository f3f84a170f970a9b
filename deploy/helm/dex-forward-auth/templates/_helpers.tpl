{{/* Names: the release's full name is the prefix of every object (dex-forward-auth for a release of that name). */}}
{{- define "dfa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dfa.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 57 | trimSuffix "-" -}}
{{- else if contains (include "dfa.name" .) .Release.Name -}}
{{- .Release.Name | trunc 57 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "dfa.name" .) | trunc 57 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dfa.redisName" -}}
{{- printf "%s-redis" (include "dfa.fullname" .) -}}
{{- end -}}

{{- define "dfa.secretName" -}}
{{- default (include "dfa.fullname" .) .Values.secret.name -}}
{{- end -}}

{{- define "dfa.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Labels. Selectors carry name, component and instance; the rest describes the release. */}}
{{- define "dfa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dfa.name" . }}
app.kubernetes.io/component: forward-auth
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dfa.labels" -}}
{{ include "dfa.selectorLabels" . }}
{{ include "dfa.releaseLabels" . }}
{{- end -}}

{{- define "dfa.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dfa.name" . }}-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dfa.redisLabels" -}}
app.kubernetes.io/name: {{ include "dfa.name" . }}-redis
app.kubernetes.io/component: session-store
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "dfa.releaseLabels" . }}
{{- end -}}

{{- define "dfa.releaseLabels" -}}
app.kubernetes.io/part-of: dex-forward-auth
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The Service's in-cluster name, as the Middleware and the decision certificate name it. */}}
{{- define "dfa.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "dfa.fullname" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Redis settings for the ConfigMap, by redis.mode. */}}
{{- define "dfa.redisSettings" -}}
{{- $mode := .Values.redis.mode -}}
{{- if eq $mode "bundled" -}}
{{- if not .Values.redis.auth -}}
{{- fail "redis.auth: the bundled Redis always has a password (redis-password in the Secret)" -}}
{{- end -}}
{{- $set := include "dfa.redisName" . -}}
{{- $sentinels := list -}}
{{- range $i := until (int .Values.redis.bundled.replicas) -}}
{{- $sentinels = append $sentinels (printf "%s-%d.%s.%s.svc.%s:26379" $set $i $set $.Release.Namespace $.Values.clusterDomain) -}}
{{- end }}
REDIS_SENTINELS: {{ join "," $sentinels | quote }}
REDIS_SENTINEL_NAME: {{ .Values.redis.bundled.masterName | quote }}
{{- else if eq $mode "external" }}
REDIS_URL: {{ required "redis.external.url: the Redis URL (redis:// or rediss://) for redis.mode=external" .Values.redis.external.url | quote }}
{{- else if eq $mode "externalSentinel" }}
{{- if not .Values.redis.externalSentinel.sentinels -}}
{{- fail "redis.externalSentinel.sentinels: the host:port of each Sentinel for redis.mode=externalSentinel" -}}
{{- end }}
REDIS_SENTINELS: {{ join "," .Values.redis.externalSentinel.sentinels | quote }}
REDIS_SENTINEL_NAME: {{ required "redis.externalSentinel.masterName: the Sentinel master name" .Values.redis.externalSentinel.masterName | quote }}
{{- else -}}
{{- fail (printf "redis.mode %q: use bundled, external or externalSentinel" $mode) -}}
{{- end }}
{{- with .Values.redis.username }}
REDIS_USERNAME: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The headers the service sets on a 2xx (UPSTREAM_HEADERS, or its default), as a list. */}}
{{- define "dfa.upstreamHeaders" -}}
{{- $headers := default "Authorization,X-Auth-Request-User,X-Auth-Request-Email,X-Auth-Request-Groups" .Values.settings.UPSTREAM_HEADERS -}}
{{- range splitList "," $headers }}
- {{ trim . }}
{{- end }}
{{- end -}}
