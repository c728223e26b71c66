{{/* Chart name. */}}
{{- define "penghubung.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name. */}}
{{- define "penghubung.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Selector labels. */}}
{{- define "penghubung.selectorLabels" -}}
app.kubernetes.io/name: {{ include "penghubung.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "penghubung.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "penghubung.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Image reference. */}}
{{- define "penghubung.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The signer container (used as a native sidecar or an ordinary container). */}}
{{- define "penghubung.signerContainer" -}}
- name: signer
  image: {{ include "penghubung.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.signer.nativeSidecar }}
  restartPolicy: Always
  startupProbe:
    exec:
      command: ["test", "-S", "/run/penghubung/signer.sock"]
    periodSeconds: 1
    failureThreshold: 30
  {{- end }}
  args:
    - signer
    - --key
    - /etc/penghubung/signer/{{ .Values.signer.keyName }}
    - --chain
    - /etc/penghubung/signer/{{ .Values.signer.chainName }}
    - --socket
    - /run/penghubung/signer.sock
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.signer.resources | nindent 4 }}
  volumeMounts:
    - name: signer-run
      mountPath: /run/penghubung
    - name: signer-key
      mountPath: /etc/penghubung/signer
      readOnly: true
{{- end }}
