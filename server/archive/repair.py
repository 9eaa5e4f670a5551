"""Parts the fixity check found damaged or missing, brought back from the backups
(``sohoa-server fixity repair``; docs/operations.md §11 "Fixity", runbook R7).

A part's good copy is where the nightly backup put it:

- a part on the object store: its object in the backup store (``backup_store_url``; the
  backup prefix followed by the part's key, as :mod:`server.store.offsite` copies it);
- a part on local disk: its file in the restic repository's latest ``sohoa`` snapshot
  (``restic dump``; the store never changes or deletes a file, so the latest snapshot holds
  every file committed before it).

The copy is fetched into staging and re-hashed against the SHA-256 that ingest recorded;
only then does it take the damaged one's place (the object put again and verified, even
though a HEAD of the damaged one looks right: bit rot changes the bytes, not the ETag; the
file written beside it, fsynced and renamed over it). Then the part is checked again and the
check recorded (a PREMIS fixity event, context "fixity repair"), which clears the damage on
the staff dashboard, and the repair is one row of the audit log.

``sohoa-server store restore`` does not do this: it keeps an object that a HEAD shows at its
size and SHA-256 label (cheap across a whole archive), which is what a damaged object shows.

Owns: choosing the good copy and putting it back. Must not: put back bytes that the
catalogue's SHA-256 does not vouch for, or touch a part whose latest check passed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from server.archive import audit, fixity
from server.config import ServerSettings
from server.store import objects
from server.store.db import Database
from server.store.files import HASH_BLOCK, fsync_dir, make_dirs

ACTOR = "sohoa-server fixity repair"


class RepairRefused(Exception):
    """Nothing can be repaired now (a store or restic cannot be reached): ``code`` is the
    exit status (69)."""

    def __init__(self, message: str, code: int = 69) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Repair:
    """What one run did: a line per part."""

    repaired: list[str] = field(default_factory=list)
    not_repaired: list[str] = field(default_factory=list)


def restic_env(settings: ServerSettings, repo: str | None = None) -> tuple[str, dict[str, str]]:
    """The restic repository (``repo``, else ``backup_repository``) and the environment that
    opens it. ValueError names what is missing (no repository, no password); RepairRefused
    when restic is not installed."""
    repo = repo or settings.backup_repository
    if not repo:
        raise ValueError("no backup repository: set backup_repository (SOHOA_BACKUP_REPOSITORY)")
    password = settings.backup_password()
    if not password:
        raise ValueError(
            "no backup password: the credential backup-password or backup_password_file"
        )
    if shutil.which("restic") is None:
        raise RepairRefused("restic is not installed (apt-get install restic)")
    env = dict(os.environ, RESTIC_REPOSITORY=repo, RESTIC_PASSWORD=password)
    env.setdefault("RESTIC_CACHE_DIR", str(settings.data_dir / "backup" / ".restic-cache"))
    return repo, env


def to_repair(db: Database, only: list[int] | None = None) -> list[tuple[int, str, str, int]]:
    """Committed parts whose latest fixity check did not pass (id, location, sha256, size),
    in id order; ``only``: of these part ids."""
    rows = db.read().execute(
        "SELECT x.id, x.path, x.sha256, x.size FROM parts x"
        " JOIN (SELECT part_pk, MAX(id) AS id FROM fixity_events GROUP BY part_pk) last"
        "   ON last.part_pk = x.id"
        " JOIN fixity_events f ON f.id = last.id"
        " WHERE f.outcome <> 'pass' AND x.state = 'committed' ORDER BY x.id"
    )
    found = [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
    return [p for p in found if only is None or p[0] in only]


class _Sources:
    """Where good copies come from, opened on first need (a run over local parts only never
    asks for the backup store's keys, and the other way round)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._store: objects.ObjectStore | None = None
        self._backup: objects.ObjectStore | None = None
        self._restic: tuple[str, dict[str, str]] | None = None

    def stores(self) -> tuple[objects.ObjectStore, objects.ObjectStore]:
        if self._store is None:
            store = objects.store_for(self.settings)
            if not isinstance(store, objects.ObjectStore):
                raise ValueError("the part is on an object store, but store_url is not set")
            self._backup = objects.backup_store_for(self.settings)
            self._store = store
        assert self._backup is not None
        return self._store, self._backup

    def restic(self) -> tuple[str, dict[str, str]]:
        if self._restic is None:
            self._restic = restic_env(self.settings)
        return self._restic


def _dump(repo_env: tuple[str, dict[str, str]], path: str, dest: Path) -> tuple[str, int]:
    """``restic dump`` of ``path`` from the latest sohoa snapshot into ``dest``: its SHA-256
    and size. FileNotFoundError when no snapshot holds it; RepairRefused when restic fails
    otherwise (the repository cannot be reached or opened)."""
    repo, env = repo_env
    digest, total = hashlib.sha256(), 0
    with dest.open("wb") as out, tempfile.TemporaryFile("w+") as err:
        restic = subprocess.Popen(
            ["restic", "dump", "--tag", "sohoa", "latest", path],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,  # a file, not a pipe: read after, it cannot fill and stall restic
        )
        assert restic.stdout is not None
        with restic.stdout:
            while block := restic.stdout.read(HASH_BLOCK):  # hashed as written
                digest.update(block)
                out.write(block)
                total += len(block)
        code = restic.wait()
        err.seek(0)
        said = err.read()
    if code != 0:
        lines = said.strip().splitlines()
        last = lines[-1] if lines else f"exit {code}"
        if "not found" in said or "no matching" in said.lower():
            raise FileNotFoundError(f"{path}: not in the latest snapshot of {repo} ({last})")
        raise RepairRefused(f"restic dump from {repo} failed: {last}")
    return digest.hexdigest(), total


def _put_file(path: Path, staged: Path) -> None:
    """``staged`` (in ``path``'s folder) renamed over ``path``, its mode kept, fsynced."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o640
    os.chmod(staged, mode)
    with staged.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(staged, path)
    fsync_dir(path.parent)


def _one(sources: _Sources, pk: int, location: str, sha256: str, size: int) -> tuple[bool, str]:
    """Repair one part: (True, where the good copy came from) or (False, why not)."""
    where = objects.split_location(location)
    if where is not None:  # on the object store
        store, backup = sources.stores()
        key = where[1]
        backup_key = backup.target.prefix + key
        store.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store.root, prefix=".repair-")
        os.close(fd)
        staged = Path(name)
        try:
            try:
                got = backup.download(backup_key, staged)
            except FileNotFoundError:
                return False, f"the backup store has no {backup_key}"
            if got != (sha256, size):
                return False, f"the backup's {backup_key} does not hash as recorded either"
            store.upload(staged, key, sha256, size, replace=True)
        finally:
            staged.unlink(missing_ok=True)
        return True, f"from the backup store's {backup_key}"
    path = Path(location)
    make_dirs(path.parent)  # a missing file's folder too, durably
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.repair-")
    os.close(fd)
    staged = Path(name)
    try:
        repo_env = sources.restic()
        try:
            got = _dump(repo_env, location, staged)
        except FileNotFoundError:
            return False, f"not in the latest snapshot of {repo_env[0]} (committed after it?)"
        if got != (sha256, size):
            return False, f"the snapshot's copy in {repo_env[0]} does not hash as recorded either"
        _put_file(path, staged)
    finally:
        staged.unlink(missing_ok=True)
    return True, f"from the latest snapshot of {repo_env[0]}"


def repair(
    db: Database,
    settings: ServerSettings,
    *,
    only: list[int] | None = None,
    say: Callable[[str], None] = print,
) -> Repair:
    """Bring back every part whose latest fixity check did not pass (``only``: of these
    ids) from the backups (module docstring), check it again and record the check. Raises
    RepairRefused (a store or restic cannot be reached: nothing half done is recorded; run
    again) and ValueError (a backup is not configured)."""
    report = Repair()
    sources = _Sources(settings)
    agent = fixity.agent_name("fixity repair")
    for pk, location, sha256, size in to_repair(db, only):
        try:
            fixed, how = _one(sources, pk, location, sha256, size)
        except objects.DamagedSource as exc:
            fixed, how = False, str(exc)
        except objects.ObjectStoreError as exc:
            why = f"{exc.en} ({exc})" if exc.cause != "other" else str(exc)
            raise RepairRefused(f"part {pk}: {why}") from exc
        if not fixed:
            line = f"part {pk} ({location}): {how}"
            report.not_repaired.append(line)
            say(f"NOT REPAIRED {line}")
            continue
        check, _ = fixity.check_file(pk, location, sha256)
        fixity.record(db, [check], agent, "fixity repair", f"part {pk}")
        if not check.ok:
            line = f"part {pk} ({location}): put back {how}, but it does not read back right"
            report.not_repaired.append(line)
            say(f"NOT REPAIRED {line}")
            continue
        audit.record(db, ACTOR, "fixity.repair", f"part {pk}", {"sha256": sha256, "from": how})
        line = f"part {pk} ({location}): {how}"
        report.repaired.append(line)
        say(f"repaired {line}")
    return report
