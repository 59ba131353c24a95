#!/bin/sh
# vsa-ops preflight: what a host is, read in one command and changing nothing.
# Usage: sh host_read.sh ACME_DIRECTORY_URL [CA_BUNDLE_PEM]
# Prints one fact per line, "key value..."; vsa_ops/preflight/host_facts.py parses them.
# Every probe tolerates a missing tool: a fact that cannot be read is printed as absent.
acme_url=$1
ca_bundle=${2:-}

fact() { printf '%s\n' "$*"; }
has() { command -v "$1" >/dev/null 2>&1; }

fact uid "$(id -u)"
fact user "$(id -un 2>/dev/null)"
fact sudo_user "${SUDO_USER:-}"
if [ "$(id -u)" != 0 ]; then
	if has sudo && sudo -n true 2>/dev/null; then fact sudo nopasswd; else fact sudo no; fi
fi
if [ -r /etc/os-release ]; then
	# shellcheck disable=SC1091
	. /etc/os-release
	fact os_id "${ID:-}"
	fact os_version "${VERSION_ID:-}"
	fact os_name "${PRETTY_NAME:-}"
fi

container=none
if has systemd-detect-virt; then
	container=$(systemd-detect-virt -c 2>/dev/null) || container=none
elif [ -e /.dockerenv ]; then
	container=docker
elif [ -e /run/.containerenv ]; then
	container=podman
fi
fact container "$container"

if [ -d /run/systemd/system ]; then
	fact systemd yes
	if has timedatectl; then
		fact ntp_synchronized "$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"
	fi
else
	fact systemd no
fi
fact epoch "$(date +%s)"

# Filesystem labels: udev's links where udev runs, blkid's probe otherwise (root only).
if [ -d /dev/disk/by-label ]; then
	for link in /dev/disk/by-label/*; do
		[ -e "$link" ] || continue
		fact label "$(readlink -f "$link")" "${link##*/}"
	done
fi
if has blkid; then
	blkid -s LABEL -o export 2>/dev/null | while IFS='=' read -r key value; do
		case $key in
		DEVNAME) device=$value ;;
		LABEL) fact label "$device" "$value" ;;
		esac
	done
fi
if has lsblk; then
	lsblk -bnro PATH,SIZE 2>/dev/null | while read -r path size; do
		fact device_size "$path" "$size"
	done
fi
for mountpoint in / /var/lib/docker; do
	if has findmnt; then
		if source=$(findmnt -no SOURCE --mountpoint "$mountpoint" 2>/dev/null); then
			# a bind mount names its device as DEVICE[/folder]; links (/dev/mapper/...) resolve like labels do
			case $source in /dev/*) source=$(readlink -f "${source%%\[*}") ;; esac
			fact mount "$mountpoint" "$source"
		fi
	fi
	if [ -d "$mountpoint" ]; then
		df -Pk "$mountpoint" 2>/dev/null | tail -n 1 | while read -r _ size _ avail _ _; do
			fact df "$mountpoint" "$size" "$avail"
		done
	fi
done

# Listeners on 80 and 443, with the process where the kernel tells us (ss as root).
if has ss; then
	ss -Hltnp 2>/dev/null | while read -r _ _ _ local _ process; do
		case $local in
		*:80 | *:443) fact listen "${local##*:}" "${process:--}" ;;
		esac
	done
else
	for table in /proc/net/tcp /proc/net/tcp6; do
		[ -r "$table" ] || continue
		while read -r _ local _ state _; do
			[ "$state" = 0A ] || continue
			case ${local##*:} in
			0050) fact listen 80 - ;;
			01BB) fact listen 443 - ;;
			esac
		done <"$table"
	done
fi

if has docker && docker version >/dev/null 2>&1; then
	fact docker_version "$(docker version --format '{{.Server.Version}}' 2>/dev/null)"
	fact compose_version "$(docker compose version --short 2>/dev/null)"
	docker ps --format '{{.Names}} {{.Ports}}' 2>/dev/null | while read -r name ports; do
		fact container_ports "$name" "$ports"
	done
elif has dockerd; then
	fact docker_installed "$(dockerd --version 2>/dev/null)"
fi

# The ACME directory over HTTPS, trusting the configured bundle (read from stdin) or the system's.
if has curl; then
	if [ -n "$ca_bundle" ]; then
		code=$(printf '%s\n' "$ca_bundle" | curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
			--cacert /dev/stdin "$acme_url" 2>&1)
	else
		code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$acme_url" 2>&1)
	fi
	fact acme "$(printf '%s' "$code" | tr '\n' ' ')"
elif has wget; then
	if [ -n "$ca_bundle" ]; then
		error=$(printf '%s\n' "$ca_bundle" | wget -q -O /dev/null --timeout=10 --ca-certificate=/dev/stdin \
			"$acme_url" 2>&1) && error=200
	else
		error=$(wget -q -O /dev/null --timeout=10 "$acme_url" 2>&1) && error=200
	fi
	fact acme "$(printf '%s' "$error" | tr '\n' ' ')"
else
	fact acme_tool none
fi
exit 0
