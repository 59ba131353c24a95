#!/bin/sh
# vsa-ops status: what a host runs, read in one go. POSIX sh, no bash-isms (shellcheck -s sh).
# shellcheck shell=sh
# Argument 1: the audit JSONL. Prints sections after "@@vsa:" marker lines:
#   status-containers  one line per container of every compose stack:
#                      name|project|service|state|health|restarts|exit code|restart policy
#   status-deploy      the audit trail's last deploy record (a JSON line), if any
#   status-backup      the audit trail's last backup record, if any
audit_log=${1:-}
echo '@@vsa:status-containers'
if command -v docker >/dev/null 2>&1; then
    ids=$(docker ps -aq --filter label=com.docker.compose.project 2>/dev/null)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # one argument per container id
        docker inspect --format '{{.Name}}|{{index .Config.Labels "com.docker.compose.project"}}|{{index .Config.Labels "com.docker.compose.service"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.RestartCount}}|{{.State.ExitCode}}|{{.HostConfig.RestartPolicy.Name}}' $ids 2>/dev/null
    fi
fi
for action in deploy backup; do
    echo "@@vsa:status-$action"
    if [ -n "$audit_log" ] && [ -r "$audit_log" ]; then
        grep "\"action\":\"$action" "$audit_log" | tail -n 1
    fi
done
true
