#!/bin/sh
# vsa-ops state read: everything a manifest manages on this host, in one command.
# Arguments: ROOT SALT. Stdin: the request, one "KIND PATH" line each: d (a directory: metadata),
# f (a file: metadata and digest), s (a file holding a secret: digest after SALT), o (a folder whose
# files are listed), c (the certificates' folder), a (the audit log: its last line).
# Stdout: NUL-terminated "TAG VALUE" records, gzipped, in base64 on one line: no file name, however
# hostile (newlines, invalid UTF-8), can make one record look like another.
# shellcheck shell=sh

root=${1:-/}
salt=${2:-}
cd "$root" || { say "no folder $root"; exit 1; }
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT TERM PIPE
cat > "$work/request"

records() {
    fingerprint_reads "$work/request" "$salt" > "$work/fingerprinted"
    cat "$work/fingerprinted"
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
