"""What the object store's nightly backup costs (server/store/offsite.py): the first copy of
every object to the backup store, one object at a time (the baseline) and
``offsite.WORKERS`` at a time, in the same run; the nightly run when nothing is new; a night
with 10 % new pages; the restore into a new, empty bucket, one and ``WORKERS`` at a time;
on a real RADOS Gateway (tests/s3server.py: one node,
memstore, loopback — a LAN or WAN to another site adds its round trips per object).

Per run: wall seconds, objects per second, CPU milliseconds per object of this process
(hashing, boto3) and of the gateway (radosgw), and the memory a station's listing takes per
object (tracemalloc).

    python -m bench offsite [--pages 300]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the gateway and the message builders live there

SIZES = {"text": 2_000, "thumb": 15_000, "archival": 50_000}  # as bench/ingest.py's pages


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(name: str, objects: int, gateway: int, run: Callable[[], object]) -> float:
    """Run, print the table row; the wall seconds."""
    wall, cpu, rgw = time.monotonic(), time.process_time(), _cpu_of(gateway)
    run()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    rgw = _cpu_of(gateway) - rgw
    per = max(objects, 1)
    print(
        f"| {name} | {objects} | {wall:.2f} | {objects / wall:,.0f} | {cpu / per * 1000:.2f}"
        f" | {rgw / per * 1000:.2f} |"
    )
    return wall


def main(argv: list[str]) -> int:
    from s3server import CephS3, missing
    from test_ingest import as_messages, make_batch

    from server.ingest import Ingest
    from server.store import objects, offsite
    from server.store.db import Database

    parser = argparse.ArgumentParser(prog="python -m bench offsite")
    parser.add_argument("--pages", type=int, default=300)
    args = parser.parse_args(argv)
    why = missing()
    if why is not None:
        print(f"offsite: needs a RADOS Gateway: {why}", file=sys.stderr)
        return 1
    print(f"load average before: {os.getloadavg()}")
    s3 = CephS3().start()
    try:
        work = Path(tempfile.mkdtemp(prefix="sohoa-bench-offsite-"))
        creds = objects.Credentials(s3.access_key, s3.secret_key)
        archive = s3.new_bucket()
        store = objects.open_store(work, s3.url(archive), creds)
        assert isinstance(store, objects.ObjectStore)

        def backup_store(name: str) -> objects.ObjectStore:
            target = objects.Target.parse(s3.url(s3.new_bucket(), "du-phong"))
            client = objects.make_client(target, creds)
            return objects.ObjectStore(work / name, target, client, reader=False)

        db = Database(work / "archive.sqlite3")
        ingest = Ingest(db, store, accept_unenrolled=True)
        rng = random.Random(19)

        def ingest_pages(n: int) -> None:
            for start in range(0, n, 50):
                batch = make_batch(min(50, n - start), rng, sizes=SIZES)
                messages = as_messages(batch, [batch.manifest(), *batch.all_chunks(32 * 1024)])
                for i in range(0, len(messages), 256):
                    for result in ingest.handle_many(messages[i : i + 256]):
                        assert result.error is None, result.error

        ingest_pages(args.pages)
        n = args.pages * len(SIZES)
        gateway = s3.procs["rgw"].pid
        quiet: Callable[[str], None] = lambda line: None  # noqa: E731
        print("| run | objects | seconds | objects/s | CPU ms/object here | … gateway |")
        print("|---|---|---|---|---|---|")
        walls: dict[str, float] = {}
        backups = {w: backup_store(f"backup-{w}") for w in (1, offsite.WORKERS)}
        for w, backup in backups.items():  # one at a time (the baseline) first
            walls[f"first {w}"] = _measure(
                f"first backup, {w} at a time: every object copied", n, gateway,
                lambda b=backup, w=w: offsite.backup(db, b, say=quiet, workers=w),
            )  # fmt: skip
        backup = backups[offsite.WORKERS]
        walls["none"] = _measure("nightly, nothing new (listings only)", n, gateway,
                                 lambda: offsite.backup(db, backup, say=quiet))  # fmt: skip
        new = max(args.pages // 10, 1)
        ingest_pages(new)
        _measure(f"nightly, {new} new page(s) among {args.pages + new}", new * len(SIZES),
                 gateway, lambda: offsite.backup(db, backup, say=quiet))  # fmt: skip
        total = (args.pages + new) * len(SIZES)
        for w in (1, offsite.WORKERS):
            fresh = objects.open_store(work / f"new-{w}", s3.url(s3.new_bucket()), creds)
            assert isinstance(fresh, objects.ObjectStore)
            walls[f"restore {w}"] = _measure(
                f"restore into a new, empty bucket, {w} at a time", total, gateway,
                lambda f=fresh, w=w: offsite.restore(db, f, backup, say=quiet, workers=w),
            )  # fmt: skip
            offsite.repoint(db, store, quiet)  # the catalogue back on the archive's bucket
        many = offsite.WORKERS
        print(f"first backup, {many} at a time / one at a time: "
              f"{walls[f'first {many}'] / walls['first 1']:.2f} of the time")  # fmt: skip
        print(f"restore, {many} at a time / one at a time: "
              f"{walls[f'restore {many}'] / walls['restore 1']:.2f} of the time")  # fmt: skip
        print(f"nightly with nothing new / first backup ({many} at a time): "
              f"{walls['none'] / walls[f'first {many}']:.3f} of the time")  # fmt: skip
        tracemalloc.start()
        listed = backup.sizes(backup.target.prefix)
        used, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"listing held in memory: {used / len(listed):.0f} bytes an object ({len(listed)})")
        db.close()
    finally:
        s3.stop()
    print(f"load average after: {os.getloadavg()}")
    return 0
