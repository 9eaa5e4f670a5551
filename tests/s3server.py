"""A throwaway S3 server for tests: Ceph's RADOS Gateway from Debian (``radosgw``,
``ceph-mon``, ``ceph-osd``: Ceph 16) on a one-node cluster in a temporary directory — one
monitor, one OSD on ``memstore`` (RAM, capped), the gateway on a loopback port — and an S3
user made with ``radosgw-admin``. Started once per test session (``s3_server`` fixture in
tests/conftest.py); the tests kill the gateway with SIGKILL and start it again.

The frontend has ``tcp_nodelay=1``, as docs/operations.md tells a province to set (without
it every GET waits ~40 ms on Nagle's algorithm against the client's delayed ACK). The only
departures from a production gateway: cephx off (loopback only), pool size 1,
``rgw multipart min part size`` lowered to 64 KiB so that a multipart upload takes a few
hundred kilobytes instead of 5 MiB parts (the store's ``part_bytes=`` follows it), and
``osd client watch timeout`` 5 s instead of 30: a SIGKILLed gateway's watches would otherwise
hold every metadata change (a new bucket, measured 27.9 s) until they expire (3.0 s).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import free_port

BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool")
PACKAGES = "radosgw ceph-mon ceph-osd ceph-common"
PART_BYTES = 64 * 1024


def missing() -> str | None:
    """Why the server cannot start here, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"{', '.join(absent)} not found: apt-get install -y {PACKAGES}"
    return None


def require() -> None:
    """Under CI a missing Ceph fails the run; elsewhere the test skips with the hint."""
    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"object-store tests need a real S3 server: {why}")
        pytest.skip(f"object-store tests need a real S3 server: {why}")


class PortTaken(RuntimeError):
    """Another program answered on the port picked for this cluster's monitor (free when
    picked, taken before the monitor bound it: another test run's cluster, say)."""


class CephS3:
    def __init__(self) -> None:
        self._fresh()
        self.access_key = "SOHOA" + secrets.token_hex(8).upper()
        self.secret_key = secrets.token_hex(20)
        self._buckets = 0

    def _fresh(self) -> None:
        """A new directory and ports for a cluster not started yet."""
        self.root = Path(tempfile.mkdtemp(prefix="sohoa-ceph-"))
        self.conf = self.root / "ceph.conf"
        self.mon_port = free_port()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            list(args), cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.root / "log" / f"{name}.out").open("ab")
        self.procs[name] = subprocess.Popen(
            [*args, "-f", "-c", str(self.conf)], cwd=self.root, stdout=log, stderr=log
        )

    def start(self) -> CephS3:
        """Make and start the cluster; on failure stop what started (the error carries the
        daemons' last log lines). When the monitor's port was taken meanwhile, the cluster
        is made again on fresh ports (up to three times)."""
        for _attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                self.stop()
                self._fresh()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError("ceph-mon: its port was taken at each of 3 tries")

    def _start(self) -> CephS3:
        r = self.root
        for d in ("run", "log", "mon", "osd0"):
            (r / d).mkdir()
        fsid = str(uuid.uuid4())
        self.conf.write_text(
            f"""[global]
fsid = {fsid}
mon host = v1:127.0.0.1:{self.mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
ms bind msgr2 = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
osd client watch timeout = 5
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = 536870912
run dir = {r}/run
log file = {r}/log/$name.log
admin socket = {r}/run/$name.asok
keyring = {r}/keyring
osd data = {r}/osd$id
mon data = {r}/mon
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:{self.port} tcp_nodelay=1
rgw multipart min part size = {PART_BYTES}
rgw enable usage log = false
"""
        )
        self._run("ceph-authtool", "--create-keyring", "keyring", "--gen-key", "-n", "mon.",
                  "--cap", "mon", "allow *")  # fmt: skip
        self._run("monmaptool", "--create", "--add", "a", f"v1:127.0.0.1:{self.mon_port}",
                  "--fsid", fsid, "monmap")  # fmt: skip
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", "monmap",
                  "--keyring", "keyring")  # fmt: skip
        self._spawn("mon", "ceph-mon", "-i", "a")
        # The monitor that answers must be this cluster's: when another one held the port
        # (free when picked), this one exited and the OSD below joined the other cluster
        # ("wrong fsid", the OSD never up: seen in a CI run with two clusters starting).
        answered = self._ceph("fsid").strip()
        if answered != fsid or self.procs["mon"].poll() is not None:
            raise PortTaken(f"port {self.mon_port}: a monitor of cluster {answered} answered")
        osd_uuid = str(uuid.uuid4())
        self._ceph("osd", "new", osd_uuid)
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._start_osd()
        self.start_gateway()
        self._run("radosgw-admin", "-c", str(self.conf), "user", "create", "--uid=sohoa",
                  "--display-name=sohoa tests", f"--access-key={self.access_key}",
                  f"--secret-key={self.secret_key}")  # fmt: skip
        return self

    def _ceph(self, *args: str) -> str:
        deadline = time.monotonic() + 60
        while True:  # the monitor may still be starting
            try:
                return self._run("ceph", "-c", str(self.conf), "--connect-timeout", "10", *args)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _start_osd(self) -> None:
        """Start the OSD and wait until the monitor has it up. Ceph 16's OSD sometimes dies
        at start in a race between the monitor's config push and its own start-up
        (SIGSEGV in ``md_config_t::update_legacy_vals``; seen once in a dozen starts here):
        it is started again, up to three times (its memstore holds nothing yet)."""
        for _attempt in range(3):
            self._spawn("osd", "ceph-osd", "-i", "0")
            deadline = time.monotonic() + 60
            while self.procs["osd"].poll() is None and time.monotonic() < deadline:
                if '"num_up_osds":1' in self._ceph("osd", "stat", "-f", "json").replace(" ", ""):
                    time.sleep(1)  # past the start-up window of that race
                    if self.procs["osd"].poll() is None:
                        return
                time.sleep(0.5)
            if self.procs["osd"].poll() is None:
                self.procs["osd"].kill()
            self.procs["osd"].wait()
        raise RuntimeError(f"ceph-osd did not come up in 3 starts: {self._tail('osd.out')}")

    def _tail(self, name: str) -> str:
        path = self.root / "log" / name
        return path.read_text(errors="replace")[-1500:] if path.exists() else "(no log)"

    def start_gateway(self) -> None:
        """Start radosgw (again) and wait until it answers S3 requests (started again, up
        to three times, if it dies at start: the same start-up race as the OSD's)."""
        for _attempt in range(3):
            self._spawn("rgw", "radosgw", "-n", "client.rgw")
            deadline = time.monotonic() + 120
            while self.procs["rgw"].poll() is None:
                try:
                    with urllib.request.urlopen(self.endpoint, timeout=2) as answer:
                        if answer.status == 200:
                            return
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"radosgw did not answer within 120 s: {self._tail('client.rgw.log')}"
                        f"\nosd: {self._tail('osd.out')}"
                    )
                time.sleep(0.3)
        raise RuntimeError(f"radosgw exited at start 3 times: {self._tail('rgw.out')}")

    def start_tls_gateway(self, certificate: Path, key: Path) -> str:
        """A second gateway on the same cluster that speaks only HTTPS with ``certificate``
        (as a province puts its gateway behind its own CA); its ``https://`` endpoint, once
        it answers. Stopped with the cluster."""
        port = free_port()
        with self.conf.open("a") as conf:
            conf.write(
                f"[client.rgw-tls]\nrgw frontends = beast ssl_endpoint=127.0.0.1:{port}"
                f" ssl_certificate={certificate} ssl_private_key={key} tcp_nodelay=1\n"
                f"rgw multipart min part size = {PART_BYTES}\nrgw enable usage log = false\n"
            )
        self._spawn("rgw-tls", "radosgw", "-n", "client.rgw-tls")
        deadline = time.monotonic() + 120
        while self.procs["rgw-tls"].poll() is None and time.monotonic() < deadline:
            try:  # listening (its certificate is for the test to judge)
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return f"https://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"radosgw (TLS) did not answer: {self._tail('client.rgw-tls.log')}")

    def kill_gateway(self) -> None:
        """SIGKILL the gateway (the object store vanishes mid-request)."""
        proc = self.procs["rgw"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def rot(self, bucket: str, key: str) -> None:
        """Bit rot on the OSD's disk: one byte of a single-part object's data changed in
        RADOS itself, under the gateway; its size, ETag and metadata stay as they were, so
        only reading the bytes back can tell."""
        rados = ["rados", "-c", str(self.conf), "-p", "default.rgw.buckets.data"]
        oid = next(o for o in self._run(*rados, "ls").splitlines() if o.endswith("_" + key))
        held = self.root / "rot.bin"
        self._run(*rados, "get", oid, str(held))
        raw = bytearray(held.read_bytes())
        raw[len(raw) // 2] ^= 0x20
        held.write_bytes(bytes(raw))
        self._run(*rados, "put", oid, str(held))
        held.unlink()

    def new_bucket(self) -> str:
        """A fresh bucket name (the store creates nothing: the test makes it)."""
        self._buckets += 1
        name = f"sohoa-test-{self._buckets}-{secrets.token_hex(3)}"
        self.client().create_bucket(Bucket=name)
        return name

    def admin(self, *args: str) -> str:
        """Run ``radosgw-admin`` on this cluster (quotas, users, keys), as an operator would."""
        return self._run("radosgw-admin", "-c", str(self.conf), *args)

    def new_user(self) -> tuple[str, str, str]:
        """A fresh S3 user of its own (its keys can be changed without touching the
        session's): (uid, access key, secret key)."""
        self._buckets += 1
        uid = f"sohoa-{self._buckets}-{secrets.token_hex(3)}"
        access, secret = "SOHOA" + secrets.token_hex(8).upper(), secrets.token_hex(20)
        self.admin("user", "create", f"--uid={uid}", f"--display-name={uid}",
                   f"--access-key={access}", f"--secret-key={secret}")  # fmt: skip
        return uid, access, secret

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="default",
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def url(self, bucket: str, prefix: str = "archive") -> str:
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region=default&part_bytes={PART_BYTES}"

    def env(self) -> dict[str, str]:
        return {
            "SOHOA_S3_ACCESS_KEY_ID": self.access_key,
            "SOHOA_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
