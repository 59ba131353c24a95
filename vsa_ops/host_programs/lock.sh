#!/bin/sh
# vsa-ops run lock. Arguments: ROOT ACTION RUN-ID, then for take: OWNER WAIT STALE DEAD-HOLDER
# FINGERPRINT SALT. take waits up to WAIT seconds, takes over a holder older than STALE seconds or
# equal to DEAD-HOLDER, then checks that the managed state (its request on stdin, as state.sh reads
# it) still has FINGERPRINT ("-": no check), and finishes or undoes another run's unfinished change;
# then a keeper refreshes the lock in the background through every later step of the run, while the
# controller's connection lives (lock_keep). refresh and release act only if RUN-ID holds the lock.
# Exit 75: locked by another run, or the host changed.
# shellcheck shell=sh

cd "${1:-/}" || exit 1
action=$2 run=$3
case $action in
    take)
        umask 077
        lock_take "$4" "$6" "$7" "$5" || exit $?
        request=$(mktemp) || { lock_change release "$run"; exit 1; }
        cat > "$request"
        now=$(fingerprint "$request" "$9")
        rm -f "$request"
        if [ "$8" != - ] && [ "$now" != "$8" ]; then
            lock_change release "$run"
            say "the host changed since this run read it (another run?); nothing was applied, run again"
            exit 75
        fi
        recover || { lock_change release "$run"; exit 1; }
        rm -rf "$VSA_STATE/stage/"*  # only the lock's holder stages: any staging is a dead run's
        lock_keep "$run" "$(lifeline)" $(($6 / 4 + 1)) ;;
    refresh|release) lock_change "$action" "$run" ;;
    *) say "unknown lock action $action"; exit 2 ;;
esac
