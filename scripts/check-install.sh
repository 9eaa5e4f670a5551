#!/usr/bin/env bash
# Run both install scripts for real, as docs/operations.md and the README say, on a fresh
# Debian 12 root made by debootstrap, inside chroot (`make check-install`; root, the Debian
# mirror and PyPI needed; minutes, not part of `make test`):
#   scripts/check-install.sh [agent|server|both]
# The base root ($SOHOA_CHECK_ROOT/base, default /tmp/sohoa-check-install) is built once and
# reused; each run copies it afresh per side, clones this repository's HEAD (commit first)
# into it, runs the script twice (the second run must be a no-op repair), then checks what
# it installed. PID 1 is not systemd in a chroot: the scripts must detect that, enable the
# units offline and say what to start later. What cannot be checked here: units starting
# under systemd, arm64 (docs/operations.md "Tested how").
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${SOHOA_CHECK_ROOT:-/tmp/sohoa-check-install}
WHAT=${1:-both}
# The mirror this machine's apt uses (deb822 URIs: or a one-line deb entry), else Debian's.
MIRROR=${SOHOA_CHECK_MIRROR:-$(
  cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | awk '($1 == "URIs:" || $1 == "deb") && $2 ~ /\/debian\/?$/ {print $2; exit}' || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

say() { printf 'check-install: %s\n' "$*"; }
die() { printf 'check-install: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (chroot and mounts need it)"
command -v debootstrap >/dev/null || die "apt-get install -y debootstrap"
git -C "$REPO" diff --quiet HEAD || say "warning: uncommitted changes are not checked (HEAD is cloned)"

# What a fresh Debian 12 server has beyond minbase: systemd (not running in a chroot), udev,
# adduser, certificates; git is the docs' first step.
BASE_PKGS=systemd,systemd-sysv,udev,adduser,ca-certificates,git,procps
base=$ROOT/base
if [ ! -e "$base/.complete" ]; then
  rm -rf "$base"
  mkdir -p "$ROOT"
  say "debootstrap bookworm from $MIRROR into $base"
  debootstrap --variant=minbase --include="$BASE_PKGS" bookworm "$base" "$MIRROR" >"$ROOT/debootstrap.log"
  touch "$base/.complete"
fi

mounted=()
cleanup() {
  local sig _
  # processes left running inside the roots (started here: PostgreSQL, Mosquitto, the
  # server), asked to stop, then killed; then the mounts
  for sig in TERM TERM TERM TERM TERM KILL; do
    [ -n "$(in_roots)" ] || break
    for _ in $(in_roots); do kill -s "$sig" "$_" 2>/dev/null || true; done
    sleep 2
  done
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
roots=()
in_roots() {  # ids of the processes whose root is one of ours
  local p r want
  for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    for want in "${roots[@]:-}"; do
      [ -n "$want" ] && [ "$r" = "$want" ] && echo "${p#/proc/}"
    done
  done
  return 0
}
trap cleanup EXIT

prepare() {  # a fresh copy of the base root for one side
  local r=$ROOT/$1
  rm -rf "$r"
  cp -a "$base" "$r"
  roots+=("$r")
  mount -t proc proc "$r/proc" && mounted+=("$r/proc")
  mount -t sysfs sys "$r/sys" && mounted+=("$r/sys")
  mount --bind /dev "$r/dev" && mounted+=("$r/dev")
  mount --bind /dev/pts "$r/dev/pts" && mounted+=("$r/dev/pts")
  # POSIX semaphores (the agent's worker pool) need a writable /dev/shm, as on any machine
  mount -t tmpfs -o mode=1777 shm "$r/dev/shm" && mounted+=("$r/dev/shm")
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  # This host's certificate authorities for pip (a proxy here may re-sign PyPI's TLS).
  cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/host-ca-certificates.crt"
  # Services installed by apt must not start in the chroot (they would share this host's
  # ports): the usual chroot policy. The scripts start what they need themselves.
  printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
  chmod 0755 "$r/usr/sbin/policy-rc.d"
  echo "$1-check" >"$r/etc/hostname"
}

in_root() { chroot "$1" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  PIP_CERT=/etc/ssl/host-ca-certificates.crt "${@:2}"; }

timed() {  # timed LABEL command...: run, report seconds
  local t0=$SECONDS
  "${@:2}"
  say "$1: $((SECONDS - t0)) s"
}

check_agent() {
  local r=$ROOT/agent
  prepare agent
  # README: git clone <this repository> sohoa && cd sohoa && sudo scripts/install-agent.sh
  git clone -q "$REPO" "$r/root/sohoa"
  timed "agent install (first run)" in_root "$r" bash -c 'cd /root/sohoa && scripts/install-agent.sh'
  timed "agent install (second run)" in_root "$r" bash -c 'cd /root/sohoa && scripts/install-agent.sh'
  in_root "$r" bash -euxc '
    id sohoa | grep -q scanner && id sohoa | grep -q dialout && id sohoa | grep -q input
    test -f /etc/sohoa/agent.toml
    test -f /etc/udev/rules.d/70-sohoa-agent.rules
    test -L /etc/systemd/system/multi-user.target.wants/sohoa-agent.service
    test "$(stat -c %U /var/lib/sohoa-agent)" = sohoa
    /opt/sohoa/.venv/bin/sohoa-agent --version
    runuser -u sohoa -- /opt/sohoa/.venv/bin/sohoa-agent --help >/dev/null
    systemd-analyze verify /etc/systemd/system/sohoa-agent.service
  '
  # The station works as its unit would run it: SANE test scanner, cleanup and Vietnamese OCR
  in_root "$r" bash -euxc '
    as_sohoa() { runuser -u sohoa -- env SOHOA_DATA_DIR=/var/lib/sohoa-agent "$@"; }
    as_sohoa SOHOA_SCANNER=test:0 /opt/sohoa/.venv/bin/sohoa-agent scan
    as_sohoa /opt/sohoa/.venv/bin/sohoa-agent process
    as_sohoa /opt/sohoa/.venv/bin/sohoa-agent status | grep -q "Chờ xử lý: 0 trang"
  '
  say "agent: OK"
}

check_server() {
  local r=$ROOT/server
  prepare server
  # docs/operations.md section 1: apt-get install -y git; git clone ... /opt/sohoa; the script
  git clone -q "$REPO" "$r/opt/sohoa"
  timed "server install (first run)" in_root "$r" /opt/sohoa/scripts/install-server.sh --host archive-check.example.vn
  timed "server install (second run)" in_root "$r" /opt/sohoa/scripts/install-server.sh --host archive-check.example.vn
  in_root "$r" bash -euxc '
    for u in sohoa-server mosquitto nginx postgresql; do
      test -L /etc/systemd/system/multi-user.target.wants/$u.service
    done
    test -s /etc/sohoa/credentials/database-password
    test -s /etc/sohoa/credentials/mqtt-password
    test -s /etc/sohoa/credentials/broker-admin-password
    grep -q "^shared_buffers = [0-9]*MB$" /etc/postgresql/*/main/conf.d/sohoa.conf
    test "$(stat -c %U /var/lib/mosquitto/dynamic-security.json)" = mosquitto
    nginx -t
    systemd-analyze verify /etc/systemd/system/sohoa-server.service
    /usr/local/bin/sohoa-server --version
  '
  # What the units would start, started by hand as they would (no systemd here), and the
  # install's own check: database with the credential, broker with the server identity, store.
  in_root "$r" bash -euxc '
    v=$(pg_lsclusters --no-header | awk "{print \$1; exit}")
    pg_ctlcluster "$v" main start
    (cd / && runuser -u postgres -- psql -tAc "SELECT sourcefile FROM pg_settings WHERE name = '"'"'shared_buffers'"'"'") | grep -q conf.d/sohoa.conf
    # as the Debian unit mosquitto.service: its run directory, root drops to user mosquitto
    install -d -m 0740 -o mosquitto -g mosquitto /run/mosquitto
    mosquitto -c /etc/mosquitto/mosquitto.conf -d
    sleep 1
    cred=$(mktemp -d); cp /etc/sohoa/credentials/* "$cred/"; chown -R sohoa: "$cred"
    runuser -u sohoa -- env CREDENTIALS_DIRECTORY="$cred" SOHOA_DATA_DIR=/var/lib/sohoa-server \
      /opt/sohoa/.venv/bin/sohoa-server run >/var/log/sohoa-check.log 2>&1 &
    for _ in $(seq 60); do [ -f /var/lib/sohoa-server/receipt-signing.key ] && break; sleep 1; done
    runuser -u sohoa -- env CREDENTIALS_DIRECTORY="$cred" \
      /opt/sohoa/.venv/bin/sohoa-server doctor
    # the next documented steps: the first admin through the wrapper, the site through nginx
    echo "mat-khau-quan-tri-9" | /usr/local/bin/sohoa-server user add quantri --role admin --password-file -
    nginx
    /opt/sohoa/.venv/bin/python - <<PY
import ssl, urllib.request
ctx = ssl.create_default_context(cafile="/etc/sohoa/tls/fullchain.pem")
req = urllib.request.Request("https://archive-check.example.vn/login")
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
import socket
real = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: real("127.0.0.1" if host == "archive-check.example.vn" else host, *a, **k)
with opener.open(req, timeout=30) as r:
    assert r.status == 200, r.status
    print("nginx -> sohoa-server:", r.status, r.headers.get("Content-Type"))
PY
    nginx -s stop
  '
  say "server: OK"
}

case "$WHAT" in
  agent) check_agent ;;
  server) check_server ;;
  both) check_agent; check_server ;;
  *) die "usage: $0 [agent|server|both]" ;;
esac
