#!/bin/sh
# One HTTP/1.0 exchange on stdin/stdout (busybox nc -e runs this once per connection).
# 200 for the paths in $PLACEHOLDER_PATHS ("*": any path), 404 otherwise.
cr=$(printf '\r')
read -r -t 10 method target _ || exit 0
while IFS= read -r -t 10 line; do
	line=${line%"$cr"}
	[ -z "$line" ] && break
done
path=${target%%\?*}

status="404 Not Found"
if [ "$PLACEHOLDER_PATHS" = "*" ]; then
	status="200 OK"
else
	for p in $PLACEHOLDER_PATHS; do
		[ "$p" = "$path" ] && status="200 OK"
	done
fi

if [ "$path" = /metrics ] && [ "$status" = "200 OK" ]; then
	ctype="text/plain; version=0.0.4; charset=utf-8"
	body="# HELP lab_placeholder_up A lab placeholder for $PLACEHOLDER_NAME.
# TYPE lab_placeholder_up gauge
lab_placeholder_up{name=\"$PLACEHOLDER_NAME\"} 1
"
else
	ctype="text/plain; charset=utf-8"
	body="$PLACEHOLDER_NAME (lab placeholder) on $(hostname): $method $path ${status%% *}
"
fi

length=$(printf '%s' "$body" | wc -c)
printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' \
	"$status" "$ctype" "$length"
[ "$method" = HEAD ] || printf '%s' "$body"
