#!/bin/sh
# vsa-lab-acme: the lab's ACME test CA (see vsa_ops/lab/acme.py), two processes in one container.
# pebble-challtestsrv is only the DNS server pebble's validator asks: every A query is answered with
# $ACME_DEFAULT_IPV4 (lab host 1 on the vsa-lab network) unless /add-a on its management port (8055)
# says otherwise; AAAA gets no answer (else pebble tries ::1 and validation fails). Its own challenge
# responders stay off: the lab hosts' NGINX serves the HTTP-01 files from certbot's webroot.
# The listener certificate in /etc/pebble/tls is made on the controller and mounted read-only.
set -eu
: "${ACME_DEFAULT_IPV4:?set ACME_DEFAULT_IPV4 to the address test names resolve to}"
pebble-challtestsrv -management :8055 -dns01 :8053 -http01 "" -https01 "" -tlsalpn01 "" -doh "" \
	-defaultIPv4 "$ACME_DEFAULT_IPV4" -defaultIPv6 "" &
exec pebble -config /etc/pebble/config.json -dnsserver 127.0.0.1:8053 "$@"
