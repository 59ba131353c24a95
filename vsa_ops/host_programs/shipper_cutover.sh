#!/bin/sh
# vsa-ops log shipper cut-over, the host's half (the conversion runs on the controller:
# vsa_ops/shipper_positions.py). Nothing here parses YAML: it stops, reads and writes files.
#   ROOT read PROJECT SERVICE STATE-DIR FORMAT: stops the old shipper (compose service SERVICE of
#     project PROJECT; it saves its positions as it stops) and prints NUL-terminated "TAG VALUE"
#     records, gzipped, in base64 on one line: "folder PATH" (the host folder mounted at STATE-DIR),
#     "positions RELPATH BASE64" for each positions file in it, "container LINE" for each container
#     (docker inspect --format FORMAT), then "end ".
#   ROOT write FOLDER: stdin is the base64 of a gzipped tar of positions files, paths relative to
#     FOLDER; each replaces its file by a rename (0600, in a 0750 folder). Run with no shipper running.
#   ROOT start PROJECT SERVICE: starts the old shipper again (a cut-over that could not finish).
# The folder is the shippers' volume, which they write as root: a symbolic link in it is refused,
# never followed.
# shellcheck shell=sh

cd "${1:-/}" || exit 1
mode=$2
newline='
'

fail() { say "$*"; exit 1; }

shipper_ids() {
    docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$1" \
        --filter "label=com.docker.compose.service=$2"
}

records() {
    printf 'folder %s\0' "$1"
    # One name a line: a name with a newline (the shippers write this folder as root) would read as
    # other names, such as a link find skipped; none is taken, and no file is read through a link.
    find "$1" -mindepth 1 -maxdepth 2 ! -path "*$newline*" -type f \( -name positions.yaml -o -name positions.yml \) \
        -printf '%P\n' |
        while IFS= read -r file; do
            if [ -L "$1/$file" ] || [ -L "$1/${file%/*}" ]; then continue; fi
            printf 'positions %s %s\0' "$file" "$(base64 -w0 "$1/$file")"
        done
    docker ps -aq --no-trunc | xargs -r docker inspect --format "$2" | tr '\n' '\0' | sed -z 's/^/container /'
    printf 'end \0'
}

case $mode in
    read)
        project=$3 service=$4 state=$5 format=$6
        id=$(shipper_ids "$project" "$service" | head -n 1)
        [ -n "$id" ] || fail "no container of service $service in stack $project"
        folder=$(docker inspect --format '{{range .Mounts}}{{.Destination}}{{"\t"}}{{.Source}}{{"\n"}}{{end}}' "$id" |
            awk -F '\t' -v state="$state" '$1 == state { print $2 }')
        if [ -z "$folder" ] || [ ! -d "$folder" ] || [ -L "$folder" ]; then
            fail "$service has no folder mounted at $state"
        fi
        docker stop -t 30 "$id" > /dev/null || fail "cannot stop $service"
        records "$folder" "$format" | gzip -1c | base64 -w0
        echo ;;
    write)
        folder=$3
        if [ ! -d "$folder" ] || [ -L "$folder" ]; then fail "no folder $folder"; fi
        umask 077
        stage=$(mktemp -d "$folder/.vsa-cutover.XXXXXX") || fail "cannot stage in $folder (a full disk?)"
        trap 'rm -rf "$stage"' EXIT
        trap 'exit 1' HUP INT TERM PIPE
        base64 -d | gzip -dc | tar -x -C "$stage" --no-same-owner --no-same-permissions -m ||
            fail "unpacking the positions (a full disk?)"
        (cd "$stage" && find . -type f) | while IFS= read -r file; do
            file=${file#./} sub=${file%/*}
            if [ "$sub" != "$file" ]; then
                [ ! -L "$folder/$sub" ] || fail "$folder/$sub is a symbolic link"
                if ! { mkdir -p "$folder/$sub" && chmod 0750 "$folder/$sub"; }; then fail "cannot create $folder/$sub"; fi
            fi
            [ ! -L "$folder/$file" ] || fail "$folder/$file is a symbolic link"
            if ! { chmod 0600 "$stage/$file" && mv -fT "$stage/$file" "$folder/$file"; }; then
                fail "cannot write $folder/$file"
            fi
        done || exit 1 ;;
    start)
        id=$(shipper_ids "$3" "$4" | head -n 1)
        [ -z "$id" ] || docker start "$id" > /dev/null || fail "cannot start $4 again" ;;
    *) fail "unknown mode $mode" ;;
esac
