#!/bin/sh
# vsa-ops files-and-stacks transaction: all or nothing. Arguments: ROOT RUN-ID, then, to take the
# run lock itself, OWNER WAIT STALE DEAD-HOLDER FINGERPRINT SALT (as lock.sh; FINGERPRINT "-": the
# run holds the lock already). Stdin, one action a line (B64: base64 of a shell command or text;
# commands see the staging folder as $VSA_STAGE):
#   d|f|s PATH                      what the fingerprint covers (with the lock only)
#   check B64CMD B64MESSAGE         before anything moves (compose config of a staged file)
#   install PATH                    the archive's file PATH replaces PATH
#   meta UID:GID MODE PATH          owner and mode of an unchanged file
#   remove PATH                     a file that goes
#   validate B64CMD B64MESSAGE      after the renames, before any reload (nginx -t, promtool)
#   act WHEN B64CMD B64UNDO B64MESSAGE   a start, restart or reload; its undo runs before (WHEN
#                                   "first") or after ("last") the files come back
#   probe SECONDS CONTAINER...      these must still run SECONDS later
#   resume B64UNDO                  the last undo of a failed run: what a step before this program
#                                   stopped runs again (the old log shipper of a cut-over)
#   archive                         then the files: a gzipped tar in base64, paths relative
#   end                             the last line: the data is complete
# Every step is checked. Before each change a journal record says how to undo it; on any failure or
# signal the trap undoes them; a run killed where no trap runs is undone by the next (recover).
# Progress goes to stdout ("vsa-ops step NAME"): with the controller gone, that write ends the run.
# Step hook (off unless it exists): an executable file step-hook in $VSA_STATE (root-only, so only
# root can put one there) runs at each step (upload, backup, rename, validate, reload, commit)
# with STEP RUN-ID as arguments, its output in the log; an exit status other than 0 stops a run
# before its commit and puts everything back. The fault tests hold a run at a named step with it.
# shellcheck shell=sh

cd "${1:-/}" || exit 1
run=$2 fingerprint=${7:--}
# shellcheck disable=SC2153  # VSA_STATE is common.sh's, bundled before this program
step_hook=$VSA_STATE/step-hook
umask 077
committed='' took='' stage='' refresher=''

finish() {
    status=$?
    trap '' PIPE HUP INT TERM
    if [ -f "$VSA_JOURNAL" ] && grep -qx "run $run" "$VSA_JOURNAL"; then
        if [ -n "$committed" ]; then
            drop_backups "$VSA_JOURNAL" "$run"
        else
            say "rolling back (the log on the host: /$VSA_LOG)" || true  # the link may be gone: go on
            restore_journal "$VSA_JOURNAL" "$run"
            [ "$status" -eq 0 ] && status=1
        fi
        rm -f "$VSA_JOURNAL"
    fi
    [ -n "$refresher" ] && kill "$refresher" 2> /dev/null
    [ -n "$stage" ] && rm -rf "$stage"
    [ -n "$took" ] && lock_change release "$run"
    exit "$status"
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE

fail() { say "$*"; exit 1; }
decode() { printf '%s' "$1" | base64 -d; }
note() { printf '%s\n' "$*" >> "$VSA_JOURNAL" || fail "cannot write the journal /$VSA_JOURNAL"; }
# A step: in the journal and on stdout, then the step hook if there is one.
at() {
    note "step $1"
    echo "vsa-ops step $1"
    if [ -x "$step_hook" ]; then
        "$step_hook" "$1" "$run" < /dev/null >> "$VSA_LOG" 2>&1 || fail "the step hook /$step_hook stopped step $1"
    fi
}

if ! { mkdir -p "$VSA_STATE/stage" && chmod 0700 "$VSA_STATE"; }; then fail "cannot create /$VSA_STATE"; fi
if [ "$fingerprint" != - ]; then
    lock_take "$3" "$5" "$6" "$4" || exit $?
    took=1
    # A run longer than the stale limit must not lose its lock; a dead one must (kill -0: alive?).
    shell=$$
    ( while sleep $(( $5 / 4 + 1 )) && kill -0 "$shell"; do lock_change refresh "$run"; done ) > /dev/null 2>&1 &
    refresher=$!
fi
# Only the lock's holder stages files (stdin waits until then): any other staging is a dead run's.
rm -rf "$VSA_STATE/stage/"*
stage=$(mktemp -d "$VSA_STATE/stage/$run.XXXXXX") || fail "cannot create a staging folder in /$VSA_STATE/stage"
export VSA_STAGE="$PWD/$stage"
cat > "$stage/input" || fail "the staging folder /$VSA_STATE/stage is full"
[ "$(tail -n 1 "$stage/input")" = end ] || fail "this run's data stops short (the connection was lost?)"
sed '/^archive$/q' "$stage/input" > "$stage/actions" || fail "the staging folder /$VSA_STATE/stage is full"
if [ -n "$took" ]; then
    [ "$(fingerprint "$stage/actions" "$8")" = "$fingerprint" ] ||
        { say "the host changed since this run read it (another run?); nothing was applied, run again"; exit 75; }
    recover || exit 1
fi

# Each loop below reads only its own kind of step: a shell's `read` takes a line a byte at a time,
# the fingerprint's path lines are thousands with thousands of domains, and a reload's line carries
# its program twice (to run, and to undo).
for kind in resume check files validate act probe; do
    : > "$stage/steps.$kind" || fail "the staging folder /$VSA_STATE/stage is full"
done
awk -v to="$stage/steps." '$1 ~ /^(install|meta|remove)$/ { print > (to "files"); next }
    $1 ~ /^(resume|check|validate|act|probe)$/ { print > (to $1) }' "$stage/actions" ||
    fail "the staging folder /$VSA_STATE/stage is full"
note "run $run"
while read -r kind undo; do
    [ "$kind" = resume ] || continue
    note "undo-last $undo"
done < "$stage/steps.resume"
at upload
mkdir "$stage/files" || fail "the staging folder is full"
if grep -q '^install ' "$stage/steps.files"; then
    sed '1,/^archive$/d; /^end$/d' "$stage/input" | base64 -d | gzip -dc |
        tar -x -C "$stage/files" --same-owner --same-permissions --numeric-owner -m ||
        fail "unpacking the new files (a full disk?)"
fi
rm -f "$stage/input"

while read -r kind command message; do
    [ "$kind" = check ] || continue
    decode "$command" | sh || fail "$(decode "$message")"
done < "$stage/steps.check"

at backup
# Everything that will be replaced or removed gets its backup (a hard link: the file stays in place)
# before anything moves; a failed backup stops the change here.
while read -r kind path; do
    case $kind in
        install)
            if [ -e "$path" ] || [ -L "$path" ]; then
                note "backup $path"
                ln -fPT "$path" "$path.vsa-bak.$run" || fail "cannot back up /$path"
            else
                note "new $path"
            fi
            note "temp $path"
            # across filesystems this copies, to a name beside the target; the rename below is atomic
            mv -fT "$stage/files/$path" "$path.vsa-new.$run" || fail "cannot copy /$path (a full disk?)" ;;
    esac
done < "$stage/steps.files"

at rename
while IFS= read -r line; do
    kind=${line%% *} path=${line#* }
    case $kind in
        install) mv -fT "$path.vsa-new.$run" "$path" || fail "cannot install /$path" ;;
        meta)
            ids=${path%% *} rest=${path#* }
            mode=${rest%% *} target=${rest#* }
            note "meta $(stat -c '%u:%g %a' "$target") $target"
            chown -h "$ids" "$target" || fail "cannot chown /$target"
            if [ ! -L "$target" ]; then chmod "$mode" "$target" || fail "cannot chmod /$target"; fi ;;
        remove)
            if [ -e "$path" ] || [ -L "$path" ]; then
                note "removed $path"
                mv -fT "$path" "$path.vsa-bak.$run" || fail "cannot remove /$path"
            fi ;;
    esac
done < "$stage/steps.files"

at validate
while read -r kind command message; do
    [ "$kind" = validate ] || continue
    decode "$command" | sh || fail "$(decode "$message")"
done < "$stage/steps.validate"

at reload
while read -r kind when command undo message; do
    [ "$kind" = act ] || continue
    note "undo-$when $undo"
    decode "$command" | sh || fail "$(decode "$message")"
done < "$stage/steps.act"

# Sampled twice: a container that exits at once and restarts (restart: unless-stopped) shows
# "running" for moments; steady means running both times and not restarted in between.
sample() { docker inspect -f '{{.State.Status}} {{.RestartCount}} {{.State.StartedAt}}' "$1" 2> /dev/null; }
while read -r kind seconds containers; do
    [ "$kind" = probe ] || continue
    sleep "$seconds"
    for name in $containers; do
        sample "$name" > "$stage/seen.$name" || true
    done
    sleep 2
    for name in $containers; do
        seen=$(cat "$stage/seen.$name")
        case $seen in running\ *) ;; *) fail "$name is not running after the change" ;; esac
        [ "$(sample "$name")" = "$seen" ] || fail "$name is not running after the change (it restarted)"
    done
done < "$stage/steps.probe"

note commit
committed=1
at commit
drop_backups "$VSA_JOURNAL" "$run"
rm -f "$VSA_JOURNAL"
