#!/bin/sh
# vsa-ops reload by signal. Arguments: ROOT CONTAINER SIGNAL SECONDS. Sends SIGNAL to the container's main
# process (docker kill) and returns once that process has started a new child. A master/worker daemon
# (NGINX on HUP) starts new workers only after it has read its changed configuration, and stops the
# old ones then: when this returns, the new configuration answers (an ACME check or a probe that
# came earlier met the old one). Exit 1 when the signal cannot be sent, or when no new worker starts
# within SECONDS: the daemon kept its old configuration (its log says why).
# shellcheck shell=sh

cd "${1:-/}" || exit 1
container=$2 signal=$3 seconds=$4
pid=$(docker inspect -f '{{.State.Pid}}' "$container" 2> /dev/null) || { say "no container $container"; exit 1; }
children=/proc/$pid/task/$pid/children
before=" $(cat "$children" 2> /dev/null) "
docker kill --signal "$signal" "$container" > /dev/null || { say "cannot send SIG$signal to $container"; exit 1; }
# A kernel without the children file (CONFIG_PROC_CHILDREN) gives no way to watch: the signal is sent.
[ -r "$children" ] || exit 0
deadline=$(( $(date +%s) + seconds ))
while :; do
    now='' && read -r now < "$children" 2> /dev/null
    for child in $now; do
        case $before in *" $child "*) ;; *) exit 0 ;; esac
    done
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "$container started no new worker within $seconds s of SIG$signal: it kept its old configuration"
        exit 1
    fi
    sleep 0.02
done
