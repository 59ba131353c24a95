#!/bin/sh
# Lab backup repository server (vsa-lab-backup): sshd with SFTP for the user "vsa", key login only.
# $SSH_AUTHORIZED_KEYS: written to /home/vsa/.ssh/authorized_keys. The repositories live under
# /srv/restic (a volume: kept by `vsa-ops lab down` unless --purge).
set -eu
ssh-keygen -A >/dev/null
mkdir -p /run/sshd /home/vsa/.ssh /srv/restic
printf '%s\n' "${SSH_AUTHORIZED_KEYS:-}" >/home/vsa/.ssh/authorized_keys
chown -R vsa:vsa /home/vsa /srv/restic
chmod 700 /home/vsa/.ssh
chmod 600 /home/vsa/.ssh/authorized_keys
exec /usr/sbin/sshd -D -e
