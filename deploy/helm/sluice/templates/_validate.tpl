{{/*
Rules that involve more than one value; values.schema.json checks each value on its own.
Each failure names the values to change.
*/}}
{{- define "sluice.validate" -}}
{{- $v := .Values -}}
{{- $split := eq $v.mode "split" -}}
{{- $externalNATS := or $v.nats.external.url $v.nats.external.urlSecret.name -}}
{{- if and $v.nats.external.url $v.nats.external.urlSecret.name -}}
{{- fail "nats.external: set url or urlSecret.name, not both" -}}
{{- end -}}
{{- if and $v.clickhouse.password $v.clickhouse.existingSecret.name -}}
{{- fail "clickhouse: set password or existingSecret.name, not both" -}}
{{- end -}}
{{- if and $split (not $v.clickhouse.addrs) -}}
{{- fail "clickhouse.addrs: split mode needs ClickHouse servers (host:9000); embedded ClickHouse is for mode allInOne" -}}
{{- end -}}
{{- if and $split $v.nats.cluster.enabled $externalNATS -}}
{{- fail "nats: nats.cluster.enabled runs a NATS cluster and nats.external names another one; disable nats.cluster to use nats.external" -}}
{{- end -}}
{{- if and $split (not $v.nats.cluster.enabled) (not $externalNATS) -}}
{{- fail "nats: split mode needs NATS: keep nats.cluster.enabled, or set nats.external.url (or nats.external.urlSecret.name)" -}}
{{- end -}}
{{- if and $split $v.nats.cluster.enabled (gt (int $v.nats.replicas) (int $v.nats.cluster.replicas)) -}}
{{- fail (printf "nats.replicas: %d is more than the %d servers of nats.cluster.replicas" (int $v.nats.replicas) (int $v.nats.cluster.replicas)) -}}
{{- end -}}
{{- if and (not $split) (gt (int $v.nats.replicas) 1) (not $externalNATS) -}}
{{- fail "nats.replicas: mode allInOne embeds one NATS server: leave nats.replicas at 0 or 1, or set nats.external" -}}
{{- end -}}
{{- if and $v.clickhouse.tls (not $v.clickhouse.addrs) -}}
{{- fail "clickhouse.tls: needs clickhouse.addrs (embedded ClickHouse has no connection to secure)" -}}
{{- end -}}
{{- if and (not $v.clickhouse.addrs) (or $v.clickhouse.password $v.clickhouse.existingSecret.name) -}}
{{- fail "clickhouse.password: needs clickhouse.addrs (embedded ClickHouse has no users)" -}}
{{- end -}}
{{- if and $v.auth.serviceToken.value $v.auth.serviceToken.existingSecret.name -}}
{{- fail "auth.serviceToken: set value or existingSecret.name, not both" -}}
{{- end -}}
{{- if and $split (not (include "sluice.serviceTokenSecret" .)) -}}
{{- fail "auth.serviceToken: split mode needs the credential the services call each other with: create a Secret (kubectl create secret generic sluice-service-token --from-literal=token=\"$(head -c 32 /dev/urandom | base64)\") and set auth.serviceToken.existingSecret.name" -}}
{{- end -}}
{{- if and $v.auth.serviceToken.value (lt (len $v.auth.serviceToken.value) 32) -}}
{{- fail "auth.serviceToken.value: the credential must be at least 32 characters" -}}
{{- end -}}
{{- if and $v.tls.server.mutual (not $v.tls.server.secretName) -}}
{{- fail "tls.server.mutual: needs tls.server.secretName (mutual TLS is TLS)" -}}
{{- end -}}
{{- if and $v.nats.external.passwordSecret.name (not $v.nats.external.user) -}}
{{- fail "nats.external.passwordSecret: needs nats.external.user" -}}
{{- end -}}
{{- if and (include "sluice.natsCluster" .) (or $v.nats.external.user $v.nats.external.credsSecret.name $v.nats.external.nkeySecret.name $v.nats.external.clientCertSecret $v.nats.external.tls) -}}
{{- fail "nats.external: credentials and TLS are for an external NATS; the chart's cluster (nats.cluster.enabled) takes its clients without them" -}}
{{- end -}}
{{- if and $v.clickhouse.workspaceUser (not $v.clickhouse.addrs) -}}
{{- fail "clickhouse.workspaceUser: needs clickhouse.addrs (embedded ClickHouse has no users)" -}}
{{- end -}}
{{- with $v.executor.autoscaling -}}
{{- if and .enabled (gt (int .minReplicas) (int .maxReplicas)) -}}
{{- fail (printf "executor.autoscaling: minReplicas %d is above maxReplicas %d" (int .minReplicas) (int .maxReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A Kubernetes quantity (10Gi, 512Mi, 1G) in bytes, for nats.conf. */}}
{{- define "sluice.bytes" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- $num := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- if not $unit -}}
{{- $num -}}
{{- else if hasKey $units $unit -}}
{{- mul (int64 $num) (index $units $unit) -}}
{{- else -}}
{{- fail (printf "%q: not a size (use a whole number with Ki, Mi, Gi, Ti, K, M, G or T)" $q) -}}
{{- end -}}
{{- end -}}
