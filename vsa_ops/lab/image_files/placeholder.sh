#!/bin/sh
# Lab stand-in for an image whose software is not packaged in Debian (see vsa_ops/lab/images.py).
# Serves HTTP on $PLACEHOLDER_PORT with busybox nc; /lab/placeholder-http answers each connection.
# With $PLACEHOLDER_CONFIG_FLAG set (e.g. config.file), the container fails unless
# -config.file=PATH (or --config.file PATH) names an existing file, so volume mounts are exercised.
set -eu

if [ -n "${PLACEHOLDER_CONFIG_FLAG:-}" ]; then
	flag=$PLACEHOLDER_CONFIG_FLAG
	config=""
	while [ $# -gt 0 ]; do
		case "$1" in
			-"$flag"=* | --"$flag"=*) config=${1#*=} ;;
			-"$flag" | --"$flag") shift; config=${1:-} ;;
		esac
		[ $# -gt 0 ] && shift
	done
	if [ -z "$config" ]; then
		echo "$PLACEHOLDER_NAME (lab placeholder): missing -$flag=FILE" >&2
		exit 1
	fi
	if [ ! -f "$config" ] || [ ! -r "$config" ]; then
		echo "$PLACEHOLDER_NAME (lab placeholder): config file $config does not exist or is not readable" >&2
		exit 1
	fi
	echo "$PLACEHOLDER_NAME (lab placeholder): using config file $config" >&2
fi

echo "$PLACEHOLDER_NAME (lab placeholder): listening on :$PLACEHOLDER_PORT" >&2
nc -ll -p "$PLACEHOLDER_PORT" -e /lab/placeholder-http &
pid=$!
trap 'kill "$pid" 2>/dev/null; exit 0' TERM INT
wait "$pid"
