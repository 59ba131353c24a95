# Shared by every vsa-ops host program: the Python side puts this file in front of each program.
# Every path is relative to the working directory, the root ("/" on a host, a scratch folder in the
# tests): the callers `cd` there first and give managed paths without their leading slash.
# shellcheck shell=sh

# shellcheck disable=SC2034  # used by the programs bundled after this file
VSA_STATE=var/lib/vsa-ops          # root-only: the run lock, the journal, staging, the log
VSA_LOCK=$VSA_STATE/lock           # a directory; its file "owner" names the holding run
VSA_JOURNAL=$VSA_STATE/journal     # what an unfinished transaction changed, for undo or finish
VSA_LOG=$VSA_STATE/log             # what restores did, for whoever looks at the host later

say() { printf 'vsa-ops: %s\n' "$*" >&2; }

# The records the fingerprint covers, NUL-terminated: the managed paths' metadata, their contents'
# digests (files holding secrets after the salt) and /etc/fstab. $1: the request ("d|f|s path" lines).
fingerprint_reads() {
    sed -n 's,^[dfs] /*,,p' "$1" | xargs -r -d '\n' stat --printf 'stat %F|%u|%g|%a|%n\0' -- 2>/dev/null
    sed -n 's,^f /*,,p' "$1" | xargs -r -d '\n' sha256sum -z -- 2>/dev/null | sed -z 's/^/sha /'
    sed -n 's,^s /*,,p' "$1" | while IFS= read -r secret; do
        [ -f "$secret" ] || continue
        digest=$({ printf %s "$2"; cat "$secret"; } | sha256sum | cut -d' ' -f1)
        printf 'sha %s  %s\0' "$digest" "$secret"
    done
    printf 'fstab %s\0' "$(base64 -w0 etc/fstab 2>/dev/null)"
}

# The fingerprint itself: the digest of those records.
fingerprint() {
    fingerprint_reads "$1" "$2" | sha256sum | cut -d' ' -f1
}
