# The run lock and the journal, shared by lock.sh and transaction.sh (bundled after common.sh).
# The lock is the folder $VSA_LOCK; its file "owner" holds "RUN-ID CONTROLLER PID EPOCH USER" of
# the holding run. Every change to it happens under flock(1) on $VSA_LOCK.flock, so that taking
# over a stale lock is atomic: no two runs ever see it free at once. Its age is the owner file's
# mtime by this host's clock (the holder refreshes it); the controller's clock is never used.
# shellcheck shell=sh

run_of() { printf '%s' "${1%% *}"; }

# One attempt. $1 owner line, $2 seconds after which a holder counts as dead, $3 a holder known to
# be dead (""). Exit status 0: taken (or already ours), 2: held by another run, 1: error.
lock_try() (
    flock -w 60 9 || exit 1
    if [ -d "$VSA_LOCK" ]; then
        holder=$(cat "$VSA_LOCK/owner" 2>/dev/null)
        [ -n "$holder" ] && [ "$(run_of "$holder")" = "$(run_of "$1")" ] && exit 0
        since=$(stat -c %Y "$VSA_LOCK/owner" 2>/dev/null || stat -c %Y "$VSA_LOCK") || exit 1
        if { [ -n "$3" ] && [ "$holder" = "$3" ]; } || [ $(( $(date +%s) - since )) -gt "$2" ]; then
            say "taking over the run lock of a dead run: ${holder:-unknown}"
            rm -rf "$VSA_LOCK" || exit 1
        else
            exit 2
        fi
    fi
    mkdir "$VSA_LOCK" || exit 1
    printf '%s\n' "$1" > "$VSA_LOCK/owner.new" && mv -fT "$VSA_LOCK/owner.new" "$VSA_LOCK/owner"
) 9>> "$VSA_LOCK.flock"

# Take the lock, waiting up to $4 seconds for another run ($1-$3 as lock_try). 0: taken, 75: gave up.
lock_take() {
    mkdir -p "$VSA_STATE" && chmod 0700 "$VSA_STATE" || return 1
    deadline=$(( $(date +%s) + $4 ))
    while :; do
        lock_try "$1" "$2" "$3"
        case $? in
            0) return 0 ;;
            2) ;;
            *) say "cannot take the run lock /$VSA_LOCK"; return 1 ;;
        esac
        if [ "$(date +%s)" -ge "$deadline" ]; then
            say "this host is locked by another run: $(cat "$VSA_LOCK/owner" 2>/dev/null || echo unknown) (lock /$VSA_LOCK)"
            return 75
        fi
        sleep 1
    done
}

# Refresh (touch) or release the lock if run $2 still holds it. $1: refresh or release.
lock_change() (
    [ -d "$VSA_LOCK" ] || exit 0
    flock -w 60 9 || exit 1
    [ "$(run_of "$(cat "$VSA_LOCK/owner" 2>/dev/null)")" = "$2" ] || exit 0
    case $1 in
        refresh) touch "$VSA_LOCK/owner" ;;
        release) rm -rf "$VSA_LOCK" ;;
    esac
) 9>> "$VSA_LOCK.flock"

# The process whose life is the run's: the first ancestor of this shell that is neither a shell nor
# a privilege wrapper (on a host, the sshd of the controller's connection, which carries every step
# of the run; in the tests, the test). Nothing when the walk reaches init: no lifeline, no keeper.
lifeline() {
    pid=$PPID
    while [ "$pid" -gt 1 ]; do
        case $(cat "/proc/$pid/comm" 2> /dev/null) in
            sh | dash | bash | sudo | su | doas | env) ;;
            *) echo "$pid"; return ;;
        esac
        pid=$(sed 's/.*) //' "/proc/$pid/stat" 2> /dev/null | cut -d' ' -f2)
        [ -n "$pid" ] || return
    done
}

# Keep run $1's lock fresh, by this host's clock, every $3 seconds, from the background, for as long
# as process $2 lives and the lock is still the run's: a run longer than the stale limit keeps its
# lock through every step, and a dead run's lock goes stale once its lifeline is gone.
lock_keep() {
    [ -n "$2" ] || return 0
    (
        trap '' HUP PIPE
        ticks=0
        while sleep 1 && kill -0 "$2" 2> /dev/null &&
            [ "$(run_of "$(cat "$VSA_LOCK/owner" 2> /dev/null)")" = "$1" ]; do
            ticks=$((ticks + 1))
            if [ "$ticks" -ge "$3" ]; then ticks=0; lock_change refresh "$1"; fi
        done
    ) < /dev/null > /dev/null 2>&1 &
}

inode() { stat -c '%d:%i' "$1" 2> /dev/null || echo "none: $1"; }

# Run $1 (base64 of a shell command) for a restore; its output goes to the log.
run_encoded() {
    printf '%s' "$1" | base64 -d | sh >> "$VSA_LOG" 2>&1 || printf 'failed: %s\n' "$1" >> "$VSA_LOG"
}

# Put back what the transaction recorded in journal $1 (run $2) had changed. Every step tolerates
# one that never happened: a record is written before its change. Not to be killed by a closed
# connection: SIGPIPE and SIGHUP are ignored, and everything goes to the log on the host.
restore_journal() (
    trap '' PIPE HUP
    printf '%s restoring run %s\n' "$(date -u +%FT%TZ)" "$2" >> "$VSA_LOG"
    sed -n 's/^undo-first //p' "$1" | while read -r command; do run_encoded "$command"; done
    while IFS= read -r line; do
        kind=${line%% *} rest=${line#* }
        case $kind in
            backup|removed)
                if [ "$(inode "$rest.vsa-bak.$2")" = "$(inode "$rest")" ]; then
                    rm -f "$rest.vsa-bak.$2"  # never replaced: the backup is a second name of it
                elif [ -e "$rest.vsa-bak.$2" ] || [ -L "$rest.vsa-bak.$2" ]; then
                    mv -fT "$rest.vsa-bak.$2" "$rest" >> "$VSA_LOG" 2>&1
                fi ;;
            new) rm -f "$rest" >> "$VSA_LOG" 2>&1 ;;
            temp) rm -f "$rest.vsa-new.$2" ;;
            meta)  # meta UID:GID MODE PATH
                ids=${rest%% *} rest=${rest#* }
                mode=${rest%% *} path=${rest#* }
                chown -h "$ids" "$path" >> "$VSA_LOG" 2>&1
                [ -L "$path" ] || chmod "$mode" "$path" >> "$VSA_LOG" 2>&1 ;;
        esac
    done < "$1"
    sed -n 's/^undo-last //p' "$1" | while read -r command; do run_encoded "$command"; done
)

# Forget a finished (committed) run's backups.
drop_backups() {
    sed -n 's/^\(backup\|removed\) //p' "$1" | while IFS= read -r path; do rm -f "$path.vsa-bak.$2"; done
}

# A transaction whose shell was killed where no trap runs (SIGKILL, power loss) left its journal:
# finish it if it had committed, else undo it; then remove its staging. Called under the lock.
recover() {
    [ -f "$VSA_JOURNAL" ] || return 0
    old=$(sed -n 's/^run //p' "$VSA_JOURNAL" | head -n 1)
    if grep -qx commit "$VSA_JOURNAL"; then
        say "finishing the committed change of run $old"
        drop_backups "$VSA_JOURNAL" "$old"
    else
        say "undoing the unfinished change of run $old"
        restore_journal "$VSA_JOURNAL" "$old"
    fi
    rm -rf "$VSA_STATE/stage/$old".* && rm -f "$VSA_JOURNAL"
}
