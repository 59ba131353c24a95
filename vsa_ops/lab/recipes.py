"""What each lab image holds. Images whose software Debian packages run it for real; the rest are
small busybox placeholders that answer the HTTP paths the stacks probe (see ``recipe.placeholder``).

An image that stands in for a service of the design carries the tag the configuration pins for that
service (``hub_config([])``'s defaults: one source), so the stacks run unchanged in the lab and a
changed pin changes the lab's image with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import HubConfig, hub_config
from .recipe import DEFAULT_PATH, NOBODY, Dir, File, Link, Recipe, User, placeholder

COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"

PG_MAJOR = "17"  # Debian trixie's PostgreSQL stands in for the design's postgres:16


def configured_images(config: HubConfig) -> dict[str, str]:
    """The image of each built-in service by ``stack/service`` (``reverse-proxy/nginx``, ...)."""
    return {f"{stack}/{service}": component.container.image
            for stack, services in config.builtin_stacks().items() for service, component in services.items()}


def lab_recipes(images: Mapping[str, str]) -> dict[str, Recipe]:
    """Every lab image; one that stands in for a service of the design is tagged ``images[stack/service]``."""
    return {
        "nginx": Recipe(
            tags=(images["reverse-proxy/nginx"],),
            packages=("nginx",),
            users=(User("nginx", 101, shell="/bin/false"),),
            remove=(
                "etc/nginx/conf.d/*",
                "etc/nginx/sites-available/*",
                "etc/nginx/sites-enabled/*",
                "etc/nginx/snippets/*",
                "var/www/html/*",
                "var/log/nginx/*",
            ),
            files=(File("/etc/nginx/nginx.conf", src="nginx.conf"),),
            dirs=(Dir("/etc/nginx/conf.d"), Dir("/var/cache/nginx", 101, 101)),
            links=(
                Link("/var/log/nginx/access.log", "/dev/stdout"),
                Link("/var/log/nginx/error.log", "/dev/stderr"),
            ),
            cmd=("nginx", "-g", "daemon off;"),
            expose=("80",),
        ),
        "certbot": Recipe(
            tags=(images["reverse-proxy/certbot"],),
            packages=("certbot",),
            dirs=(Dir("/etc/letsencrypt"), Dir("/var/lib/letsencrypt"), Dir("/var/log/letsencrypt"), Dir("/opt/certbot")),
            entrypoint=("certbot",),
            workdir="/opt/certbot",
            expose=("80", "443"),
        ),
        "prometheus": Recipe(
            tags=(images["observability/prometheus"],),
            packages=("prometheus",),  # /usr/bin/prometheus and promtool; /bin is /usr/bin (merged /usr)
            files=(File("/etc/prometheus/prometheus.yml", src="prometheus.yml"),),
            dirs=(Dir("/prometheus", 65534, 65534),),
            entrypoint=("/bin/prometheus",),
            cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
            user="nobody",
            workdir="/prometheus",
            expose=("9090",),
        ),
        "node-exporter": Recipe(
            tags=(images["observability/node-exporter"],),
            base="busybox",
            packages=("prometheus-node-exporter",),
            keep=("/usr/bin/prometheus-node-exporter",),
            links=(Link("/bin/node_exporter", "/usr/bin/prometheus-node-exporter"),),
            entrypoint=("/bin/node_exporter",),
            user="nobody",
            expose=("9100",),
        ),
        "postgres": Recipe(
            tags=(images["dashboard/postgres"],),
            packages=(f"postgresql-{PG_MAJOR}",),
            users=(User("postgres", 999, home="/var/lib/postgresql", shell="/bin/bash"),),
            remove=(
                # JIT only (llvmjit.so links LLVM; postgres itself does not): ~130 MB; jit is off without it
                "usr/lib/x86_64-linux-gnu/libLLVM*",
                "usr/lib/x86_64-linux-gnu/libz3.so*",
                f"usr/lib/postgresql/{PG_MAJOR}/lib/llvmjit*",
                f"usr/lib/postgresql/{PG_MAJOR}/lib/bitcode",
            ),
            files=(
                File("/etc/postgresql-common/createcluster.conf", text="create_main_cluster = false\n",
                     before_install=True),  # no "main" cluster from the package: the entrypoint runs initdb
                File("/usr/local/bin/docker-entrypoint.sh", src="postgres-entrypoint.sh", mode=0o755),
            ),
            dirs=(
                Dir("/var/lib/postgresql", 999, 999),
                Dir("/var/lib/postgresql/data", 999, 999, 0o700),
                Dir("/run/postgresql", 999, 999, 0o3777),
                Dir("/docker-entrypoint-initdb.d"),
            ),
            env=(
                ("PATH", f"/usr/lib/postgresql/{PG_MAJOR}/bin:{DEFAULT_PATH}"),
                ("PG_MAJOR", PG_MAJOR),
                ("PGDATA", "/var/lib/postgresql/data"),
                ("LANG", "C.UTF-8"),
            ),
            entrypoint=("docker-entrypoint.sh",),
            cmd=("postgres",),
            expose=("5432",),
        ),
        "docker-cli": Recipe(
            tags=(images["reverse-proxy/reloader"],),
            base="busybox",
            packages=("docker-cli",),
            keep=("/usr/bin/docker",),
            files=(File("/usr/local/bin/docker-entrypoint.sh", src="docker-cli-entrypoint.sh", mode=0o755),),
            entrypoint=("docker-entrypoint.sh",),
            cmd=("sh",),
        ),
        "grafana": placeholder(
            images["observability/grafana"],
            "grafana",
            3000,
            user=User("grafana", 472, 0, home="/usr/share/grafana"),
            paths=("*",),
            dirs=(Dir("/var/lib/grafana", 472, 0), Dir("/etc/grafana/provisioning"), Dir("/usr/share/grafana")),
        ),
        "loki": placeholder(
            images["observability/loki"],
            "loki",
            3100,
            user=User("loki", 10001),
            config_flag="config.file",
            cmd=("-config.file=/etc/loki/local-config.yaml",),
            dirs=(Dir("/loki", 10001, 10001), Dir("/etc/loki")),
        ),
        "promtail": placeholder(
            images["observability/promtail"],
            "promtail",
            9080,
            config_flag="config.file",
            cmd=("-config.file=/etc/promtail/config.yml",),
            dirs=(Dir("/etc/promtail"), Dir("/var/lib/promtail")),
        ),
        "cadvisor": placeholder(images["observability/cadvisor"], "cadvisor", 8080, paths=("/metrics", "/healthz")),
        "demo-app": placeholder("vsa-lab/demo-app:1", "demo-app", 8080, user=NOBODY, paths=("*",)),
        # An upstream that answers with what it received (method, URI, headers): tests/lab/test_edge.py.
        "echo": Recipe(
            tags=("vsa-lab/echo:1",),
            packages=("python3",),
            files=(File("/lab/echo.py", src="echo.py"),),
            entrypoint=("python3", "-u", "/lab/echo.py"),
            user="nobody",
            expose=("8080",),
        ),
        # The dashboard's own images (built by its team, no public tag): stand-ins on their ports.
        "dashboard-api": placeholder(images["dashboard/api"], "dashboard-api", 8000,
                                     user=User("dashboard", 1000), paths=("*",)),
        "dashboard-ui": placeholder(images["dashboard/ui"], "dashboard-ui", 3000,
                                    user=User("dashboard", 1000), paths=("*",)),
        # The lab's ACME test CA (vsa_ops/lab/acme.py): Debian's pebble and pebble-challtestsrv.
        "acme": Recipe(
            tags=("vsa-lab/acme:1",),
            base="busybox",
            packages=("pebble",),
            keep=("/usr/bin/pebble", "/usr/bin/pebble-challtestsrv"),
            files=(
                File("/etc/pebble/config.json", src="pebble-config.json"),
                File("/usr/local/bin/pebble-entrypoint", src="pebble-entrypoint.sh", mode=0o755),
            ),
            dirs=(Dir("/etc/pebble/tls"),),
            entrypoint=("/usr/local/bin/pebble-entrypoint",),
            # no artificial validation delay; no random badNonce rejections (certbot retries them, but slowly)
            env=(("PEBBLE_VA_NOSLEEP", "1"), ("PEBBLE_WFE_NONCEREJECT", "0")),
            expose=("14000", "15000", "8053", "8055"),
        ),
        # Backups (issue 13): the backup stack's loop container, from Debian's restic, with what its
        # script runs (docker exec for pg_dump, sqlite3 .backup, ssh for SFTP repositories, jq).
        "restic": Recipe(
            tags=(images["backup/restic"], "vsa-lab/restic:1"),
            packages=("restic", "docker-cli", "sqlite3", "openssh-client", "jq", "util-linux", "ca-certificates"),
            entrypoint=("/bin/sh",),
        ),
        # The lab's backup repository server, vsa-lab-backup: SFTP for the user vsa.
        "sftp": Recipe(
            tags=("vsa-lab/sftp:1",),
            packages=("openssh-server", "systemd-standalone-sysusers"),
            users=(User("vsa", 1000, home="/home/vsa", shell="/bin/sh"),),
            remove=("etc/ssh/ssh_host_*",),
            files=(File("/usr/local/sbin/sftp-entrypoint", src="sftp-entrypoint.sh", mode=0o755),
                   File("/etc/ssh/sshd_config.d/lab.conf", src="vps-sshd.conf")),
            entrypoint=("/usr/local/sbin/sftp-entrypoint",),
            expose=("22",),
        ),
        "vps": Recipe(
            tags=("vsa-lab/vps:1",),
            packages=(
                "openssh-server",
                "systemd-standalone-sysusers",  # satisfies openssh-server without pulling in systemd
                "docker.io",
                "docker-cli",
                "sudo",
                "util-linux",
                "logrotate",
                "iproute2",
                "procps",
                "curl",
                "ca-certificates",
                "sqlite3",  # the audit trail's SQLite mirror (vsa_ops.audit)
            ),
            remove=("etc/ssh/ssh_host_*",),  # made per container by the entrypoint
            files=(
                File("/usr/local/sbin/vps-entrypoint", src="vps-entrypoint.sh", mode=0o755),
                File("/etc/ssh/sshd_config.d/lab.conf", src="vps-sshd.conf"),
                File(COMPOSE_PLUGIN, host=COMPOSE_PLUGIN, mode=0o755),
            ),
            dirs=(Dir("/root/.ssh", mode=0o700), Dir("/var/lib/docker", mode=0o710)),
            entrypoint=("/usr/local/sbin/vps-entrypoint",),
            expose=("22",),
        ),
    }


RECIPES: dict[str, Recipe] = lab_recipes(configured_images(hub_config([])))
