{{/* Names and labels. */}}
{{- define "promfed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "promfed" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-promfed" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "promfed.selectorLabels" -}}
app.kubernetes.io/name: promfed
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "promfed.labels" -}}
{{ include "promfed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "promfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "promfed.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "promfed.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "promfed.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The Service's DNS names: what the serving certificate is for. */}}
{{- define "promfed.dnsNames" -}}
{{- $svc := include "promfed.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* Namespaces never sent to promfed: webhook.excludedNamespaces and the release's. */}}
{{- define "promfed.excludedNamespaces" -}}
{{- append .Values.webhook.excludedNamespaces .Release.Namespace | uniq | toJson -}}
{{- end -}}

{{/*
The promfed config, as YAML: the promfed keys of the values, and the excluded namespaces of
the operator kinds' selectors unless the values set them.
*/}}
{{- define "promfed.config" -}}
{{- $config := dict -}}
{{- range $key := list "localClusterName" "clusterLabelName" "additionalScrapeConfigs" "clusters" "federationJobPrefix" "configmap" "keys" "rules" "federationAlerts" "operator" "prometheusRule" "prometheus" -}}
{{- if hasKey $.Values $key -}}
{{- if not (kindIs "invalid" (get $.Values $key)) -}}
{{- $_ := set $config $key (deepCopy (get $.Values $key)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $excluded := include "promfed.excludedNamespaces" . | fromJsonArray -}}
{{- range $key := list "prometheusRule" "prometheus" -}}
{{- $selector := get $config $key | default dict -}}
{{- if not (hasKey $selector "excludeNamespaces") -}}
{{- $_ := set $selector "excludeNamespaces" $excluded -}}
{{- end -}}
{{- $_ := set $config $key $selector -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
matchConditions: what `promfed match-conditions --kind KIND --config promfed.yaml` prints for
the config above (src/config/selector.rs; tests/it/chart.rs holds the two equal for every values
combination it renders). Argument: (list $ "ConfigMap"|"PrometheusRule"|"Prometheus").
*/}}
{{- define "promfed.celString" -}}
'{{ . | replace "\\" "\\\\" | replace "'" "\\'" | replace "\n" "\\n" | replace "\r" "\\r" }}'
{{- end -}}

{{- define "promfed.celOneOf" -}}
{{- $field := index . 0 -}}
{{- $values := index . 1 -}}
{{- if eq (len $values) 1 -}}
{{- printf "%s == %s" $field (include "promfed.celString" (first $values)) -}}
{{- else -}}
{{- $items := list -}}
{{- range $values }}{{ $items = append $items (include "promfed.celString" .) }}{{ end -}}
{{- printf "%s in [%s]" $field (join ", " $items) -}}
{{- end -}}
{{- end -}}

{{- define "promfed.celHasLabels" -}}
{{- $terms := list -}}
{{- range $k, $v := . -}}
{{- $key := include "promfed.celString" $k -}}
{{- $terms = append $terms (printf "%s in object.metadata.labels && object.metadata.labels[%s] == %s" $key $key (include "promfed.celString" (toString $v))) -}}
{{- end -}}
{{- if $terms -}}({{ join " && " $terms }}){{- else -}}true{{- end -}}
{{- end -}}

{{- define "promfed.matchConditions" -}}
{{- $root := index . 0 -}}
{{- $kind := index . 1 -}}
{{- $config := include "promfed.config" $root | fromYaml -}}
{{- $conditions := list -}}
{{- if eq $kind "ConfigMap" -}}
{{- $selector := $config.configmap | default dict -}}
{{- $keys := list "prometheus.yml" -}}
{{- if and $config.keys (hasKey $config.keys "prometheus") -}}{{- $keys = $config.keys.prometheus -}}{{- end -}}
{{- $terms := list -}}
{{- range $keys }}{{ $terms = append $terms (printf "%s in object.data" (include "promfed.celString" .)) }}{{ end -}}
{{- $conditions = append $conditions (dict "name" "prometheus-config-key" "expression" (printf "has(object.data) && (%s)" (join " || " $terms))) -}}
{{- $sets := list (dict "app" "prometheus" "component" "server") (dict "app.kubernetes.io/name" "prometheus" "app.kubernetes.io/component" "server") -}}
{{- if hasKey $selector "labels" -}}
{{- $sets = $selector.labels -}}
{{- if kindIs "map" $sets }}{{ $sets = list $sets }}{{ end -}}
{{- end -}}
{{- if $sets -}}
{{- $terms = list -}}
{{- range $sets }}{{ $terms = append $terms (include "promfed.celHasLabels" .) }}{{ end -}}
{{- $conditions = append $conditions (dict "name" "prometheus-server-labels" "expression" (printf "has(object.metadata.labels) && (%s)" (join " || " $terms))) -}}
{{- end -}}
{{- if $selector.names -}}
{{- $conditions = append $conditions (dict "name" "prometheus-server-name" "expression" (include "promfed.celOneOf" (list "object.metadata.name" $selector.names))) -}}
{{- end -}}
{{- if $selector.namespaces -}}
{{- $conditions = append $conditions (dict "name" "prometheus-server-namespace" "expression" (include "promfed.celOneOf" (list "object.metadata.namespace" $selector.namespaces))) -}}
{{- end -}}
{{- else -}}
{{- $prefix := lower $kind -}}
{{- $selector := get $config (ternary "prometheusRule" "prometheus" (eq $kind "PrometheusRule")) -}}
{{- if $selector.excludeNamespaces -}}
{{- $conditions = append $conditions (dict "name" (printf "%s-namespace-not-excluded" $prefix) "expression" (printf "!(%s)" (include "promfed.celOneOf" (list "request.namespace" $selector.excludeNamespaces)))) -}}
{{- end -}}
{{- if $selector.namespaces -}}
{{- $conditions = append $conditions (dict "name" (printf "%s-namespace" $prefix) "expression" (include "promfed.celOneOf" (list "request.namespace" $selector.namespaces))) -}}
{{- end -}}
{{- if $selector.labels -}}
{{- $conditions = append $conditions (dict "name" (printf "%s-labels" $prefix) "expression" (printf "has(object.metadata.labels) && %s" (include "promfed.celHasLabels" $selector.labels))) -}}
{{- end -}}
{{- end -}}
{{- $optOut := include "promfed.celString" "promfed.io/rewrite" -}}
{{- $conditions = append $conditions (dict "name" "promfed-rewrite-not-disabled" "expression" (printf "!has(object.metadata.labels) || !(%s in object.metadata.labels) || object.metadata.labels[%s] != 'false'" $optOut $optOut)) -}}
{{- toYaml $conditions -}}
{{- end -}}

{{/* The webhook's caBundle (base64 of the CA's PEM), for the existing-Secret mode. */}}
{{- define "promfed.existingCaBundle" -}}
{{- if .Values.tls.caBundle -}}
{{- .Values.tls.caBundle | b64enc -}}
{{- else -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.tls.existingSecret -}}
{{- if and $secret (index ($secret.data | default dict) "ca.crt") -}}
{{- index $secret.data "ca.crt" -}}
{{- else -}}
{{- fail (printf "tls.existingSecret %s/%s: no ca.crt in it (or not readable yet, e.g. `helm template`): set tls.caBundle to the PEM of the CA that signed its certificate" .Release.Namespace .Values.tls.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The chart-made CA and serving certificate (Secret data: tls.crt, tls.key, ca.crt, base64), kept
from the Secret already in the cluster so that upgrades and rollbacks leave them as they are;
made anew only when there is none (first install, `helm template`).
*/}}
{{- define "promfed.selfSignedData" -}}
{{- $name := include "promfed.tlsSecretName" . -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name -}}
{{- $data := dict -}}
{{- if $existing -}}{{- $data = $existing.data | default dict -}}{{- end -}}
{{- if and (index $data "tls.crt") (index $data "tls.key") (index $data "ca.crt") -}}
tls.crt: {{ index $data "tls.crt" }}
tls.key: {{ index $data "tls.key" }}
ca.crt: {{ index $data "ca.crt" }}
{{- else -}}
{{- $days := int .Values.tls.selfSigned.validityDays -}}
{{- $ca := genCA (printf "%s-ca" (include "promfed.fullname" .)) $days -}}
{{- $dns := include "promfed.dnsNames" . | fromJsonArray -}}
{{- $cert := genSignedCert (printf "%s.%s.svc" (include "promfed.fullname" .) .Release.Namespace) .Values.tls.selfSigned.ipAddresses $dns $days $ca -}}
tls.crt: {{ $cert.Cert | b64enc }}
tls.key: {{ $cert.Key | b64enc }}
ca.crt: {{ $ca.Cert | b64enc }}
{{- end -}}
{{- end -}}
