#!/bin/sh
# vsa-ops audit append. Arguments: ROOT JSONL DATABASE LOCK WANT LAST-SEQ [CONSUMED...]. Stdin: the records, whole
# JSONL lines that the controller chained and signed (the host only stores their bytes). Under an
# exclusive flock on LOCK: if the sha256 of the JSONL's last line is still WANT ("empty": no log
# yet), the records go in ONE write on an O_APPEND descriptor, fsynced; then SQLite imports every
# line it lacks (seq above its highest; LAST-SEQ is the last record's). Prints "appended" then
# "sqlite ok", "sqlite missing" or "sqlite failed WHY"; when the last line changed meanwhile, prints
# "conflict BASE64-OF-THE-NEW-LAST-LINE" and exits 75 (read it, chain again, retry). CONSUMED: files
# the records were made from (a backup spool's entries), deleted once appended; when one is gone
# already (another command chained it), prints "gone" and exits 75, appending nothing.
# shellcheck shell=sh

set -u
cd "${1:-/}" || exit 70
log=${2#/} db=${3#/} lock=${4#/} want=$5 last_seq=$6
shift 6
umask 027

for path in "$log" "$db" "$lock"; do
    # SQLite's .import names the log inside quotes: only plain names pass
    case $path in '' | *[!A-Za-z0-9._/-]* | *..*) echo "error: unusable path /$path"; exit 64 ;; esac
done
case $last_seq in '' | *[!0-9]*) echo "error: LAST-SEQ $last_seq is not a number"; exit 64 ;; esac

# The records exactly as sent (the x keeps their final newline from $(...)), before any lock: a
# writer never waits on a slow sender while holding it.
records=$(cat; printf x) || exit 70
records=${records%x}
newline='
'
case $records in
    *"$newline") ;;
    *) echo "error: the records stop short (no final newline); nothing appended"; exit 65 ;;
esac
count=$(printf %s "$records" | wc -l)

folder=$(dirname "$log")
[ -d "$folder" ] || (umask 022 && mkdir -p "$folder") || exit 70
exec 9>> "$lock" || exit 70
flock -w 60 9 || { echo "error: timed out waiting for /$lock"; exit 71; }
for consumed in "$@"; do
    [ -e "${consumed#/}" ] || { echo gone; exit 75; }
done
if [ -s "$log" ]; then have=$(tail -n 1 "$log" | sha256sum | cut -c1-64); else have=empty; fi
if [ "$have" != "$want" ]; then
    if [ -s "$log" ]; then echo "conflict $(tail -n 1 "$log" | base64 -w0)"; else echo conflict; fi
    exit 75
fi
new=0
[ -e "$log" ] || new=1
printf %s "$records" | dd of="$log" oflag=append conv=notrunc,fsync bs=1M iflag=fullblock status=none ||
    { echo "error: writing /$log failed"; exit 72; }
[ "$new" = 0 ] || sync "$folder" 2> /dev/null || true
echo appended
for consumed in "$@"; do rm -f -- "${consumed#/}"; done

if ! command -v sqlite3 > /dev/null 2>&1; then
    echo "sqlite missing"
    exit 0
fi
[ -d "$(dirname "$db")" ] || (umask 022 && mkdir -p "$(dirname "$db")")
# How many of the log's last lines to read, from the database's highest seq: the first import on a
# host that got sqlite3 late takes in every earlier record too.
highest=$(sqlite3 "$db" 'SELECT coalesce(max(seq), 0) FROM audit' 2> /dev/null) || highest=0
case $highest in '' | *[!0-9]*) highest=0 ;; esac
lines=$((last_seq - highest))
[ "$lines" -ge "$count" ] || lines=$count
# SQLite parses each line itself, from the very bytes of the log.
if error=$({
    cat << 'VSA_AUDIT_SQL_END'
.bail on
.timeout 15000
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, actor TEXT, action TEXT, target TEXT, result TEXT,
  vps_id TEXT, duration REAL, changes TEXT, error TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
  BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TEMP TABLE incoming(j TEXT);
.mode ascii
.separator "\037" "\n"
VSA_AUDIT_SQL_END
    printf ".import '|tail -n %s %s' incoming\n" "$lines" "$log"
    cat << 'VSA_AUDIT_SQL_END'
INSERT INTO audit (seq, ts, actor, action, target, result, vps_id, duration, changes, error, prev_hash, hash, json)
  SELECT json_extract(j, '$.seq'), json_extract(j, '$.ts'), json_extract(j, '$.actor'),
    json_extract(j, '$.action'), json_extract(j, '$.target'), json_extract(j, '$.result'),
    json_extract(j, '$.vps_id'), json_extract(j, '$.duration'), json_extract(j, '$.changes'),
    json_extract(j, '$.error'), json_extract(j, '$.prev_hash'), json_extract(j, '$.hash'), j FROM incoming
  WHERE json_valid(j) AND json_extract(j, '$.seq') > (SELECT coalesce(max(seq), 0) FROM audit)
  ORDER BY json_extract(j, '$.seq');
VSA_AUDIT_SQL_END
} | sqlite3 "$db" 2>&1 > /dev/null); then
    echo "sqlite ok"
else
    echo "sqlite failed $(printf '%s' "$error" | tr '\n' ' ' | cut -c1-300)"
fi
