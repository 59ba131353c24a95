#!/bin/sh
# Lab VPS: dockerd in the background, sshd in the foreground (PID 1).
# Run it with: --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
#   --security-opt apparmor=unconfined --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run
# and, for the fast overlay2 storage driver, a volume or host folder at /var/lib/docker
# (overlay2 cannot sit on the container's own overlay root; vfs is used then).
# $SSH_AUTHORIZED_KEYS (optional): written to /root/.ssh/authorized_keys.
# $DOCKERD_STORAGE_DRIVER (optional): force a storage driver.
set -eu

ssh-keygen -A >/dev/null
mkdir -p /run/sshd /root/.ssh
chmod 700 /root/.ssh
if [ -n "${SSH_AUTHORIZED_KEYS:-}" ]; then
	printf '%s\n' "$SSH_AUTHORIZED_KEYS" >/root/.ssh/authorized_keys
	chmod 600 /root/.ssh/authorized_keys
fi

start_dockerd() {
	echo "vps-entrypoint: starting dockerd with --storage-driver=$1" >>/var/log/dockerd.log
	# /proc/sys is read-only in the lab container: dockerd 26 cannot turn IPv6 off on container links
	DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1 dockerd --storage-driver="$1" >>/var/log/dockerd.log 2>&1 &
	dockerd_pid=$!
}

driver=${DOCKERD_STORAGE_DRIVER:-}
if [ -z "$driver" ]; then
	if [ "$(stat -f -c %T /var/lib/docker)" = overlayfs ]; then
		driver=vfs
	else
		driver=overlay2
	fi
fi

(
	start_dockerd "$driver"
	if [ "$driver" = overlay2 ] && [ -z "${DOCKERD_STORAGE_DRIVER:-}" ]; then
		# overlay2 guessed: fall back to vfs if this dockerd dies before it answers
		i=0
		while [ "$i" -lt 100 ] && kill -0 "$dockerd_pid" 2>/dev/null; do
			docker info >/dev/null 2>&1 && exit 0
			sleep 0.2
			i=$((i + 1))
		done
		if ! kill -0 "$dockerd_pid" 2>/dev/null; then
			start_dockerd vfs
		fi
	fi
) </dev/null &

exec /usr/sbin/sshd -D -e
