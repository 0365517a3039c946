{{/* Names and labels. */}}
{{- define "edgegate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "edgegate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "edgegate.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "edgegate.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "edgegate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "edgegate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "edgegate.labels" -}}
{{ include "edgegate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "edgegate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "edgegate.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "edgegate.fullname" .)) -}}
{{- end -}}

{{/* TLS on the network listeners: standalone mode with tls.enabled. */}}
{{- define "edgegate.tls" -}}
{{- if and (eq .Values.mode "standalone") .Values.tls.enabled }}true{{ end -}}
{{- end -}}

{{/*
Refusals that a JSON schema cannot express, at install time, each naming its value.
*/}}
{{- define "edgegate.validate" -}}
{{- $standalone := eq .Values.mode "standalone" -}}
{{- if and $standalone (not .Values.tls.enabled) (not .Values.insecure) -}}
{{- fail "tls.enabled is false: plaintext gRPC and HTTP on the pod IP need insecure: true (or keep tls.enabled)" -}}
{{- end -}}
{{- if and $standalone .Values.tls.enabled (not .Values.tls.certManager.enabled) (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled: give tls.existingSecret or turn on tls.certManager.enabled" -}}
{{- end -}}
{{- if eq .Values.probes.type "grpc" -}}
{{- if not $standalone -}}
{{- fail "probes.type grpc: in sidecar mode gRPC is a Unix socket, which the kubelet cannot probe; use probes.type http" -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.grpc.mutualTLS -}}
{{- fail "probes.type grpc: grpc.mutualTLS asks every client for a certificate, which the kubelet's gRPC probe cannot present; use probes.type http" -}}
{{- end -}}
{{- if and .Values.tls.enabled (ne .Values.probes.grpcMode "TLS") -}}
{{- fail "probes.type grpc with tls.enabled: set probes.grpcMode TLS (Kubernetes 1.37+, feature gate GRPCContainerProbeTLS)" -}}
{{- end -}}
{{- end -}}
{{- if and (or .Values.hostNetwork .Values.serialDevices) (ne .Values.kind "DaemonSet") -}}
{{- fail "hostNetwork and serialDevices are for kind: DaemonSet (one gateway per node)" -}}
{{- end -}}
{{- range $k := list "gateway" "grpc" "http" -}}
{{- if hasKey $.Values.config $k -}}
{{- fail (printf "config.%s: the chart writes this section; use the values gateway, grpc and http (their settings maps for other keys)" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Seconds of a Go duration such as 10s, 1m30s or 500ms (rounded up). */}}
{{- define "edgegate.seconds" -}}
{{- $d := . | toString -}}
{{- $s := 0.0 -}}
{{- range $m := regexFindAll "[0-9.]+(ms|h|m|s)" $d -1 -}}
{{- $n := regexFind "^[0-9.]+" $m | float64 -}}
{{- if hasSuffix "ms" $m }}{{ $s = addf $s (divf $n 1000) }}
{{- else if hasSuffix "h" $m }}{{ $s = addf $s (mulf $n 3600) }}
{{- else if hasSuffix "m" $m }}{{ $s = addf $s (mulf $n 60) }}
{{- else }}{{ $s = addf $s $n }}{{ end -}}
{{- end -}}
{{- ceil $s | int -}}
{{- end -}}

{{/* preStop pause: standalone only, so that Service endpoints drop the pod first. */}}
{{- define "edgegate.preStopSeconds" -}}
{{- if eq .Values.mode "standalone" }}5{{ else }}0{{ end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the preStop pause, three stop stages of
shutdownTimeout each, five seconds of slack, and in sidecar mode the workload's own.
*/}}
{{- define "edgegate.grace" -}}
{{- $g := add (include "edgegate.preStopSeconds" . | int) (mul 3 (include "edgegate.seconds" .Values.gateway.shutdownTimeout | int)) 5 -}}
{{- if eq .Values.mode "sidecar" }}{{ $g = add $g .Values.sidecar.workloadGracePeriodSeconds }}{{ end -}}
{{- $g -}}
{{- end -}}

{{/* The edgegate config file. */}}
{{- define "edgegate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $tlsDir := "/etc/edgegate/tls" -}}
{{- $gw := deepCopy .Values.gateway.settings -}}
{{- $_ := set $gw "data_dir" "/var/lib/edgegate" -}}
{{- $_ := set $gw "shutdown_timeout" .Values.gateway.shutdownTimeout -}}
{{- with .Values.gateway.id }}{{ $_ := set $gw "id" . }}{{ end -}}
{{- with .Values.gateway.labels }}{{ $_ := set $gw "labels" . }}{{ end -}}
{{- $_ := set $cfg "gateway" $gw -}}
{{- $j := get $cfg "journal" | default dict -}}
{{- if not (hasKey $j "max_size") }}{{ $_ := set $j "max_size" .Values.persistence.journalMaxSize }}{{ end -}}
{{- $_ := set $cfg "journal" $j -}}
{{- $grpc := deepCopy .Values.grpc.settings -}}
{{- $http := dict "listen" (printf "0.0.0.0:%d" (.Values.http.port | int)) -}}
{{- if eq .Values.mode "sidecar" -}}
{{- $_ := set $grpc "listen" (printf "unix://%s" .Values.grpc.socket) -}}
{{- /* Probes and Prometheus reach the pod IP: health, readiness and metrics only. */ -}}
{{- $_ := set $http "insecure" true -}}
{{- else -}}
{{- $_ := set $grpc "listen" (printf "0.0.0.0:%d" (.Values.grpc.port | int)) -}}
{{- if .Values.tls.enabled -}}
{{- $t := dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir) -}}
{{- $_ := set $http "tls" $t -}}
{{- $gt := deepCopy $t -}}
{{- if .Values.grpc.mutualTLS }}{{ $_ := set $gt "client_ca_file" (printf "%s/ca.crt" $tlsDir) }}{{ end -}}
{{- $_ := set $grpc "tls" $gt -}}
{{- else -}}
{{- $_ := set $grpc "insecure" true -}}
{{- $_ := set $http "insecure" true -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "grpc" $grpc -}}
{{- $_ := set $cfg "http" $http -}}
{{- toYaml $cfg -}}
{{- end -}}
