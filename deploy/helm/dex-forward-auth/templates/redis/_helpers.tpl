{{/* The Redis StatefulSet's containers: environment, security context, probes. */}}
{{- define "dfa.redisEnv" }}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# configure.sh: this StatefulSet's (and its headless Service's) name, the Sentinel master name the
# service asks for (REDIS_SENTINEL_NAME), pods, quorum.
- name: REDIS_SET
  value: {{ include "dfa.redisName" . }}
- name: SENTINEL_MASTER_NAME
  value: {{ .Values.redis.bundled.masterName }}
- name: REDIS_REPLICAS
  value: {{ .Values.redis.bundled.replicas | quote }}
- name: SENTINEL_QUORUM
  value: {{ .Values.redis.bundled.quorum | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "dfa.secretName" . }}
      key: redis-password
{{- end }}
{{- define "dfa.redisSecurityContext" }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}
{{- define "dfa.redisPing" }}
exec:
  command: ["sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p {{ . }} ping | grep -q PONG']
{{- end }}
