#!/usr/bin/env bash
# Install a sohoa scan station on a fresh Raspberry Pi OS (bookworm, arm64) or Debian 12, from
# this checkout, idempotently:
#   sudo scripts/install-agent.sh
# What it does, in order (each step safe to repeat):
#   1. checks the system (Debian 12 "bookworm", root);
#   2. copies this checkout to /opt/sohoa (without .git and .venv) and installs the Debian
#      packages and the pinned Python dependencies there (scripts/bootstrap.sh all agent);
#   3. creates the system user "sohoa" in the groups scanner, dialout, input and lp (the
#      unit's SupplementaryGroups=);
#   4. writes /etc/sohoa/agent.toml from a commented template only if there is none (a
#      site's file is never rewritten); the station's broker password is made by the
#      enrolment, in /var/lib/sohoa-agent/enrolment/ (nothing under /etc/sohoa/credentials);
#   5. installs the udev rules (systemd/udev/70-sohoa-agent.rules) and reloads udev;
#   6. installs and enables the hardened unit (systemd/sohoa-agent.service), but does not
#      start it before the station is enrolled.
# Then the station waits for its enrolment sheet: put the sheet on the glass and run
#   sudo -u sohoa /opt/sohoa/.venv/bin/sohoa-agent enrol --scan
# (or type the code: ... enrol CODE), then: sudo systemctl start sohoa-agent. Once the
# service runs, scanning a new sheet with the button enrols the station again.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${SOHOA_PREFIX:-/opt/sohoa}
ETC=${SOHOA_ETC:-/etc/sohoa}
USER_NAME=sohoa

say() { printf 'install-agent: %s\n' "$*"; }
die() { printf 'install-agent: %s\n' "$*" >&2; exit 1; }

# 1. The system.
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
# shellcheck disable=SC1091
. /etc/os-release
[ "${VERSION_CODENAME:-}" = "bookworm" ] \
  || die "Debian 12 / Raspberry Pi OS bookworm expected, found ${PRETTY_NAME:-unknown}"
say "system: ${PRETTY_NAME} on $(dpkg --print-architecture)"

# 2. The code and its dependencies under $PREFIX.
mkdir -p "$PREFIX"
if [ "$SRC" != "$PREFIX" ]; then
  say "copying $SRC to $PREFIX"
  tar -C "$SRC" --exclude=.git --exclude=.venv --exclude='*.pyc' --exclude=var -cf - . \
    | tar -C "$PREFIX" -xf -
fi
(cd "$PREFIX" && scripts/bootstrap.sh all agent)

# 3. The user and its groups (the scanner group comes with libsane1; created if missing).
for group in scanner dialout input lp; do
  getent group "$group" >/dev/null || groupadd --system "$group"
done
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/sohoa-agent --no-create-home \
    --shell /usr/sbin/nologin "$USER_NAME"
fi
usermod -a -G scanner,dialout,input,lp "$USER_NAME"
say "user $USER_NAME in groups: $(id -nG "$USER_NAME")"

# 4. Configuration: never overwrite a site's file.
install -d -m 0755 "$ETC"
if [ ! -e "$ETC/agent.toml" ]; then
  cat >"$ETC/agent.toml" <<'TOML'
# sohoa scan station (README "Configuration" lists every key; SOHOA_* variables override).
# Written once by scripts/install-agent.sh; yours to edit, never rewritten.
# The enrolment (sohoa-agent enrol) fills in the device id, broker and archive key.
board = "auto"          # raspberry-pi-4, raspberry-pi-5, x86-workstation, or auto
button = "none"         # serial-box (button_port = "/dev/sohoa-button"), usb-key, ...
scanner = "auto"        # better: the stable id `sohoa-agent devices` prints (usb:...)
TOML
  chmod 0644 "$ETC/agent.toml"
  say "wrote $ETC/agent.toml"
else
  say "kept the existing $ETC/agent.toml"
fi

# 5. Device access.
install -m 0644 "$PREFIX/systemd/udev/70-sohoa-agent.rules" /etc/udev/rules.d/70-sohoa-agent.rules
if command -v udevadm >/dev/null && [ -d /run/udev ]; then
  udevadm control --reload
  udevadm trigger --subsystem-match=usb --subsystem-match=tty --action=change || true
fi

# 6. The unit: enabled, started only once enrolled.
install -m 0644 "$PREFIX/systemd/sohoa-agent.service" /etc/systemd/system/sohoa-agent.service
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" /var/lib/sohoa-agent
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable sohoa-agent.service >/dev/null
else
  # A chroot, a container, an image being built: enable it offline, start nothing.
  SYSTEMD_OFFLINE=1 systemctl enable sohoa-agent.service >/dev/null
  say "systemd is not running here: the unit is enabled, it starts at the next boot"
fi

# Debian 12 installed with a root password has no sudo: name the command that exists.
if command -v sudo >/dev/null; then as_user="sudo -u $USER_NAME" root="sudo "; else as_user="runuser -u $USER_NAME --" root=""; fi
say "done. The station waits for its enrolment sheet:"
say "  $as_user $PREFIX/.venv/bin/sohoa-agent enrol --scan   (sheet on the glass)"
say "  ${root}systemctl start sohoa-agent"
say "  then open http://127.0.0.1:8765/ on the station (the technician's screen)"
