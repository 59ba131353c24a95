#!/bin/sh
# vsa-ops reload by signal. Arguments: ROOT CONTAINER SIGNAL SECONDS. Sends SIGNAL to the container's
# main process (docker kill) and returns once a new process has started under it. A master/worker
# daemon (NGINX on HUP) starts new workers only after it has read its changed configuration, and
# stops the old ones then: when this returns, the new configuration answers (an ACME check or a probe
# that came earlier met the old one). The whole process tree counts, not only the main process's
# children: under an init (compose's `init: true`, tini) the master is a child and its workers are
# grandchildren. Exit 1 when the signal cannot be sent, when the main process ends on it (the
# container stops or restarts: no reload), or when no new process starts within SECONDS: the daemon
# kept its old configuration (its log says why).
# shellcheck shell=sh

cd "${1:-/}" || exit 1
container=$2 signal=$3 seconds=$4
pid=$(docker inspect -f '{{.State.Pid}}' "$container" 2> /dev/null) || { say "no container $container"; exit 1; }
# The processes under $1, each followed by a space.
descendants() {
    kids='' && read -r kids < "/proc/$1/task/$1/children" 2> /dev/null
    for kid in $kids; do
        printf '%s ' "$kid"
        descendants "$kid"
    done
}
# $1 runs: neither gone nor a zombie (a state field "Z" after the command's parentheses).
runs() {
    stat='' && read -r stat < "/proc/$1/stat" 2> /dev/null
    stat=${stat##*) }
    [ -n "$stat" ] && [ "${stat%% *}" != Z ]
}
# Looked at before the signal: after it, a main process that ended on it would pass for such a kernel.
# A kernel without the children file (CONFIG_PROC_CHILDREN) gives no way to watch: the signal is sent.
watch='' && [ -r "/proc/$pid/task/$pid/children" ] && watch=yes
before=" $(descendants "$pid")"
docker kill --signal "$signal" "$container" > /dev/null || { say "cannot send SIG$signal to $container"; exit 1; }
[ -n "$watch" ] || exit 0
deadline=$(( $(date +%s) + seconds ))
while :; do
    runs "$pid" || { say "$container: its main process ended on SIG$signal (the container stopped or restarts)"; exit 1; }
    for process in $(descendants "$pid"); do
        case $before in *" $process "*) ;; *) exit 0 ;; esac
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "$container started no new worker within $seconds s of SIG$signal: it kept its old configuration"
        exit 1
    fi
    sleep 0.02
done
