{{/* The services of split mode, in start order. */}}
{{- define "sluice.components" -}}
{{- list "catalog" "scheduler" "executor" "opslog" "ingest" | toJson -}}
{{- end -}}

{{- define "sluice.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := .Values.nameOverride | default .Chart.Name -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of a component's objects: (list $ "executor"). */}}
{{- define "sluice.componentName" -}}
{{- $ := index . 0 -}}
{{- printf "%s-%s" (include "sluice.fullname" $) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of a component: (list $ "executor"). */}}
{{- define "sluice.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "sluice.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of a component's objects: (list $ "executor"). */}}
{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" (index . 0) }}
{{ include "sluice.selectorLabels" . }}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "sluice.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if eq .Values.mode "allInOne" -}}
{{- $tag = .Values.image.allInOneTag | default (printf "%s-chdb" $tag) -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* The chart runs NATS: split mode with nats.cluster.enabled. */}}
{{- define "sluice.natsCluster" -}}
{{- if and (eq .Values.mode "split") .Values.nats.cluster.enabled -}}true{{- end -}}
{{- end -}}

{{- define "sluice.natsName" -}}
{{- include "sluice.componentName" (list . "nats") -}}
{{- end -}}

{{/* The NATS URL sluiced connects to; empty for embedded NATS or a URL from a Secret. */}}
{{- define "sluice.natsURL" -}}
{{- if include "sluice.natsCluster" . -}}
{{- $scheme := ternary "tls" "nats" (ne .Values.nats.cluster.tls.secretName "") -}}
{{- printf "%s://%s.%s.svc:4222" $scheme (include "sluice.natsName" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.nats.external.url -}}
{{- end -}}
{{- end -}}

{{/* sluiced talks TLS to NATS: the chart's cluster with client TLS, or nats.external.tls. */}}
{{- define "sluice.natsTLS" -}}
{{- if include "sluice.natsCluster" . -}}
{{- if .Values.nats.cluster.tls.secretName -}}true{{- end -}}
{{- else if .Values.nats.external.tls -}}true{{- end -}}
{{- end -}}

{{/* Replicas of Sluice's streams and buckets. */}}
{{- define "sluice.natsReplicas" -}}
{{- if gt (int .Values.nats.replicas) 0 -}}
{{- .Values.nats.replicas -}}
{{- else if include "sluice.natsCluster" . -}}
{{- min (int .Values.nats.cluster.replicas) 5 -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{- define "sluice.clickhouseSecretName" -}}
{{- .Values.clickhouse.existingSecret.name | default (include "sluice.componentName" (list . "clickhouse")) -}}
{{- end -}}

{{- define "sluice.clickhousePasswordSet" -}}
{{- if or .Values.clickhouse.password .Values.clickhouse.existingSecret.name -}}true{{- end -}}
{{- end -}}

{{/* The settings file of a component: the global config with the component's merged over it. */}}
{{- define "sluice.configFile" -}}
{{- $ := index . 0 -}}
{{- $own := index . 1 -}}
{{- $merged := mergeOverwrite (deepCopy $.Values.config) (deepCopy ($own.config | default dict)) -}}
{{- if $merged -}}
{{- toYaml $merged -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{/*
Secrets mounted as files, as (list volume-name mount-dir secret-name): every one the values
name. Flags point into the mount directories.
*/}}
{{- define "sluice.secretMounts" -}}
{{- $v := .Values -}}
{{- $m := list -}}
{{- if $v.tls.caSecret.name }}{{ $m = append $m (list "ca" "/etc/sluice/ca" $v.tls.caSecret.name) }}{{ end -}}
{{- if $v.tls.server.secretName }}{{ $m = append $m (list "tls" "/etc/sluice/tls" $v.tls.server.secretName) }}{{ end -}}
{{- if include "sluice.serviceTokenSecret" . }}{{ $m = append $m (list "service-token" "/etc/sluice/auth/service-token" (include "sluice.serviceTokenSecret" .)) }}{{ end -}}
{{- if $v.auth.operatorToken.existingSecret.name }}{{ $m = append $m (list "operator-token" "/etc/sluice/auth/operator-token" $v.auth.operatorToken.existingSecret.name) }}{{ end -}}
{{- if $v.auth.jwt.keySecret.name }}{{ $m = append $m (list "jwt-key" "/etc/sluice/auth/jwt-key" $v.auth.jwt.keySecret.name) }}{{ end -}}
{{- if $v.auth.jwt.secretSecret.name }}{{ $m = append $m (list "jwt-secret" "/etc/sluice/auth/jwt-secret" $v.auth.jwt.secretSecret.name) }}{{ end -}}
{{- if $v.nats.external.credsSecret.name }}{{ $m = append $m (list "nats-creds" "/etc/sluice/nats/creds" $v.nats.external.credsSecret.name) }}{{ end -}}
{{- if $v.nats.external.nkeySecret.name }}{{ $m = append $m (list "nats-nkey" "/etc/sluice/nats/nkey" $v.nats.external.nkeySecret.name) }}{{ end -}}
{{- if $v.nats.external.clientCertSecret }}{{ $m = append $m (list "nats-client" "/etc/sluice/nats/client" $v.nats.external.clientCertSecret) }}{{ end -}}
{{- toJson $m -}}
{{- end -}}

{{/* The Secret holding the service credential: the user's, or the chart's from a value. */}}
{{- define "sluice.serviceTokenSecret" -}}
{{- with .Values.auth.serviceToken -}}
{{- if .existingSecret.name -}}{{ .existingSecret.name }}{{- else if .value -}}{{ include "sluice.componentName" (list $ "service-token") }}{{- end -}}
{{- end -}}
{{- end -}}

{{/* Whether the listeners serve TLS. */}}
{{- define "sluice.tls" -}}
{{- if .Values.tls.server.secretName -}}true{{- end -}}
{{- end -}}

{{/*
The sluiced container of a component: (list $ "executor" $values). The chart sets the
settings it owns as flags (they win over the file); the rest come from the file.
*/}}
{{- define "sluice.container" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $own := index . 2 -}}
{{- $allInOne := eq $component "all" -}}
{{- $v := $.Values -}}
{{- $tls := include "sluice.tls" $ -}}
- name: sluiced
  image: {{ include "sluice.image" $ | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - -config=/etc/sluice/sluiced.yaml
    - -target={{ $component }}
    - -grpc-addr=:{{ $v.ports.grpc }}
    - -http-addr=:{{ $v.ports.http }}
    {{- if or $allInOne (eq $component "ingest") }}
    - -events-addr=:{{ $v.ports.events }}
    {{- end }}
    {{- if $allInOne }}
    - -data-dir=/var/lib/sluice
    - -clickhouse-embedded-lib=/usr/lib/sluice/libchdb.so
    {{- else }}
    - -catalog-addr={{ include "sluice.componentName" (list $ "catalog") }}:{{ $v.ports.grpc }}
    {{- end }}
    {{- with include "sluice.serviceTokenSecret" $ }}
    - -auth.service-token-file=/etc/sluice/auth/service-token/{{ $v.auth.serviceToken.existingSecret.key }}
    {{- end }}
    {{- if or $allInOne (eq $component "catalog") }}
    {{- if $v.auth.operatorToken.existingSecret.name }}
    - -auth.operator-token-file=/etc/sluice/auth/operator-token/{{ $v.auth.operatorToken.existingSecret.key }}
    {{- else }}
    - -auth.operator-token-file=/var/lib/sluice/token
    {{- end }}
    {{- end }}
    {{- if $v.auth.jwt.keySecret.name }}
    - -auth.jwt-key-file=/etc/sluice/auth/jwt-key/{{ $v.auth.jwt.keySecret.key }}
    {{- end }}
    {{- if $v.auth.jwt.secretSecret.name }}
    - -auth.jwt-secret-file=/etc/sluice/auth/jwt-secret/{{ $v.auth.jwt.secretSecret.key }}
    {{- end }}
    {{- if $tls }}
    - -tls-cert=/etc/sluice/tls/tls.crt
    - -tls-key=/etc/sluice/tls/tls.key
    {{- if $v.tls.server.mutual }}
    - -tls-client-ca=/etc/sluice/tls/ca.crt
    {{- end }}
    {{- end }}
    {{- if $v.tls.caSecret.name }}
    - -tls-ca=/etc/sluice/ca/{{ $v.tls.caSecret.key }}
    {{- end }}
    {{- if $v.nats.external.urlSecret.name }}
    - -nats-url=$(SLUICE_NATS_URL)
    {{- else if include "sluice.natsURL" $ }}
    - -nats-url={{ include "sluice.natsURL" $ }}
    {{- end }}
    - -nats-replicas={{ include "sluice.natsReplicas" $ }}
    {{- with $v.nats.external }}
    {{- if .user }}
    - -nats-user={{ .user }}
    {{- if .passwordSecret.name }}
    - -nats-password=$(SLUICE_NATS_PASSWORD)
    {{- end }}
    {{- end }}
    {{- if .credsSecret.name }}
    - -nats-creds=/etc/sluice/nats/creds/{{ .credsSecret.key }}
    {{- end }}
    {{- if .nkeySecret.name }}
    - -nats-nkey=/etc/sluice/nats/nkey/{{ .nkeySecret.key }}
    {{- end }}
    {{- if .clientCertSecret }}
    - -nats-tls-cert=/etc/sluice/nats/client/tls.crt
    - -nats-tls-key=/etc/sluice/nats/client/tls.key
    {{- end }}
    {{- end }}
    {{- if and $v.tls.caSecret.name (include "sluice.natsTLS" $) }}
    - -nats-tls-ca=/etc/sluice/ca/{{ $v.tls.caSecret.key }}
    {{- end }}
    {{- with $v.clickhouse.addrs }}
    - -clickhouse-addr={{ join "," . }}
    - -clickhouse-user={{ $v.clickhouse.username }}
    {{- if include "sluice.clickhousePasswordSet" $ }}
    - -clickhouse-password=$(SLUICE_CLICKHOUSE_PASSWORD)
    {{- end }}
    {{- if $v.clickhouse.tls }}
    - -clickhouse-tls=true
    {{- end }}
    {{- with $v.clickhouse.workspaceUser }}
    - -clickhouse-workspace-user={{ . }}
    {{- if $v.clickhouse.workspacePasswordSecret.name }}
    - -clickhouse-workspace-password=$(SLUICE_CLICKHOUSE_WORKSPACE_PASSWORD)
    {{- end }}
    {{- end }}
    {{- end }}
  {{- with include "sluice.env" (list $ $own) }}
  env:
    {{- . | trim | nindent 4 }}
  {{- end }}
  ports:
    - name: grpc
      containerPort: {{ $v.ports.grpc }}
      protocol: TCP
    - name: http
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    {{- if or $allInOne (eq $component "ingest") }}
    - name: events
      containerPort: {{ $v.ports.events }}
      protocol: TCP
    {{- end }}
  # Health turns SERVING once every module of the process has started (NATS buckets,
  # ClickHouse reachable), and NOT_SERVING as soon as shutdown begins. The kubelet's gRPC
  # probe has no TLS: with TLS the port is probed, and /ready over HTTPS.
  startupProbe:
    {{- if $tls }}
    tcpSocket:
      port: grpc
    {{- else }}
    grpc:
      port: {{ $v.ports.grpc }}
    {{- end }}
    periodSeconds: 5
    failureThreshold: 60
  livenessProbe:
    {{- if $tls }}
    tcpSocket:
      port: grpc
    {{- else }}
    grpc:
      port: {{ $v.ports.grpc }}
    {{- end }}
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 6
  readinessProbe:
    httpGet:
      path: /ready
      port: http
      {{- if $tls }}
      scheme: HTTPS
      {{- end }}
    periodSeconds: 5
    failureThreshold: 2
  {{- with $own.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: config
      mountPath: /etc/sluice/sluiced.yaml
      subPath: {{ $component }}.yaml
      readOnly: true
    - name: tmp
      mountPath: /tmp
    - name: data
      mountPath: /var/lib/sluice
    {{- range include "sluice.secretMounts" $ | fromJsonArray }}
    - name: {{ index . 0 }}
      mountPath: {{ index . 1 }}
      readOnly: true
    {{- end }}
{{- end -}}

{{/* The pod's volumes, besides the all-in-one data claim: (list $ "executor"). */}}
{{- define "sluice.volumes" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
- name: config
  configMap:
    name: {{ include "sluice.componentName" (list $ "config") }}
- name: tmp
  emptyDir: {}
{{- if ne $component "all" }}
- name: data
  emptyDir: {}
{{- end }}
{{- range include "sluice.secretMounts" $ | fromJsonArray }}
- name: {{ index . 0 }}
  secret:
    secretName: {{ index . 2 }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every sluiced pod: (list $ $values). */}}
{{- define "sluice.podSpec" -}}
{{- $ := index . 0 -}}
{{- $own := index . 1 -}}
serviceAccountName: {{ include "sluice.serviceAccountName" $ }}
terminationGracePeriodSeconds: {{ $own.terminationGracePeriodSeconds }}
{{- with $.Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $own.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The sluiced container's environment: (list $ $values). */}}
{{- define "sluice.env" -}}
{{- $ := index . 0 -}}
{{- $own := index . 1 -}}
{{- if $.Values.nats.external.urlSecret.name }}
- name: SLUICE_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.nats.external.urlSecret.name }}
      key: {{ $.Values.nats.external.urlSecret.key }}
{{- end }}
{{- if and $.Values.clickhouse.addrs (include "sluice.clickhousePasswordSet" $) }}
- name: SLUICE_CLICKHOUSE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "sluice.clickhouseSecretName" $ }}
      key: {{ $.Values.clickhouse.existingSecret.key }}
{{- end }}
{{- if and $.Values.nats.external.user $.Values.nats.external.passwordSecret.name }}
- name: SLUICE_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.nats.external.passwordSecret.name }}
      key: {{ $.Values.nats.external.passwordSecret.key }}
{{- end }}
{{- if and $.Values.clickhouse.addrs $.Values.clickhouse.workspaceUser $.Values.clickhouse.workspacePasswordSecret.name }}
- name: SLUICE_CLICKHOUSE_WORKSPACE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.clickhouse.workspacePasswordSecret.name }}
      key: {{ $.Values.clickhouse.workspacePasswordSecret.key }}
{{- end }}
{{- if and $.Values.tls.caSecret.name $.Values.clickhouse.tls }}
# Go's TLS reads the roots that verify ClickHouse from this file.
- name: SSL_CERT_FILE
  value: /etc/sluice/ca/{{ $.Values.tls.caSecret.key }}
{{- end }}
{{- with $own.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
