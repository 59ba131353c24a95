#!/bin/sh
# vsa-backup: the backup stack's one program (issue 13), run in the backup container (restic, docker
# CLI, sqlite3, ssh, jq). Commands:
#   loop               a scheduled backup every $VSA_BACKUP_INTERVAL seconds (the container's command)
#   scheduled          the loop's work once: a backup, its outcome spooled for the audit trail
#   run                one backup now; prints "key value" lines, the last "result ok" or "error <why>"
#   check              restic check of the repository
#   snapshots          this host's snapshots, restic's JSON
#   holds              what the host holds that a restore would overwrite ("holds <what> <count>")
#   restore ID|latest  stop the readers, write the snapshot back, start them again
# Secrets are files under /etc/vsa-backup/secrets; none is ever printed or passed on a command line.
set -u
ETC=/etc/vsa-backup
STAGING=/staging
DUMP=$STAGING/dump
STATE=$STAGING/state
# Scheduled runs' outcomes, one file each, until the controller chains them into the audit trail (it
# signs records; this container cannot) and deletes them under the audit lock. Root only.
SPOOL=$STAGING/spool
TEXTFILE=/textfile/vsa_backup.prom
# shellcheck source=/dev/null # rendered by the deploy (RESTIC_HOST=<inventory name>)
[ -r "$ETC/host.env" ] && . "$ETC/host.env" && export RESTIC_HOST

fail() { echo "error $*"; exit 1; }

# One line of a command's stderr, the last that says something (restic ends with "Fatal: ..."); a
# full disk leaves the file empty: then the free space says why.
why() {
	line=$(grep -v '^\s*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-300)
	[ -n "$line" ] || line="no message; $(df -P "$STAGING" | awk 'NR == 2 {print $4}') KiB free in $STAGING"
	printf '%s' "$line"
}

setup_credentials() {
	case "${VSA_BACKUP_KIND:-}" in
	sftp)
		mkdir -p /root/.ssh "$STATE" && chmod 700 /root/.ssh
		base64 -d "$ETC/secrets/backup_ssh_key" >/root/.ssh/id_backup 2>/dev/null \
			|| fail "the SFTP key secret is not base64 of an OpenSSH private key"
		chmod 600 /root/.ssh/id_backup
		# The server's key is learned on first use and kept with the staging folder.
		printf 'Host *\n  IdentityFile /root/.ssh/id_backup\n  IdentitiesOnly yes\n  BatchMode yes\n  ConnectTimeout 10\n  StrictHostKeyChecking accept-new\n  UserKnownHostsFile %s/known_hosts\n  ServerAliveInterval 15\n' \
			"$STATE" >/root/.ssh/config
		;;
	s3)
		AWS_ACCESS_KEY_ID=$(cat "$ETC/secrets/backup_s3_access_key_id") || fail "no S3 access key id secret"
		AWS_SECRET_ACCESS_KEY=$(cat "$ETC/secrets/backup_s3_secret_access_key") || fail "no S3 secret key secret"
		export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
		;;
	esac
}

# Opens the repository: 0 when usable; prints the error line and returns 1 otherwise. A repository
# that does not exist yet is created only by "run" ($1 = init).
open_repository() {
	err=$(mktemp)
	# restic retries an unreachable backend for minutes: a run waits at most this long for it
	timeout "${VSA_BACKUP_OPEN_TIMEOUT:-60}" restic cat config >/dev/null 2>"$err"
	rc=$?
	[ "$rc" != 124 ] || echo "Fatal: no answer within ${VSA_BACKUP_OPEN_TIMEOUT:-60} s" >>"$err"
	if [ "$rc" = 10 ] && [ "${1:-}" = init ]; then
		restic init >/dev/null 2>"$err" && { rm -f "$err"; return 0; }
		echo "error cannot create the repository $RESTIC_REPOSITORY: $(why "$err")"; rm -f "$err"; return 1
	fi
	case "$rc" in
	0) rm -f "$err"; return 0 ;;
	10) echo "error no repository at $RESTIC_REPOSITORY (a backup creates it)" ;;
	12) echo "error wrong password for the repository $RESTIC_REPOSITORY" ;;
	*) echo "error repository $RESTIC_REPOSITORY unreachable: $(why "$err")" ;;
	esac
	rm -f "$err"
	return 1
}

write_metrics() {
	[ -d /textfile ] || return 0
	last=$(cat "$STATE/last-success" 2>/dev/null || echo 0)
	tmp=$TEXTFILE.$$
	{
		echo "# HELP vsa_backup_last_success_timestamp_seconds End of the last backup that succeeded."
		echo "# TYPE vsa_backup_last_success_timestamp_seconds gauge"
		echo "vsa_backup_last_success_timestamp_seconds $last"
		echo "# HELP vsa_backup_last_run_success 1 when the last backup succeeded, else 0."
		echo "# TYPE vsa_backup_last_run_success gauge"
		echo "vsa_backup_last_run_success $1"
		echo "# HELP vsa_backup_last_size_bytes Bytes the last good backup covered."
		echo "# TYPE vsa_backup_last_size_bytes gauge"
		echo "vsa_backup_last_size_bytes $(cat "$STATE/last-size" 2>/dev/null || echo 0)"
	} >"$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$TEXTFILE"
}

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# The consistent copies: PostgreSQL by pg_dump -Fc (it keeps running), the audit JSONL under the
# audit lock, SQLite databases through their online backup.
stage() {
	{ rm -rf "$DUMP" && mkdir -p "$DUMP"; } || fail "cannot write $DUMP"
	if running "$VSA_POSTGRES_CONTAINER"; then
		if ! err=$(docker exec "$VSA_POSTGRES_CONTAINER" pg_dump -U "$VSA_POSTGRES_USER" -Fc "$VSA_POSTGRES_DATABASE" \
			2>&1 >"$DUMP/postgres.dump"); then
			rm -f "$DUMP/postgres.dump"
			fail "pg_dump in $VSA_POSTGRES_CONTAINER failed: $(printf '%s' "${err:-no space left in $STAGING?}" | tail -n 1 | cut -c1-300)"
		fi
	fi
	# JSONL and SQLite under one shared audit lock: appends (exclusive) wait, the two copies agree
	lock="$(dirname "$VSA_AUDIT_JSONL")/audit.lock"
	(
		if [ -e "$lock" ]; then exec 9<"$lock" && flock -s -w 60 9 || exit 1; fi
		if [ -e "$VSA_AUDIT_JSONL" ]; then
			cp "$VSA_AUDIT_JSONL" "$DUMP/audit.jsonl" || exit 1
		fi
		if [ -e "$VSA_AUDIT_DATABASE" ]; then
			sqlite3 "$VSA_AUDIT_DATABASE" ".timeout 15000" ".backup '$DUMP/audit.db'" || exit 1
		fi
	) 2>"$DUMP/.err" || fail "copying the audit trail failed: $(why "$DUMP/.err")"
	if [ -e /data/grafana/grafana.db ]; then
		sqlite3 /data/grafana/grafana.db ".timeout 15000" ".backup '$DUMP/grafana.db'" 2>"$DUMP/.err" \
			|| fail "SQLite backup of grafana.db failed: $(why "$DUMP/.err")"
	fi
	rm -f "$DUMP/.err"
}

run() {
	started=$(date +%s)
	mkdir -p "$STATE"
	exec 8>"$STATE/run.lock"
	flock -n 8 || fail "another backup is running on this host"
	setup_credentials
	if ! out=$(open_repository init); then
		write_metrics 0
		echo "$out"
		exit 1
	fi
	restic unlock >/dev/null 2>&1 # locks left by a run killed midway
	staged=$(stage) || { write_metrics 0; rm -rf "$DUMP"; printf '%s\n' "$staged" | tail -n 1; exit 1; }
	# shellcheck disable=SC2086 # VSA_BACKUP_PATHS is a list of paths without spaces
	restic backup --json --tag vsa --exclude '/data/grafana/grafana.db*' "$DUMP" $VSA_BACKUP_PATHS \
		>"$STATE/backup.json" 2>"$STATE/backup.err"
	rc=$?
	# 3: some source files could not be read; the snapshot exists but is incomplete: a failure
	if [ "$rc" != 0 ]; then
		write_metrics 0
		fail "restic backup failed (exit $rc): $(why "$STATE/backup.err")"
	fi
	summary=$(jq -c 'select(.message_type == "summary")' "$STATE/backup.json")
	snapshot=$(printf '%s' "$summary" | jq -r '.snapshot_id')
	size=$(printf '%s' "$summary" | jq -r '.total_bytes_processed')
	added=$(printf '%s' "$summary" | jq -r '.data_added')
	echo "snapshot $snapshot"
	echo "size $size"
	echo "added $added"
	# shellcheck disable=SC2086
	restic forget --prune --host "$RESTIC_HOST" $VSA_BACKUP_FORGET >/dev/null 2>"$STATE/forget.err" \
		|| echo "warning restic forget --prune failed: $(why "$STATE/forget.err")"
	last_check=$(cat "$STATE/last-check" 2>/dev/null || echo 0)
	if [ $((started - last_check)) -ge "$VSA_BACKUP_CHECK_INTERVAL" ]; then
		if restic check >/dev/null 2>"$STATE/check.err"; then
			date +%s >"$STATE/last-check"
			echo "checked ok"
		else
			write_metrics 0
			fail "restic check found problems: $(why "$STATE/check.err")"
		fi
	fi
	date +%s >"$STATE/last-success"
	echo "$size" >"$STATE/last-size"
	write_metrics 1
	rm -rf "$DUMP"
	echo "duration $(($(date +%s) - started))"
	echo "result ok"
}

# One scheduled backup; its outcome ("started", "duration" and the run's own snapshot, size, added,
# result or error lines) goes to the spool, written whole or not at all (rename).
scheduled() {
	started=$(date +%s)
	out=$(sh "$0" run)
	(
		umask 077
		mkdir -p "$SPOOL" || exit 1
		entry=$SPOOL/$started-$$.run
		{
			echo "started $started"
			echo "duration $(($(date +%s) - started))"
			printf '%s\n' "$out" | grep -E '^(snapshot|size|added|result|error) ' | cut -c1-400
		} >"$entry.tmp" && mv -f "$entry.tmp" "$entry"
	) || echo "vsa-backup: could not write the outcome to $SPOOL" >&2
	echo "vsa-backup: $(date -u +%FT%TZ) $(printf '%s' "$out" | tr '\n' ' ')"
}

loop() {
	mkdir -p "$STATE"
	# A new host's first scheduled backup comes 10 minutes after the stack starts (vsa-ops backup: now)
	[ -e "$STATE/last-attempt" ] || echo $(($(date +%s) - VSA_BACKUP_INTERVAL + 600)) >"$STATE/last-attempt"
	while :; do
		last=$(cat "$STATE/last-attempt" 2>/dev/null || echo 0)
		wait=$((last + VSA_BACKUP_INTERVAL - $(date +%s)))
		[ "$wait" -le 0 ] || sleep "$wait"
		date +%s >"$STATE/last-attempt"
		scheduled
	done
}

snapshots() {
	setup_credentials
	out=$(open_repository) || { echo "$out"; exit 1; }
	restic snapshots --json --host "$RESTIC_HOST" 2>"$STAGING/.snapshots.err" \
		|| fail "restic snapshots failed: $(why "$STAGING/.snapshots.err")"
	echo
}

holds() {
	if running "$VSA_POSTGRES_CONTAINER"; then
		rows=$(docker exec "$VSA_POSTGRES_CONTAINER" psql -U "$VSA_POSTGRES_USER" -d "$VSA_POSTGRES_DATABASE" -Atc \
			"SELECT coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables" 2>/dev/null) || rows=0
		echo "holds postgres_rows ${rows:-0}"
	fi
	echo "holds certificates $(find /data/letsencrypt/live -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)"
	echo "holds grafana_files $(find /data/grafana -type f 2>/dev/null | wc -l)"
	echo "holds audit_records $(wc -l 2>/dev/null <"$VSA_AUDIT_JSONL" || echo 0)"
}

# Writes the snapshot back. What reads the restored data is stopped first and started again after.
restore() {
	id=${1:-latest}
	case "$id" in latest | [0-9a-f]*) ;; *) fail "not a snapshot id: $id" ;; esac
	setup_credentials
	out=$(open_repository) || { echo "$out"; exit 1; }
	mkdir -p "$STATE"
	exec 8>"$STATE/run.lock"
	flock -w 600 8 || fail "a backup is running on this host"
	# restic ignores --host for a snapshot named by id: another host's data must not land here
	id=$(restic snapshots --json --host "$RESTIC_HOST" "$id" 2>"$STATE/restore.err" |
		jq -r --arg host "$RESTIC_HOST" '[.[] | select(.hostname == $host)] | .[-1].id // empty')
	[ -n "$id" ] || fail "no snapshot ${1:-latest} of host $RESTIC_HOST in the repository${1:+ (see vsa-ops backups)}"
	target=$STAGING/restore
	rm -rf "$target"
	restic restore "$id" --host "$RESTIC_HOST" --target "$target" >/dev/null 2>"$STATE/restore.err" \
		|| fail "restic restore $id failed: $(grep -m 1 -i 'error' "$STATE/restore.err" | cut -c1-300); $(why "$STATE/restore.err")"
	got=$target$DUMP
	stopped=""
	for name in $VSA_RESTORE_STOP; do
		if running "$name"; then docker stop -t 30 "$name" >/dev/null && stopped="$stopped $name"; fi
	done
	if [ -e "$got/postgres.dump" ]; then
		docker exec -i "$VSA_POSTGRES_CONTAINER" pg_restore -U "$VSA_POSTGRES_USER" -d "$VSA_POSTGRES_DATABASE" \
			--clean --if-exists --no-owner --single-transaction <"$got/postgres.dump" 2>"$STATE/pg.err" \
			|| fail "pg_restore failed: $(why "$STATE/pg.err")"
		echo "restored postgres"
	fi
	if [ -d "$target/data/letsencrypt" ]; then
		for part in accounts archive live renewal; do rm -rf "/data/letsencrypt/$part"; done
		cp -a "$target/data/letsencrypt/." /data/letsencrypt/ || fail "writing /data/letsencrypt failed"
		echo "restored letsencrypt $(find /data/letsencrypt/live -mindepth 1 -maxdepth 1 -type d | wc -l)"
	fi
	if [ -d "$target/data/grafana" ]; then
		find /data/grafana -mindepth 1 -delete
		cp -a "$target/data/grafana/." /data/grafana/ || fail "writing /data/grafana failed"
		[ ! -e "$got/grafana.db" ] || cp -a "$got/grafana.db" /data/grafana/grafana.db
		echo "restored grafana"
	fi
	if [ -e "$got/audit.jsonl" ]; then
		lock="$(dirname "$VSA_AUDIT_JSONL")/audit.lock"
		mkdir -p "$(dirname "$VSA_AUDIT_JSONL")" "$(dirname "$VSA_AUDIT_DATABASE")"
		(
			exec 9>>"$lock" && flock -w 60 9 || exit 1
			cp "$got/audit.jsonl" "$VSA_AUDIT_JSONL.restore" && mv -f "$VSA_AUDIT_JSONL.restore" "$VSA_AUDIT_JSONL" || exit 1
			rm -f "$VSA_AUDIT_DATABASE" "$VSA_AUDIT_DATABASE-wal" "$VSA_AUDIT_DATABASE-shm"
			[ ! -e "$got/audit.db" ] || cp "$got/audit.db" "$VSA_AUDIT_DATABASE"
		) || fail "writing the audit trail failed"
		echo "restored audit $(wc -l <"$VSA_AUDIT_JSONL")"
	fi
	for name in $stopped; do docker start "$name" >/dev/null || fail "could not start $name again"; done
	rm -rf "$target"
	echo "snapshot $id"
	echo "result ok"
}

case "${1:-}" in
loop) loop ;;
scheduled) scheduled ;;
run) run ;;
check)
	setup_credentials
	out=$(open_repository) || { echo "$out"; exit 1; }
	mkdir -p "$STATE"
	restic check >/dev/null 2>"$STATE/check.err" || fail "restic check found problems: $(why "$STATE/check.err")"
	echo "result ok"
	;;
snapshots) snapshots ;;
holds) holds ;;
restore) restore "${2:-latest}" ;;
*) echo "usage: vsa-backup loop|scheduled|run|check|snapshots|holds|restore [ID]" >&2; exit 2 ;;
esac
