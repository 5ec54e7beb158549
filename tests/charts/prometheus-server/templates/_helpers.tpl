{{/* The chart's rule: the release name if it contains "prometheus", else <release>-prometheus. */}}
{{- define "prometheus.fullname" -}}
{{- if contains "prometheus" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-prometheus" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
