#!/bin/sh
# Like the official docker:*-cli image's docker-entrypoint.sh.
set -e

# first arg is `-f` or `--some-option`: run docker with it
if [ "${1#-}" != "$1" ]; then
	set -- docker "$@"
fi

# a Docker subcommand (`ps`, `exec`, ...): run it through docker
if [ $# -gt 0 ] && docker help "$1" >/dev/null 2>&1; then
	set -- docker "$@"
fi

exec "$@"
