#!/bin/sh
# vsa-ops state read: everything a manifest manages on this host, in one command.
# Arguments: ROOT SALT, or "plan" (plan mode). Stdin: the request, one "KIND PATH" line each: d (a
# directory: metadata), f (a file: metadata and digest), s (a file holding a secret: digest after
# SALT), o (a folder whose files are listed), c (the certificates' folder), a (the audit log: its last
# line), t (a file's text; a request with a t line gets only texts).
# Plan mode (the plan identity's forced command, by sudo): paths only inside PLAN_PATHS' folders (d)
# with no symlink; a digest or text only of its files (f, or in an o folder) that are world-readable
# and not secret (else "sha -"); no audit line.
# Stdout: NUL-terminated "TAG VALUE" records, gzipped, in base64 on one line: no file name, however
# hostile (newlines, invalid UTF-8), can make one record look like another.
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
# Plan mode: a request no manifest comes near (the key's holder must not fill the disk as root).
MAX_PLAN_REQUEST=8388608
if [ -n "$plan" ]; then
    head -c $((MAX_PLAN_REQUEST + 1)) > "$work/request"
    [ "$(wc -c < "$work/request")" -le "$MAX_PLAN_REQUEST" ] || { say "plan mode: a request over 8 MiB refused"; exit 1; }
else
    cat > "$work/request"
fi

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
    # One line per path: a resolved path holding a newline (a planted link's target) becomes "/",
    # which no request path equals; the counts must agree, or a line would be judged by its neighbour's.
    cut -c3- "$work/managed" | xargs -r -d '\n' realpath -m -z -- | sed -z 's/^.*\n.*$/\//' | tr '\0' '\n' \
        > "$work/real"
    [ "$(wc -l < "$work/real")" = "$(wc -l < "$work/managed")" ] || { say "plan mode: a path did not resolve"; exit 1; }
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
    # The LABEL and UUID names of the device mounted at / (a btrfs subvolume's "[/@]" stripped, the
    # device's symlinks followed): an fstab line for / may only name one of these.
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
    if docker network ls --format '{{.Name}}' > "$work/networks" 2>/dev/null; then
        printf 'docker yes\0'
        tr '\n' '\0' < "$work/networks" | sed -z 's/^/network /'
        docker image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | tr '\n' '\0' | sed -z 's/^/image /'
        docker ps -a --filter label=com.docker.compose.project --format \
            '{{.Label "com.docker.compose.project"}}|{{.Label "com.docker.compose.service"}}|{{.State}}' \
            2>/dev/null | tr '\n' '\0' | sed -z 's/^/container /'
    fi
    # Where the docker CLI finds its compose v2 plugin: finding the file costs nothing, while
    # `docker compose version` starts a 60 MB binary.
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
    sed -n 's,^a /*,,p' "$work/request" | while IFS= read -r log; do
        if [ -s "$log" ]; then printf 'audit %s\0' "$(tail -n 1 "$log" | base64 -w0)"; else printf 'audit \0'; fi
    done
    printf 'end \0'
}

records | gzip -1c | base64 -w0
echo
