#!/bin/sh
# vsa-ops state read: everything a manifest manages on this host, in one command.
# Args: ROOT SALT, or "plan". Stdin: "KIND PATH" lines: d (metadata), f (and digest), s (secret: digest
# after SALT), o (folder: its files listed), c (certificates' folder), l (a file's last line: the audit
# log's head, the last deploy's result), t (text only). Plan mode (the plan identity's forced command, by
# sudo): paths in PLAN_PATHS' folders, no symlink; digest or text only of its world-readable files (else
# "sha -"); no last line.
# Stdout: NUL-terminated "TAG VALUE" records, gzip, base64, one line: no file name fakes a record.
# shellcheck shell=sh

root=${1:-/}
salt=${2:-}
plan=''
# ROOT after plan: tests (sudo allows "plan" alone)
[ "$root" = plan ] && { plan=yes root=${2:-/} salt=''; }
PLAN_PATHS=usr/local/lib/vsa-ops/plan-paths
cd "$root" || { say "no folder $root"; exit 1; }
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM PIPE
# plan: no 8 MiB request (none is near): the key's holder fills no disk
if [ -n "$plan" ]; then head -c 8388609; else cat; fi > "$work/request"
[ -z "$plan" ] || [ "$(wc -c < "$work/request")" -le 8388608 ] || { say "plan mode: request over 8 MiB"; exit 1; }

# Plan mode: the request narrowed; $work/blind: files with no digest.
narrow_request() {
    [ -f "$PLAN_PATHS" ] || { say "no /$PLAN_PATHS: deploy first"; exit 1; }
    awk -v allow="$PLAN_PATHS" 'BEGIN { while ((getline l < allow) > 0) m[l] = 1 }
        substr($0, 2, 1) != " " || substr($0, 1, 1) !~ /[dfsoct]/ { next }
        { k = substr($0, 1, 1); p = substr($0, 3); sub(/^\/*/, "/", p) }
        p ~ /(^|\/)\.\.?(\/|$)/ || p ~ /\/\// || p == "/" { next }
        { ok = ("f " p) in m || ("d " p) in m; u = p; sub(/\/[^\/]*$/, "", u)
          if (k ~ /[ft]/ && !(("f " p) in m || ("o " u) in m)) { if (k == "t") next; k = "s" }
          for (u = p; !ok && u != ""; ) { sub(/\/[^\/]*$/, "", u); ok = ("d " u) in m }
          if (ok) print k " " substr(p, 2) }' "$work/request" > "$work/managed"
    # no symlink on the way, nor at the end
    base=$(pwd -P)
    # one line a path (a planted link target's newline makes it "/")
    cut -c3- "$work/managed" | xargs -r -d '\n' realpath -m -z -- | sed -z 's/^.*\n.*$/\//' | tr '\0' '\n' > "$work/real"
    [ "$(wc -l < "$work/real")" = "$(wc -l < "$work/managed")" ] || exit 1
    awk -v b="${base%/}" 'FILENAME == ARGV[1] { r[FNR] = $0; next } b "/" substr($0, 3) == r[FNR]' \
        "$work/real" "$work/managed" > "$work/plain"
    sed -n 's,^[ft] ,,p' "$work/plain" | xargs -r -d '\n' stat --printf '%F|%a|%n\n' -- 2>/dev/null |
        awk -F'|' '$1 ~ /^regular/ && $2 ~ /[4567]$/ { sub(/^[^|]*[|][^|]*[|]/, ""); print }' > "$work/readable"
    : > "$work/blind"
    awk -v bl="$work/blind" 'FILENAME == ARGV[1] { r[$0] = 1; next } { k = substr($0, 1, 1); p = substr($0, 3) }
        k == "s" || (k == "f" && !(p in r)) { print "d " p; print p > bl; next }
        k != "t" || p in r' "$work/readable" "$work/plain" > "$work/request"
}
[ -n "$plan" ] && narrow_request

if grep -q '^t ' "$work/request"; then
    {
        sed -n 's,^t /*,,p' "$work/request" | while IFS= read -r file; do
            [ -f "$file" ] && printf 'text %s %s\0' "$(base64 -w0 "$file")" "$file"
        done
        printf 'end \0'
    } | gzip -1c | base64 -w0
    echo
    exit 0
fi

records() {
    fingerprint_reads "$work/request" "$salt" > "$work/fingerprinted"
    cat "$work/fingerprinted"
    if [ -n "$plan" ]; then
        printf 'readonly plan\0'
        while IFS= read -r file; do
            [ -f "$file" ] && printf 'sha -  %s\0' "$file"
        done < "$work/blind"
    fi
    printf 'fingerprint %s\0' "$(sha256sum < "$work/fingerprinted" | cut -d' ' -f1)"
    sed -n 's,^o /*,,p' "$work/request" | while IFS= read -r folder; do
        [ -d "$folder" ] && find "$folder" -mindepth 1 -maxdepth 1 ! -type d -printf 'owned %p\0'
    done
    [ -d dev/disk/by-label ] && find dev/disk/by-label -mindepth 1 -maxdepth 1 -printf 'label %f\0'
    findmnt -rn -o TARGET,SOURCE 2>/dev/null | tr '\n' '\0' | sed -z 's/^/mount /'
    # LABEL and UUID names of /'s device (btrfs "[/@]" stripped, links followed): all fstab's / may name
    rootdev=$(findmnt -rn -o SOURCE / 2>/dev/null | sed 's/\[.*//')
    rootdev=$(readlink -f "$rootdev" 2>/dev/null)
    if [ -b "$rootdev" ]; then
        for kind in label uuid; do
            for link in dev/disk/by-"$kind"/*; do
                [ -e "$link" ] && [ "$(readlink -f "$link")" = "$rootdev" ] && printf 'root %s=%s\0' "$kind" "${link##*/}"
            done
        done
    fi
    [ -f etc/passwd ] && cut -d: -f1,3 etc/passwd | tr '\n' '\0' | sed -z 's/^/user /'
    # The three docker questions at once: each command's time is mostly its own start-up.
    docker image ls --format '{{.Repository}}:{{.Tag}}' > "$work/images" 2>/dev/null &
    images=$!
    docker ps -a --filter label=com.docker.compose.project --format \
        '{{.Label "com.docker.compose.project"}}|{{.Label "com.docker.compose.service"}}|{{.State}}' \
        > "$work/containers" 2>/dev/null &
    containers=$!
    if docker network ls --format '{{.Name}}' > "$work/networks" 2>/dev/null; then
        wait "$images" "$containers"
        printf 'docker yes\0'
        tr '\n' '\0' < "$work/networks" | sed -z 's/^/network /'
        tr '\n' '\0' < "$work/images" | sed -z 's/^/image /'
        tr '\n' '\0' < "$work/containers" | sed -z 's/^/container /'
    else
        wait "$images" "$containers"
    fi
    # compose's plugin file: `docker compose version` starts a 60 MB binary
    for plugin in /usr/local/lib/docker/cli-plugins /usr/local/libexec/docker/cli-plugins \
            /usr/lib/docker/cli-plugins /usr/libexec/docker/cli-plugins "$HOME/.docker/cli-plugins"; do
        if [ -x "$plugin/docker-compose" ]; then printf 'compose %s\0' "$plugin/docker-compose"; break; fi
    done
    sed -n 's,^c /*,,p' "$work/request" | while IFS= read -r folder; do
        [ -d "$folder" ] && find "$folder" -mindepth 1 -maxdepth 1 -type d -printf 'certificate %f\0'
    done
    [ -f "$VSA_LOCK/owner" ] && printf 'lock %s\0' "$(cat "$VSA_LOCK/owner")"
    [ -f "$VSA_JOURNAL" ] && printf 'journal %s\0' "$(base64 -w0 "$VSA_JOURNAL")"
    for tool in sqlite3 logrotate findmnt flock; do
        command -v "$tool" > /dev/null && printf 'command %s\0' "$tool"
    done
    # A plain file only, never through a link (nofollow: not even one swapped in after the test), and
    # only its last MiB: the deploy's metrics sit in a folder the certificates' container writes too, where a
    # sparse file of any size costs nothing to plant.
    sed -n 's,^l /*,,p' "$work/request" | while IFS= read -r file; do
        line=''
        if [ -f "$file" ] && [ ! -L "$file" ]; then
            size=$(stat -c %s -- "$file" 2> /dev/null)
            line=$(dd if="$file" iflag=nofollow,nonblock,skip_bytes,fullblock skip=$((size > 1048576 ? size - 1048576 : 0)) \
                bs=1048576 count=1 status=none 2> /dev/null | tail -n 1 | base64 -w0)
        fi
        printf 'last %s %s\0' "$line" "$file"
    done
    printf 'end \0'
}

records | gzip -1c | base64 -w0
echo
