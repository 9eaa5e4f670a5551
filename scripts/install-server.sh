#!/usr/bin/env bash
# Install (or re-run to repair/upgrade) the sohoa archive server on a fresh Debian 12, as root:
#
#   git clone <sohoa repository> /opt/sohoa      # or unpack a release there
#   /opt/sohoa/scripts/install-server.sh --host archive.example.vn
#
# What it does, each step idempotent (docs/operations.md "Install the archive server"):
#   1. Debian packages: python3-venv, PostgreSQL, Mosquitto, nginx, openssl (bootstrap.sh)
#   2. the service user `sohoa` and the venv in /opt/sohoa/.venv
#   3. /etc/sohoa/server.toml and the database secret in /etc/sohoa/credentials/ (made once)
#   4. PostgreSQL: memory settings (conf.d/sohoa.conf, made once), role and database `sohoa`
#      (UTF8), password = credentials/database-password
#   5. Mosquitto: conf.d/sohoa.conf, the dynamic-security file with the broker admin and the
#      server's identity (sohoa-server broker init: passwords into /etc/sohoa/credentials/),
#      a TLS certificate for port 8883 (self-signed until you install a real one)
#   6. the hardened unit systemd/sohoa-server.service (credentials via LoadCredential=)
#   7. nginx: HTTPS reverse proxy (systemd/nginx/sohoa.conf) with a self-signed certificate
#   8. /usr/local/bin/sohoa-server, which runs admin commands as `sohoa`, then `doctor`
# Without a running systemd (chroot, container) the units are enabled but not started and
# the script ends by printing what to start (docs/operations.md section 1, "Tested how").
# Nothing existing is overwritten except files this script owns (the unit, the Mosquitto
# snippet and ACL, the nginx site, the wrapper); secrets and settings are kept.
set -euo pipefail

PREFIX=/opt/sohoa
ETC=/etc/sohoa
CRED=$ETC/credentials
HOST=$(hostname -f 2>/dev/null || hostname)
NGINX=yes

usage() {
  echo "usage: $0 [--host NAME] [--no-nginx]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST=${2:?}; shift 2 ;;
    --no-nginx) NGINX=no; shift ;;
    -h|--help) usage ;;
    *) usage ;;
  esac
done

say() { printf '\n== %s\n' "$*"; }
die() { echo "install-server: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"
here=$(cd "$(dirname "$0")/.." && pwd)
[ "$here" = "$PREFIX" ] || die "the repository must be at $PREFIX (it is at $here): git clone ... $PREFIX"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || echo "install-server: warning: written for Debian 12 (bookworm), this is ${PRETTY_NAME:-unknown}" >&2

cd /  # runuser -u postgres must not start in a folder it cannot enter

# Without a running systemd (a chroot, a container, an image being built) the units are
# installed and enabled offline, nothing is started through systemctl, and the script ends
# by saying what to run once the machine boots. PostgreSQL is started for the database steps
# with Debian's pg_ctlcluster and stopped again.
if [ -d /run/systemd/system ]; then
  SYSTEMD=yes
else
  SYSTEMD=no
  echo "install-server: systemd is not running here: units are enabled, not started" >&2
fi
enable_unit() {  # enable (and with systemd running, restart) a unit
  if [ "$SYSTEMD" = yes ]; then
    systemctl enable "$1"
    systemctl restart "$1"
  else
    SYSTEMD_OFFLINE=1 systemctl enable "$1"
  fi
}

say "1. Debian packages"
"$PREFIX/scripts/bootstrap.sh" system server

say "2. user sohoa and the Python environment"
if ! id sohoa >/dev/null 2>&1; then
  adduser --system --group --home /var/lib/sohoa-server --no-create-home --gecos "sohoa archive" sohoa
fi
"$PREFIX/scripts/bootstrap.sh" venv server
install -d -o sohoa -g sohoa -m 0750 /var/lib/sohoa-server

say "3. settings and secrets"
install -d -o root -g sohoa -m 0750 "$ETC" "$CRED"
secret() {  # a new random secret, never replaced once made
  local f=$CRED/$1
  if [ ! -s "$f" ]; then
    (umask 077; openssl rand -base64 33 | tr -d '/+=\n' > "$f")
  fi
  chown root:sohoa "$f"
  chmod 0640 "$f"
}
secret database-password
secret backup-password  # restic's repository key (sohoa-server backup): keep a copy offline
if [ ! -f "$ETC/server.toml" ]; then
  cat > "$ETC/server.toml" <<TOML
# sohoa archive server settings (README "Configuration"). Secrets are NOT here: they are
# the files in /etc/sohoa/credentials/ (mqtt-password, database-password,
# broker-admin-password, backup-password).
data_dir = "/var/lib/sohoa-server"
database_url = "postgresql://sohoa@localhost:5432/sohoa"
mqtt_url = "mqtt://sohoa-server@localhost:1883"
station_broker_url = "mqtts://$HOST:8883"
# nginx on this host (systemd/nginx/sohoa.conf): its X-Forwarded-For and -Proto are believed.
trusted_proxies = ["127.0.0.1"]
host = "127.0.0.1"
port = 8080
language = "vi"
TOML
fi
chown root:sohoa "$ETC/server.toml"
chmod 0640 "$ETC/server.toml"

say "4. PostgreSQL"
pgversion=$(pg_lsclusters --no-header | awk '$2 == "main" {print $1; exit}')
[ -n "$pgversion" ] || die "no PostgreSQL cluster 'main' (pg_lsclusters)"
# Memory for search (docs/operations.md section 7, "PostgreSQL memory"): a quarter of the
# RAM as shared_buffers, three quarters as effective_cache_size. Written once: an edit made
# to the file afterwards is kept. shared_buffers takes effect at the server's next start.
pgconf=/etc/postgresql/$pgversion/main/conf.d/sohoa.conf
pg_configured=no
if [ ! -f "$pgconf" ]; then
  ram_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  install -d -m 0755 -o postgres -g postgres "$(dirname "$pgconf")"
  cat > "$pgconf" <<CONF
# sohoa archive server: written once by scripts/install-server.sh for ${ram_mb} MB of RAM
# (docs/operations.md section 7, "PostgreSQL memory"); edit freely, it is not rewritten.
shared_buffers = $((ram_mb / 4))MB
effective_cache_size = $((ram_mb * 3 / 4))MB
# After a restart the blocks that were in shared_buffers are read back by themselves
# (pg_prewarm's autoprewarm: their list is saved every 5 minutes and at shutdown), so the
# first searches after a restart or a power cut are not run on an empty cache.
shared_preload_libraries = 'pg_prewarm'
pg_prewarm.autoprewarm = on
CONF
  chmod 0644 "$pgconf"
  pg_configured=yes
fi
pg_started_here=no
if [ "$SYSTEMD" = yes ]; then
  systemctl enable --now postgresql
  if [ "$pg_configured" = yes ]; then
    systemctl restart postgresql
  fi
else
  SYSTEMD_OFFLINE=1 systemctl enable postgresql
  if ! pg_ctlcluster "$pgversion" main status >/dev/null 2>&1; then
    pg_ctlcluster "$pgversion" main start
    pg_started_here=yes
  elif [ "$pg_configured" = yes ]; then
    pg_ctlcluster "$pgversion" main restart
  fi
fi
dbpw=$(cat "$CRED/database-password")
[[ "$dbpw" =~ ^[A-Za-z0-9]+$ ]] || die "$CRED/database-password: use letters and digits only"
if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'sohoa'" | grep -q 1; then
  runuser -u postgres -- psql -q -c "CREATE ROLE sohoa LOGIN"
fi
# The password always follows the credential file (re-running repairs a mismatch). It goes
# to psql on its standard input, never on a command line (ps would show it).
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<SQL
ALTER ROLE sohoa PASSWORD '$dbpw';
SQL
if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'sohoa'" | grep -q 1; then
  runuser -u postgres -- createdb -O sohoa -E UTF8 -T template0 sohoa
fi
if [ "$pg_started_here" = yes ]; then
  pg_ctlcluster "$pgversion" main stop
fi

say "5. Mosquitto"
install -m 0644 "$PREFIX/systemd/mosquitto/sohoa.conf" /etc/mosquitto/conf.d/sohoa.conf
# Identities live in Mosquitto's dynamic security plugin; the first file holds the broker's
# admin and the server's ingest identity, whose passwords go to the credentials (never
# rewritten once made: re-running keeps every enrolled station).
dynsec=/var/lib/mosquitto/dynamic-security.json
if [ ! -f "$dynsec" ]; then
  "$PREFIX/.venv/bin/sohoa-server" broker init --dynsec-file "$dynsec" \
    --ingest-password-file "$CRED/mqtt-password" \
    --admin-password-file "$CRED/broker-admin-password"
fi
chown mosquitto: "$dynsec"
for f in mqtt-password broker-admin-password; do
  chown root:sohoa "$CRED/$f"
  chmod 0640 "$CRED/$f"
done
# The snippet names the plugin without a directory: the dynamic loader searches Debian's
# multiarch library directory (/usr/lib/<triplet>/) on amd64 and arm64 alike. Stop here,
# with the fix, if this Mosquitto does not ship the plugin.
if ! ls /usr/lib/*/mosquitto_dynamic_security.so >/dev/null 2>&1; then
  echo "install-server: mosquitto_dynamic_security.so missing: apt-get install mosquitto (2.0 or later)" >&2
  exit 1
fi
install -d -m 0750 -o root -g mosquitto /etc/mosquitto/certs
if [ ! -f /etc/mosquitto/certs/server.crt ]; then
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$HOST" \
    -addext "subjectAltName=DNS:$HOST" \
    -keyout /etc/mosquitto/certs/server.key -out /etc/mosquitto/certs/server.crt 2>/dev/null
  echo "install-server: self-signed broker certificate for $HOST: stations need" \
       "/etc/mosquitto/certs/server.crt as their mqtt_ca_file (or install a real certificate)"
fi
chown root:mosquitto /etc/mosquitto/certs/server.key /etc/mosquitto/certs/server.crt
chmod 0640 /etc/mosquitto/certs/server.key
chmod 0644 /etc/mosquitto/certs/server.crt
enable_unit mosquitto

say "6. the sohoa-server service"
install -m 0644 "$PREFIX/systemd/sohoa-server.service" /etc/systemd/system/sohoa-server.service
[ "$SYSTEMD" = no ] || systemctl daemon-reload
enable_unit sohoa-server

say "7. HTTPS reverse proxy (nginx)"
if [ "$NGINX" = yes ]; then
  install -d -m 0750 -o root -g root "$ETC/tls"
  if [ ! -f "$ETC/tls/fullchain.pem" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$HOST" \
      -addext "subjectAltName=DNS:$HOST" \
      -keyout "$ETC/tls/privkey.pem" -out "$ETC/tls/fullchain.pem" 2>/dev/null
    echo "install-server: self-signed HTTPS certificate for $HOST (docs/operations.md \"HTTPS\": certbot)"
  fi
  sed "s/archive\.example\.vn/$HOST/g" "$PREFIX/systemd/nginx/sohoa.conf" > /etc/nginx/sites-available/sohoa
  ln -sf /etc/nginx/sites-available/sohoa /etc/nginx/sites-enabled/sohoa
  rm -f /etc/nginx/sites-enabled/default
  nginx -t
  if [ "$SYSTEMD" = yes ]; then
    systemctl enable nginx
    systemctl reload-or-restart nginx
  else
    SYSTEMD_OFFLINE=1 systemctl enable nginx
  fi
fi

say "8. admin command and check"
cat > /usr/local/bin/sohoa-server <<'SH'
#!/bin/sh
# sohoa-server for administrators (installed by scripts/install-server.sh): runs as the
# service user so that nothing it writes becomes unreadable for the service.
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u sohoa -- /opt/sohoa/.venv/bin/sohoa-server "$@"
fi
exec /opt/sohoa/.venv/bin/sohoa-server "$@"
SH
chmod 0755 /usr/local/bin/sohoa-server
if [ "$SYSTEMD" = no ]; then
  echo
  echo "install-server: installed; nothing started (systemd is not running here). Once the"
  echo "  machine runs systemd: systemctl start postgresql mosquitto sohoa-server nginx, then"
  echo "  sohoa-server doctor, and the steps below."
  echo "  Back up /var/lib/sohoa-server/receipt-signing.key (made at the first start) and"
  echo "  /etc/sohoa/credentials, create the first admin (sohoa-server user add NAME --role admin),"
  echo "  then open https://$HOST/ (docs/operations.md)."
  exit 0
fi
# The service creates the tables and the receipt key at start; give it a moment.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  [ -f /var/lib/sohoa-server/receipt-signing.key ] && break
  sleep 1
done
if /usr/local/bin/sohoa-server doctor; then
  echo
  echo "install-server: done. Next: back up /var/lib/sohoa-server/receipt-signing.key and"
  echo "  /etc/sohoa/credentials, create the first admin (sohoa-server user add NAME --role admin),"
  echo "  then open https://$HOST/ (docs/operations.md)."
else
  echo "install-server: doctor found a problem (above); fix it and run this script again." >&2
  exit 1
fi
