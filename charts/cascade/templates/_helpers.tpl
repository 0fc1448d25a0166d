{{/* Names. */}}
{{- define "cascade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every resource name; pod names (and so node ids) derive from it. Kept at
most 50 characters so "<fullname>-media-<i>" and "<fullname>-headless" stay DNS labels. */}}
{{- define "cascade.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cascade.headless" -}}
{{ include "cascade.fullname" . }}-headless
{{- end }}

{{- define "cascade.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource of the release carries. */}}
{{- define "cascade.commonLabels" -}}
helm.sh/chart: {{ include "cascade.chart" . }}
app.kubernetes.io/name: {{ include "cascade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.region }}
cascade-sfu.io/region: {{ . }}
{{- end }}
{{- end }}

{{/* Labels of the nodes' resources. */}}
{{- define "cascade.labels" -}}
{{ include "cascade.commonLabels" . }}
app.kubernetes.io/component: node
{{- end }}

{{/* The node pods' selector (stable across upgrades: never add to it). */}}
{{- define "cascade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cascade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end }}

{{- define "cascade.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cascade.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cascade.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "cascade.apiSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-api" (include "cascade.fullname" .)) }}
{{- end }}

{{/* The Secret holding the cluster secret (created by the chart, or existing). */}}
{{- define "cascade.clusterSecretName" -}}
{{- .Values.clusterSecret.existingSecret | default (printf "%s-cluster" (include "cascade.fullname" .)) }}
{{- end }}

{{/* True ("true") when the nodes use an external NATS. */}}
{{- define "cascade.externalNATS" -}}
{{- if or .Values.nats.external.url .Values.nats.external.urlSecret.name }}true{{ end }}
{{- end }}

{{/* The NATS cluster name, which is also the region's gateway name. */}}
{{- define "cascade.natsClusterName" -}}
{{- .Values.nats.clusterName | default .Values.region | default "cascade" }}
{{- end }}

{{/* Pods the chart renders per-pod objects for (NATS routes, media Services, per-pod config):
replicas, or autoscaling.maxReplicas when autoscaling. */}}
{{- define "cascade.podCount" -}}
{{- if .Values.autoscaling.enabled }}
{{- max (int .Values.autoscaling.maxReplicas) (int .Values.workload.replicas) }}
{{- else }}
{{- int .Values.workload.replicas }}
{{- end }}
{{- end }}

{{/* True ("true") when each StatefulSet pod reads its own config file (per-pod public IPs). */}}
{{- define "cascade.perPodConfig" -}}
{{- if and (not .Values.media.hostNetwork) .Values.media.service.publicIPs }}true{{ end }}
{{- end }}

{{/* Checks of combinations the schema cannot express. */}}
{{- define "cascade.validate" -}}
{{- $kind := .Values.workload.kind }}
{{- if and (contains "%d" .Values.turn.tls.host) (not (include "cascade.perPodConfig" .)) }}
{{- fail "turn.tls.host with %d (the pod ordinal) needs per-pod Services with media.service.publicIPs" }}
{{- end }}
{{- if and (eq $kind "DaemonSet") (not .Values.media.hostNetwork) }}
{{- fail "workload.kind DaemonSet needs media.hostNetwork: true (per-pod media Services need a StatefulSet)" }}
{{- end }}
{{- if and (eq $kind "Deployment") (not .Values.media.hostNetwork) }}
{{- fail "workload.kind Deployment needs media.hostNetwork: true (per-pod media Services need a StatefulSet's stable pod names)" }}
{{- end }}
{{- if and (eq .Values.media.publicIPFrom "value") (not .Values.media.publicIP) }}
{{- fail "media.publicIPFrom is \"value\" but media.publicIP is empty" }}
{{- end }}
{{- if and (not .Values.media.hostNetwork) .Values.media.service.publicIPs (lt (len .Values.media.service.publicIPs) (int (include "cascade.podCount" .))) }}
{{- fail (printf "media.service.publicIPs has %d addresses for %s pods: give one per pod" (len .Values.media.service.publicIPs) (include "cascade.podCount" .)) }}
{{- end }}
{{- if and (include "cascade.externalNATS" .) .Values.nats.gateway.enabled }}
{{- fail "nats.gateway is for the embedded NATS servers: with an external NATS, configure gateways on that NATS" }}
{{- end }}
{{- if and .Values.nats.tls.routes (not .Values.nats.tls.secretName) }}
{{- fail "nats.tls.routes needs nats.tls.secretName (the certificate the routes present)" }}
{{- end }}
{{- if and (include "cascade.externalNATS" .) .Values.nats.tls.secretName }}
{{- fail "nats.tls is for the embedded NATS servers: with an external NATS, configure TLS on that NATS and use a tls:// URL" }}
{{- end }}
{{- if and .Values.nats.gateway.enabled (not .Values.nats.gateway.remotes) }}
{{- fail "nats.gateway.enabled needs nats.gateway.remotes (the other regions' gateways)" }}
{{- end }}
{{- if and .Values.nats.gateway.enabled (not .Values.nats.tls.secretName) (not .Values.nats.gateway.insecure) }}
{{- fail "nats.gateway.enabled needs TLS: gateways cross regions. Set nats.tls.secretName (a Secret with tls.crt, tls.key and ca.crt), or nats.gateway.insecure: true for a lab" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (eq $kind "DaemonSet") }}
{{- fail "autoscaling is for a StatefulSet or Deployment, not a DaemonSet" }}
{{- end }}
{{- $ports := list (int .Values.node.httpPort) (int .Values.media.relayPort) }}
{{- if not (include "cascade.externalNATS" .) }}
{{- $ports = concat $ports (list (int .Values.nats.embedded.clientPort) (int .Values.nats.embedded.clusterPort)) }}
{{- if .Values.nats.gateway.enabled }}{{ $ports = append $ports (int .Values.nats.gateway.port) }}{{ end }}
{{- end }}
{{- range $i := until (int .Values.node.workers) }}
{{- $ports = append $ports (int (add $.Values.media.udpPort $i)) }}
{{- end }}
{{- range $p := include "cascade.clientPorts" . | fromYamlArray }}
{{- $ports = append $ports (int $p.port) }}
{{- end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail (printf "ports overlap: http, relay, NATS, media (udpPort .. udpPort+workers-1), ICE-TCP and TURN ports must all differ, TCP or UDP alike (Kubernetes merges a pod's ports by number): %v" $ports) }}
{{- end }}
{{- end }}

{{/* The NATS route URLs of the embedded servers. A StatefulSet routes to each pod's DNS name
through the headless Service (a server skips the route to itself); a Deployment or DaemonSet
routes to the headless Service's name, which NATS resolves to a random other member. */}}
{{- define "cascade.natsRoutes" -}}
{{- $headless := include "cascade.headless" . }}
{{- $port := int .Values.nats.embedded.clusterPort }}
{{- $routes := list }}
{{- if eq .Values.workload.kind "StatefulSet" }}
{{- $full := include "cascade.fullname" . }}
{{- range $i := until (int (include "cascade.podCount" .)) }}
{{- $routes = append $routes (printf "nats-route://%s-%d.%s.%s.svc:%d" $full $i $headless $.Release.Namespace $port) }}
{{- end }}
{{- else }}
{{- $routes = append $routes (printf "nats-route://%s.%s.svc:%d" $headless .Release.Namespace $port) }}
{{- end }}
{{- join "," $routes }}
{{- end }}

{{/* --nats-gateways: NAME=URL entries, comma-separated. */}}
{{- define "cascade.natsGateways" -}}
{{- $out := list }}
{{- range .Values.nats.gateway.remotes }}
{{- $name := .name }}
{{- range .urls }}
{{- $out = append $out (printf "%s=%s" $name .) }}
{{- end }}
{{- end }}
{{- join "," $out }}
{{- end }}

{{/* The node's config file (keys are `cascade node` flag names), as a dict. The node id, the
API key pair and the host-derived public IP come from the environment instead. */}}
{{- define "cascade.configDict" -}}
{{- $c := dict
  "http" (printf ":%d" (int .Values.node.httpPort))
  "udp-port" (int .Values.media.udpPort)
  "relay" (printf ":%d" (int .Values.media.relayPort))
  "workers" (int .Values.node.workers)
  "worker-consumers" (int .Values.node.workerConsumers)
  "keyframe-interval" .Values.node.keyframeInterval
  "rtx-budget" (int .Values.node.rtxBudget)
  "bwe" .Values.node.bwe
  "relay-fanout" (int .Values.node.relayFanout)
  "tcp-port" (int .Values.media.tcpPort)
  "turn-udp-port" (int .Values.turn.udpPort)
  "turn-tcp-port" (int .Values.turn.tcpPort)
  "turn-ttl" .Values.turn.ttl
  "turn-max-allocations" (int .Values.turn.maxAllocations)
  "heartbeat-interval" .Values.node.heartbeatInterval
  "heartbeat-timeout" .Values.node.heartbeatTimeout
  "resume-grace" .Values.node.resumeGrace
  "drain-timeout" (printf "%ds" (int .Values.drain.timeoutSeconds))
  "log-level" .Values.node.logLevel
  "log-json" .Values.node.logJSON
}}
{{- if .Values.node.pprof }}{{ $_ := set $c "pprof" true }}{{ end }}
{{- if .Values.turn.tls.secretName }}
{{- $_ := set $c "turn-tls-port" (int .Values.turn.tlsPort) }}
{{- $_ := set $c "turn-cert" "/etc/cascade-turn/tls.crt" }}
{{- $_ := set $c "turn-key" "/etc/cascade-turn/tls.key" }}
{{- with .Values.turn.tls.host }}{{ if not (contains "%d" .) }}{{ $_ := set $c "turn-host" . }}{{ end }}{{ end }}
{{- end }}
{{- with .Values.region }}{{ $_ := set $c "region" . }}{{ end }}
{{- if and .Values.media.hostNetwork (eq .Values.media.publicIPFrom "value") }}
{{- $_ := set $c "public-ip" .Values.media.publicIP }}
{{- end }}
{{- if include "cascade.externalNATS" . }}
{{- with .Values.nats.external.url }}{{ $_ := set $c "nats" . }}{{ end }}
{{- if .Values.nats.external.credentialsSecret.name }}
{{- $_ := set $c "nats-creds" (printf "/etc/cascade-nats/%s" .Values.nats.external.credentialsSecret.key) }}
{{- end }}
{{- else }}
{{- $_ := set $c "nats-listen" (printf "0.0.0.0:%d" (int .Values.nats.embedded.clientPort)) }}
{{- $_ := set $c "nats-cluster" (printf "0.0.0.0:%d" (int .Values.nats.embedded.clusterPort)) }}
{{- $_ := set $c "nats-routes" (include "cascade.natsRoutes" .) }}
{{- $_ := set $c "nats-cluster-name" (include "cascade.natsClusterName" .) }}
{{- if .Values.nats.gateway.enabled }}
{{- $_ := set $c "nats-gateway" (printf "0.0.0.0:%d" (int .Values.nats.gateway.port)) }}
{{- $_ := set $c "nats-gateways" (include "cascade.natsGateways" .) }}
{{- if .Values.nats.gateway.insecure }}{{ $_ := set $c "nats-gateway-insecure" true }}{{ end }}
{{- end }}
{{- if .Values.nats.tls.secretName }}
{{- $_ := set $c "nats-tls-cert" "/etc/cascade-nats-tls/tls.crt" }}
{{- $_ := set $c "nats-tls-key" "/etc/cascade-nats-tls/tls.key" }}
{{- $_ := set $c "nats-tls-ca" (printf "/etc/cascade-nats-tls/%s" .Values.nats.tls.caKey) }}
{{- if .Values.nats.tls.routes }}{{ $_ := set $c "nats-route-tls" true }}{{ end }}
{{- end }}
{{- end }}
{{- toYaml (mergeOverwrite $c (deepCopy .Values.node.extraConfig)) }}
{{- end }}

{{/* The config checksum annotated on the pods: a change rolls them. The NATS routes are left out:
they only seed the NATS cluster (the servers gossip the full mesh to each other), so scaling the
StatefulSet does not restart every node. */}}
{{- define "cascade.configChecksum" -}}
{{- $cfg := fromYaml (include "cascade.configDict" .) }}
{{- $ips := list }}
{{- if include "cascade.perPodConfig" . }}{{ $ips = .Values.media.service.publicIPs }}{{ end }}
{{- printf "%s\n%s" (toYaml (omit $cfg "nats-routes")) (join "," $ips) | sha256sum }}
{{- end }}

{{/* The preStop hook's script: mint an admin token (`cascade token --admin`, from the pod's API
key pair), drain, then wait for the last participant or the deadline. */}}
{{- define "cascade.preStopScript" -}}
{{- $bb := .Values.drain.busybox -}}
{{- $base := printf "http://127.0.0.1:%d" (int .Values.node.httpPort) -}}
tok=$({{ .Values.drain.cascade }} token --admin --ttl {{ add (int .Values.drain.timeoutSeconds) 60 }}s)
{{ $bb }} wget -q -O /dev/null -T 5 --header "Authorization: Bearer ${tok}" --post-data "" {{ $base }}/admin/drain || true
end=$(( $({{ $bb }} date +%s) + {{ int .Values.drain.timeoutSeconds }} ))
while [ "$({{ $bb }} date +%s)" -lt "$end" ]; do
  stats=$({{ $bb }} wget -q -O - -T 2 --header "Authorization: Bearer ${tok}" {{ $base }}/stats) || exit 0
  case "$stats" in *'"participants":0,'*|*'"participants":0}'*) exit 0 ;; esac
  {{ $bb }} sleep 1
done
{{- end }}

{{/* The node's other client-facing ports besides HTTP and the UDP media range: ICE-TCP and the
TURN listeners that are on, as a YAML list of {name, port, protocol}. */}}
{{- define "cascade.clientPorts" -}}
{{- $ports := list }}
{{- if gt (int .Values.media.tcpPort) 0 }}
{{- $ports = append $ports (dict "name" "ice-tcp" "port" (int .Values.media.tcpPort) "protocol" "TCP") }}
{{- end }}
{{- if gt (int .Values.turn.udpPort) 0 }}
{{- $ports = append $ports (dict "name" "turn-udp" "port" (int .Values.turn.udpPort) "protocol" "UDP") }}
{{- end }}
{{- if gt (int .Values.turn.tcpPort) 0 }}
{{- $ports = append $ports (dict "name" "turn-tcp" "port" (int .Values.turn.tcpPort) "protocol" "TCP") }}
{{- end }}
{{- if and .Values.turn.tls.secretName (gt (int .Values.turn.tlsPort) 0) }}
{{- $ports = append $ports (dict "name" "turn-tls" "port" (int .Values.turn.tlsPort) "protocol" "TCP") }}
{{- end }}
{{- toYaml $ports }}
{{- end }}

{{/* The Secret holding the webhook signing key (created by the chart, or existing). */}}
{{- define "cascade.webhookSecretName" -}}
{{- .Values.webhook.existingSecret | default (printf "%s-webhook" (include "cascade.fullname" .)) }}
{{- end }}
