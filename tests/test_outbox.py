"""agent.outbox.outbox and its atomic TinyDB storage: the edge's durable source of truth."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from tinydb import TinyDB

from agent.errors import StorageError
from agent.outbox import outbox as outbox_mod
from agent.outbox import storage
from agent.outbox.outbox import AtomicJSONStorage, Outbox, OutboxLocked

REPO = Path(__file__).resolve().parents[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha(path.read_bytes())


def add(ob: Outbox, batch_id: str, data: bytes, **kw: object) -> outbox_mod.PageRecord:
    fields: dict[str, object] = {
        "extension": "png",
        "media_type": "image/png",
        "dpi": 300,
        "width_px": 2480,
        "height_px": 3508,
        "colour": True,
    }
    fields.update(kw)
    return ob.add_capture(batch_id, data, **fields)  # type: ignore[arg-type]


def process(ob: Outbox, page: outbox_mod.PageRecord, work: Path) -> outbox_mod.PageRecord:
    """Pretend the pipeline made a text part and an archival part in a work folder."""
    work.mkdir(parents=True, exist_ok=True)
    text = work / "page.txt"
    text.write_text(f"Trang {page.page_no}: Khai thác khoáng sản", encoding="utf-8")
    archival = work / "page.jpg"
    archival.write_bytes(b"\xff\xd8" + os.urandom(3000) + b"\xff\xd9")
    return ob.record_processed(
        page.batch_id,
        page.page_id,
        parts={"text": text, "archival": archival},
        media_types={"text": "text/plain; charset=utf-8", "archival": "image/jpeg"},
        flags=("skewed",),
        decisions={"deskew_deg": 1.5},
        ocr_confidence=91.0,
    )


def stray_temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{storage.TEMP_PREFIX}*") if p.is_file()]


# -- AtomicJSONStorage --------------------------------------------------------------------


def test_atomic_storage_round_trip_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    db = TinyDB(str(path), storage=AtomicJSONStorage)
    db.insert({"tên": "Sổ hộ tịch", "n": 1})
    db.insert({"tên": "Khoáng sản", "n": 2})
    db.close()
    # Compact UTF-8 JSON, not \\u escapes, and no temp file beside it.
    raw = path.read_bytes()
    assert "Sổ hộ tịch".encode() in raw
    assert json.loads(raw)["_default"]["2"] == {"tên": "Khoáng sản", "n": 2}
    assert stray_temps(tmp_path) == []
    again = TinyDB(str(path), storage=AtomicJSONStorage)
    assert sorted(d["n"] for d in again.all()) == [1, 2]


def test_atomic_storage_replaces_the_file(tmp_path: Path) -> None:
    """A write makes a new inode (temp + rename), never rewrites the old file in place."""
    path = tmp_path / "db.json"
    db = TinyDB(str(path), storage=AtomicJSONStorage)
    db.insert({"n": 1})
    inode = path.stat().st_ino
    db.insert({"n": 2})
    assert path.stat().st_ino != inode


def test_atomic_storage_missing_or_empty_file_reads_as_empty(tmp_path: Path) -> None:
    assert AtomicJSONStorage(str(tmp_path / "none.json")).read() is None
    (tmp_path / "empty.json").write_bytes(b"")
    assert AtomicJSONStorage(str(tmp_path / "empty.json")).read() is None


def test_atomic_storage_read_only_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    TinyDB(str(path), storage=AtomicJSONStorage).insert({"n": 1})
    before = path.read_bytes()
    ro = TinyDB(str(path), storage=AtomicJSONStorage, read_only=True)
    assert ro.all() == [{"n": 1}]
    with pytest.raises(StorageError):
        ro.insert({"n": 2})
    assert path.read_bytes() == before


# -- batches and pages --------------------------------------------------------------------


def test_new_batch_is_recorded_and_survives_reopen(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        batch = ob.new_batch(
            source="scan", scanner="test:0", profile="sane-test", metadata={"ma_ho_so": "H01"}
        )
        assert batch.state == outbox_mod.SCANNING
        assert len(batch.batch_id) == 32
        assert ob.batch_dir(batch.batch_id).is_dir()
        assert ob.batch(batch.batch_id) == batch
        batch = ob.close_batch(batch.batch_id)
    with Outbox(tmp_path) as ob:
        assert ob.batches() == [batch]
        assert ob.batches((outbox_mod.DONE,)) == []
        with pytest.raises(KeyError):
            ob.batch("0" * 32)


def test_add_capture_writes_the_file_before_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(20_000)
    seen: list[tuple[str, bool, str]] = []
    with Outbox(tmp_path) as ob:
        batch = ob.new_batch(source="scan")
        batch_json = ob.batch_dir(batch.batch_id) / outbox_mod.BATCH_FILE
        real_write = AtomicJSONStorage.write

        def spying_write(self: AtomicJSONStorage, docs: dict) -> None:  # type: ignore[type-arg]
            if self.path == batch_json:
                capture = ob.batch_dir(batch.batch_id) / "capture" / "0001.png"
                seen.append(
                    (
                        "batch.json",
                        capture.exists(),
                        file_sha(capture) if capture.exists() else "",
                    )
                )
            real_write(self, docs)

        # A spy on the storage class (the seam TinyDB uses), recording the order only.
        monkeypatch.setattr(AtomicJSONStorage, "write", spying_write)
        page = add(ob, batch.batch_id, data)
        monkeypatch.undo()
        assert seen, "the page record was never written"
        assert seen[0] == ("batch.json", True, sha(data))
        assert page.capture_sha256 == sha(data)
        assert page.capture_size == len(data)
        path = ob.batch_dir(batch.batch_id) / page.capture_file
        assert path.read_bytes() == data
        assert file_sha(path) == page.capture_sha256
    assert stray_temps(tmp_path) == []


def test_pages_are_numbered_in_order_and_survive_reopen(tmp_path: Path) -> None:
    blobs = [os.urandom(n) for n in (1, 500, 7000, 0)]
    with Outbox(tmp_path) as ob:
        a = ob.new_batch(source="scan")
        b = ob.new_batch(source="import")
        pages = [add(ob, a.batch_id, d) for d in blobs]
        other = add(ob, b.batch_id, b"other", extension="tif", media_type="image/tiff")
    assert [p.page_no for p in pages] == [1, 2, 3, 4]
    assert [p.capture_file for p in pages] == [f"capture/000{n}.png" for n in (1, 2, 3, 4)]
    assert len({p.page_id for p in pages} | {other.page_id}) == 5
    assert other.page_no == 1
    assert other.capture_file == "capture/0001.tif"
    with Outbox(tmp_path) as ob:
        again = ob.pages(a.batch_id)
        assert again == pages
        for page, data in zip(again, blobs, strict=True):
            assert page.state == outbox_mod.CAPTURED
            assert (ob.batch_dir(a.batch_id) / page.capture_file).read_bytes() == data
        assert ob.page(b.batch_id, other.page_id) == other
        # Numbering continues after a restart.
        assert add(ob, a.batch_id, b"five").page_no == 5


def test_close_batch_counts_pages(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        batch = ob.new_batch(source="scan")
        for _ in range(3):
            add(ob, batch.batch_id, os.urandom(100))
        closed = ob.close_batch(batch.batch_id, error="paper jam")
        assert closed.state == outbox_mod.CLOSED
        assert closed.page_count == 3
        assert closed.last_error == "paper jam"
        assert [p.page_no for p in ob.iter_pending_pages()] == [1, 2, 3]
    with Outbox(tmp_path) as ob:
        assert ob.batch(batch.batch_id) == closed


def test_discard_empty_batch_only(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        empty = ob.new_batch(source="scan")
        full = ob.new_batch(source="scan")
        add(ob, full.batch_id, b"page")
        ob.discard_empty_batch(empty.batch_id)
        assert not ob.batch_dir(empty.batch_id).exists()
        with pytest.raises(KeyError):
            ob.batch(empty.batch_id)
        with pytest.raises(StorageError):
            ob.discard_empty_batch(full.batch_id)
        assert len(ob.pages(full.batch_id)) == 1
    with Outbox(tmp_path) as ob:
        assert [b.batch_id for b in ob.batches()] == [full.batch_id]


def test_record_processed_copies_parts_and_records_their_sha256(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with Outbox(tmp_path / "data") as ob:
        batch = ob.new_batch(source="scan")
        page = add(ob, batch.batch_id, b"capture bytes")
        done = process(ob, page, work)
        assert done.state == outbox_mod.PROCESSED
        assert done.flags == ("skewed",)
        assert done.decisions == {"deskew_deg": 1.5}
        assert done.ocr_confidence == 91.0
        assert set(done.parts) == {"text", "archival"}
        for name, src in (("text", work / "page.txt"), ("archival", work / "page.jpg")):
            part = done.parts[name]
            stored = ob.batch_dir(batch.batch_id) / part.file
            assert stored.read_bytes() == src.read_bytes()  # a copy...
            assert part.sha256 == sha(src.read_bytes())
            assert part.size == src.stat().st_size
            assert not part.acked
            assert src.exists()  # ...the work folder is the pipeline's to clean
        assert done.parts["text"].file == "text/0001.txt"
        assert done.parts["archival"].media_type == "image/jpeg"
        # The capture is unchanged and not a part unless masters travel.
        assert done.capture_sha256 == sha(b"capture bytes")
        ob.add_capture_part(batch.batch_id, page.page_id)
        capture = ob.page(batch.batch_id, page.page_id).parts["capture"]
        assert (capture.file, capture.sha256) == (page.capture_file, page.capture_sha256)
    with Outbox(tmp_path / "data") as ob:
        assert ob.page(batch.batch_id, page.page_id).parts["text"] == done.parts["text"]


def test_record_failed_keeps_the_capture(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        batch = ob.new_batch(source="scan")
        page = add(ob, batch.batch_id, b"raw")
        ob.record_failed(batch.batch_id, page.page_id, "tesseract crashed")
        failed = ob.page(batch.batch_id, page.page_id)
        assert (failed.state, failed.error) == (outbox_mod.FAILED, "tesseract crashed")
        assert (ob.batch_dir(batch.batch_id) / page.capture_file).read_bytes() == b"raw"


def test_mark_acked_checks_the_sha256_and_is_idempotent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as ob:
        batch = ob.new_batch(source="scan")
        page = process(ob, add(ob, batch.batch_id, b"capture"), tmp_path / "work")
        text = page.parts["text"]
        bid, pid = batch.batch_id, page.page_id

        assert ob.mark_acked(bid, pid, "text", sha(b"something else")) is False
        assert ob.mark_acked(bid, pid, "text", text.sha256.upper()) is False
        assert ob.mark_acked(bid, pid, "thumb", text.sha256) is False  # not a part we hold
        assert ob.mark_acked(bid, pid, "bogus", text.sha256) is False
        # Without SOHOA_SYNC_MASTERS the capture is not a part: its receipt deletes nothing.
        assert ob.mark_acked(bid, pid, "capture", page.capture_sha256) is False
        assert ob.page(bid, pid) == page  # nothing changed

        assert ob.mark_acked(bid, pid, "text", text.sha256) is True
        after = ob.page(bid, pid)
        assert after.parts["text"].acked
        assert not after.parts["archival"].acked
        assert ob.mark_acked(bid, pid, "text", text.sha256) is True
        assert ob.page(bid, pid) == after
        # A wrong sha256 on an already acked part is still refused.
        assert ob.mark_acked(bid, pid, "text", sha(b"x")) is False
        with pytest.raises(KeyError):
            ob.mark_acked(bid, "f" * 32, "text", text.sha256)
    with Outbox(tmp_path / "data") as ob:
        assert ob.page(bid, pid).parts["text"].acked


def test_release_acked_files_deletes_only_acked_parts(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as ob:
        batch = ob.new_batch(source="scan")
        bid = batch.batch_id
        one = process(ob, add(ob, bid, b"capture one"), tmp_path / "w1")
        two = process(ob, add(ob, bid, b"capture two"), tmp_path / "w2")
        bdir = ob.batch_dir(bid)

        assert ob.release_acked_files(bid) == 0
        assert ob.mark_acked(bid, one.page_id, "text", one.parts["text"].sha256)
        assert ob.mark_acked(bid, one.page_id, "archival", one.parts["archival"].sha256)
        freed = ob.release_acked_files(bid)
        assert freed == one.parts["text"].size + one.parts["archival"].size
        assert not (bdir / one.parts["text"].file).exists()
        assert not (bdir / one.parts["archival"].file).exists()
        # Every part that travels is acked, but the capture was never sent: it stays.
        assert (bdir / one.capture_file).read_bytes() == b"capture one"
        # Page two has no receipt: all its files stay.
        for rel in (two.capture_file, two.parts["text"].file, two.parts["archival"].file):
            assert (bdir / rel).exists()
        assert ob.release_acked_files(bid) == 0  # idempotent

        # With masters syncing, the capture goes only once the capture part is acked.
        ob.add_capture_part(bid, one.page_id)
        assert ob.release_acked_files(bid) == 0
        assert (bdir / one.capture_file).exists()
        assert ob.mark_acked(bid, one.page_id, "capture", sha(b"capture one"))
        assert ob.release_acked_files(bid) == len(b"capture one")
        assert not (bdir / one.capture_file).exists()
        assert (bdir / two.capture_file).exists()
        # The records stay: they say what the archive holds.
        assert {p.page_id for p in ob.pages(bid)} == {one.page_id, two.page_id}


# -- one writer, many readers -------------------------------------------------------------


def test_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path):
        with pytest.raises(OutboxLocked):
            Outbox(tmp_path)
        with pytest.raises(OutboxLocked):  # still refused: the failed attempt kept nothing
            Outbox(tmp_path)
    with Outbox(tmp_path) as ob:  # released on close
        assert ob.batches() == []


_TRY_OPEN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent.outbox.outbox import Outbox, OutboxLocked
    try:
        Outbox(Path(sys.argv[1])).close()
    except OutboxLocked as exc:
        print("locked", exc.key)
        sys.exit(3)
    print("opened")
    """
)


def _try_open_in_child(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _TRY_OPEN, str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_second_writer_process_is_refused(tmp_path: Path) -> None:
    with Outbox(tmp_path):
        child = _try_open_in_child(tmp_path)
        assert (child.returncode, child.stdout.split()) == (3, ["locked", "outbox_locked"])
    child = _try_open_in_child(tmp_path)
    assert (child.returncode, child.stdout.strip()) == (0, "opened"), child.stderr


def test_read_only_opening_while_a_writer_holds_it(tmp_path: Path) -> None:
    with Outbox(tmp_path) as writer:
        batch = writer.new_batch(source="scan")
        page = add(writer, batch.batch_id, b"page one")
        # A temp file of the live writer must survive a reader's opening.
        live_temp = writer.batch_dir(batch.batch_id) / f"{storage.TEMP_PREFIX}batch.json.1"
        live_temp.write_bytes(b"half")
        with Outbox(tmp_path, read_only=True) as reader:
            assert reader.batches() == [batch]
            assert reader.pages(batch.batch_id) == [page]
            with pytest.raises(StorageError):
                reader.update_batch(batch.batch_id, state=outbox_mod.CLOSED)
            with pytest.raises(StorageError):
                add(reader, batch.batch_id, b"never")
        assert live_temp.exists()
        # The writer still works after the reader came and went, and a new reader sees it.
        add(writer, batch.batch_id, b"page two")
        with Outbox(tmp_path, read_only=True) as reader:
            assert [p.page_no for p in reader.pages(batch.batch_id)] == [1, 2]
            assert reader.batch(batch.batch_id).state == outbox_mod.SCANNING


def test_stray_temps_are_removed_at_start_up(tmp_path: Path) -> None:
    with Outbox(tmp_path) as ob:
        batch = ob.new_batch(source="scan")
        page = add(ob, batch.batch_id, b"kept")
    bdir = tmp_path / "batches" / batch.batch_id
    strays = [
        tmp_path / f"{storage.TEMP_PREFIX}index.json.4242",
        bdir / f"{storage.TEMP_PREFIX}batch.json.4242",
        bdir / "capture" / f"{storage.TEMP_PREFIX}0002.png.4242",
    ]
    for path in strays:
        path.write_bytes(b"half-written")
    with Outbox(tmp_path) as ob:
        assert stray_temps(tmp_path) == []
        assert ob.pages(batch.batch_id) == [page]
        assert (bdir / page.capture_file).read_bytes() == b"kept"


# -- SIGKILL ------------------------------------------------------------------------------

# The child scans pages as fast as it can: capture, process, ack some, release, close
# batches. After every add_capture returns it appends "batch page sha" to a log: that is
# the moment the operator would be told the page is stored, so it must survive any kill.
_CHILD = textwrap.dedent(
    """
    import os, random, sys
    from pathlib import Path
    from agent.outbox.outbox import Outbox

    root, log_path, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    ob = Outbox(root)
    work = root.parent / f"work-{seed}"
    work.mkdir(exist_ok=True)
    log = open(log_path, "a", buffering=1)
    print("ready", flush=True)
    while True:
        batch = ob.new_batch(source="scan")
        for _ in range(rng.randint(1, 8)):
            data = rng.randbytes(rng.randint(0, 30_000))
            page = ob.add_capture(batch.batch_id, data, extension="png",
                                  media_type="image/png", dpi=300, width_px=1, height_px=1,
                                  colour=True)
            log.write(f"{batch.batch_id} {page.page_id} {page.capture_sha256}\\n")
        ob.close_batch(batch.batch_id)
        for page in ob.pages(batch.batch_id):
            text = work / "t.txt"
            text.write_text(f"trang {page.page_no} " * rng.randint(1, 50), encoding="utf-8")
            done = ob.record_processed(batch.batch_id, page.page_id, parts={"text": text},
                                       media_types={"text": "text/plain"}, flags=(),
                                       decisions={}, ocr_confidence=None)
            if rng.random() < 0.5:
                ob.mark_acked(batch.batch_id, page.page_id, "text", done.parts["text"].sha256)
        ob.release_acked_files(batch.batch_id)
        ob.update_batch(batch.batch_id, state="ready")
    """
)


def _check_outbox(root: Path, logged: list[str]) -> int:
    """Reopen as the agent would at start-up and check every invariant. Returns pages seen."""
    with Outbox(root) as ob:
        assert stray_temps(root) == []
        recorded = {}
        for batch in ob.batches():
            bdir = ob.batch_dir(batch.batch_id)
            for page in ob.pages(batch.batch_id):
                capture = bdir / page.capture_file
                assert capture.is_file(), f"recorded page without its capture: {capture}"
                assert file_sha(capture) == page.capture_sha256
                assert capture.stat().st_size == page.capture_size
                for part in page.parts.values():
                    path = bdir / part.file
                    if part.acked and part.name != "capture":
                        continue  # may already be released
                    assert path.is_file(), f"recorded part without its file: {path}"
                    assert file_sha(path) == part.sha256
                recorded[(batch.batch_id, page.page_id)] = page.capture_sha256
            assert ob.counts(batch.batch_id) == recount(ob, batch.batch_id)
        for line in logged:
            batch_id, page_id, capture_sha = line.split()
            assert recorded.get((batch_id, page_id)) == capture_sha, "a stored page was lost"
        return len(recorded)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    log_path = tmp_path / "stored.log"
    rng = random.Random(1125)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seen = 0
    for trial in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(root), str(log_path), str(trial)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready == "ready\n", child.stderr.read() if child.stderr else ""
        time.sleep(rng.uniform(0.05, 0.4))
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        logged = log_path.read_text().splitlines() if log_path.exists() else []
        # A kill mid-line leaves a partial last line: that page was not yet confirmed.
        complete = [line for line in logged if len(line.split()) == 3 and len(line) == 130]
        seen = _check_outbox(root, complete)
    assert seen > 100, "the child wrote too little for the kills to mean anything"


def test_a_batch_cut_off_mid_scan_is_closed_with_its_pages_at_restart(tmp_path: Path) -> None:
    # A power cut during a scan: page 1 recorded, page 2's file written but never recorded.
    ob = Outbox(tmp_path)
    batch = ob.new_batch(source="scan")
    add(ob, batch.batch_id, b"page one")
    orphan = ob.batch_dir(batch.batch_id) / "capture" / "0002.png"
    orphan.write_bytes(b"half a page")
    empty = ob.new_batch(source="scan")
    ob.close()

    ob = Outbox(tmp_path)
    recovered = ob.batch(batch.batch_id)
    assert recovered.state == outbox_mod.CLOSED
    assert recovered.last_error == "interrupted"
    assert [p.page_no for p in ob.pages(batch.batch_id)] == [1]
    assert not orphan.exists()
    with pytest.raises(KeyError):
        ob.batch(empty.batch_id)
    assert [p.page_no for p in ob.iter_pending_pages()] == [1]
    ob.close()


# -- per-batch counters -------------------------------------------------------------------


def recount(ob: Outbox, batch_id: str) -> outbox_mod.BatchCounts:
    """The counters the slow way: from every PageRecord, as status used to."""
    pages = ob.pages(batch_id)
    parts = [p for page in pages for p in page.parts.values()]
    return outbox_mod.BatchCounts(
        pages=len(pages),
        pages_captured=sum(1 for p in pages if p.state == outbox_mod.CAPTURED),
        pages_unsent=sum(
            1 for p in pages if not p.parts or not all(x.acked for x in p.parts.values())
        ),
        parts_total=len(parts),
        parts_acked=sum(1 for p in parts if p.acked),
        bytes_unsent=sum(p.size for p in parts if not p.acked),
        captures_kept=sum(
            1 for p in pages if not ("capture" in p.parts and p.parts["capture"].acked)
        ),
    )


def _assert_counts_exact(ob: Outbox) -> None:
    listed = dict((b.batch_id, c) for b, c in ob.batches_with_counts())
    assert set(listed) == {b.batch_id for b in ob.batches()}
    for batch_id, counts in listed.items():
        assert counts == recount(ob, batch_id) == ob.counts(batch_id), batch_id


def test_counters_equal_a_full_recount_after_random_operations(tmp_path: Path) -> None:
    rng = random.Random(3)
    root = tmp_path / "data"
    ob = Outbox(root)
    for step in range(250):
        batches = ob.batches()
        pages = [p for b in batches for p in ob.pages(b.batch_id)]
        op = rng.choice(["new", "add", "add", "process", "fail", "ack", "ack", "bad_ack",
                         "master", "release", "state", "discard", "reopen"])  # fmt: skip
        if op == "new" or not batches:
            ob.new_batch(source="scan")
        elif op == "add":
            add(ob, rng.choice(batches).batch_id, rng.randbytes(rng.randint(0, 500)))
        elif op == "process" and pages:
            process(ob, rng.choice(pages), tmp_path / f"work{step}")
        elif op == "fail" and pages:
            page = rng.choice(pages)
            ob.record_failed(page.batch_id, page.page_id, "tesseract crashed")
        elif op in ("ack", "bad_ack") and pages:
            page = rng.choice(pages)
            if page.parts:
                part = rng.choice(list(page.parts.values()))
                sha256 = part.sha256 if op == "ack" else sha(b"other bytes")
                assert ob.mark_acked(page.batch_id, page.page_id, part.name, sha256) == (
                    op == "ack"
                )
        elif op == "master" and pages:
            page = rng.choice(pages)
            ob.add_capture_part(page.batch_id, page.page_id)
        elif op == "release":
            ob.release_acked_files(rng.choice(batches).batch_id)
        elif op == "state":
            state = rng.choice([outbox_mod.READY, outbox_mod.DONE, outbox_mod.QUARANTINED])
            ob.update_batch(rng.choice(batches).batch_id, state=state)
        elif op == "discard":
            empty = [b for b in batches if not ob.pages(b.batch_id)]
            if empty:
                ob.discard_empty_batch(empty[0].batch_id)
        elif op == "reopen":
            ob.close()
            ob = Outbox(root)
        _assert_counts_exact(ob)
        if step % 25 == 0:  # `status` in another process, while rows are stale
            with Outbox(root, read_only=True) as reader:
                _assert_counts_exact(reader)
    with Outbox(root, read_only=True) as reader:  # another process, e.g. `status`
        _assert_counts_exact(reader)
    assert sum(c.pages for _, c in ob.batches_with_counts()) > 20
    ob.close()


# The child acknowledges a part and is SIGKILLed right after the batch file is on disk,
# before the index row gets the new counters: the worst moment for them.
_CRASH_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from agent.outbox import outbox

    real = outbox.storage.write_bytes

    def write_then_die(path, data, **kw):
        result = real(path, data, **kw)
        if path.name == outbox.BATCH_FILE:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    outbox.storage.write_bytes = write_then_die  # the crash, at the storage seam
    ob = outbox.Outbox(Path(sys.argv[1]))
    ob.mark_acked(sys.argv[2], sys.argv[3], "text", sys.argv[4])
    """
)


def test_a_crash_between_the_page_write_and_the_counters_leaves_them_stale_not_wrong(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    with Outbox(root) as ob:
        batch = ob.new_batch(source="scan")
        page = process(ob, add(ob, batch.batch_id, b"page"), tmp_path / "work")
        before = ob.counts(batch.batch_id)
    assert before.parts_acked == 0
    child = subprocess.run(
        [sys.executable, "-c", _CRASH_CHILD, str(root), batch.batch_id, page.page_id,
         page.parts["text"].sha256],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
    )  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    index = json.loads((root / outbox_mod.INDEX_FILE).read_text())
    (row,) = index["_default"].values()
    assert row["counts"] is None  # stale, not the old counters
    with Outbox(root, read_only=True) as reader:  # `status` while the agent is down
        assert reader.counts(batch.batch_id).parts_acked == 1
        _assert_counts_exact(reader)
    with Outbox(root) as ob:  # the next start repairs the row
        _assert_counts_exact(ob)
    index = json.loads((root / outbox_mod.INDEX_FILE).read_text())
    (row,) = index["_default"].values()
    assert row["counts"]["parts_acked"] == 1


def _rows(root: Path) -> dict[str, Any]:
    index = json.loads((root / outbox_mod.INDEX_FILE).read_text())
    return {row["batch_id"]: row for row in index["_default"].values()}


def test_a_busy_batch_costs_no_index_write_per_page_and_its_row_is_never_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    ob = Outbox(root)
    batch = ob.new_batch(source="scan")
    add(ob, batch.batch_id, b"one")
    stale_at = (root / outbox_mod.INDEX_FILE).stat().st_mtime_ns
    assert _rows(root)[batch.batch_id]["counts"] is None  # stale while the batch changes
    for n in range(5):
        add(ob, batch.batch_id, b"page %d" % n)
    assert (root / outbox_mod.INDEX_FILE).stat().st_mtime_ns == stale_at  # not rewritten
    assert ob.counts(batch.batch_id).pages == 6  # exact in the writing process
    ob.update_batch(batch.batch_id, state=outbox_mod.CLOSED)  # the row is written: clean
    assert _rows(root)[batch.batch_id]["counts"]["pages"] == 6
    monkeypatch.setattr(outbox_mod, "COUNTS_FLUSH_EVERY", 0.0)
    add(ob, batch.batch_id, b"seven")  # stale for "long enough": cleaned after the write
    assert _rows(root)[batch.batch_id]["counts"]["pages"] == 7
    ob.close()


def test_an_outbox_written_by_a_newer_agent_is_refused_and_kept(tmp_path: Path) -> None:
    """After a rollback the older agent must not read (or 'recover') an outbox whose layout it
    does not know: one clear refusal, nothing changed; the format is recorded on first use."""
    from harness import agent_env, run_agent

    from agent.outbox.outbox import OUTBOX_FORMAT, OutboxNewer

    data = tmp_path / "agent"
    with Outbox(data) as box:
        box.close_batch(box.new_batch(source="import").batch_id)
    index = TinyDB(str(data / "index.json"), storage=AtomicJSONStorage)
    assert index.table("meta").all() == [{"format": OUTBOX_FORMAT}]
    index.table("meta").update({"format": OUTBOX_FORMAT + 1}, doc_ids=[1])  # a newer agent's
    index.close()
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file() and p.name != "lock"}
    for read_only in (False, True):
        with pytest.raises(OutboxNewer) as refused:
            Outbox(data, read_only=read_only)
        assert refused.value.key == "outbox_newer"
    after = {p: p.read_bytes() for p in data.rglob("*") if p.is_file() and p.name != "lock"}
    assert after == before
    # The command line says it in one line (Vietnamese), no traceback, and exits non-zero.
    env = agent_env(data, "mqtt://127.0.0.1:9")
    out = run_agent(env, "status")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "phiên bản sohoa mới hơn" in out.stderr
    # The refusal released the process lock: with the format back, the outbox opens again.
    index = TinyDB(str(data / "index.json"), storage=AtomicJSONStorage)
    index.table("meta").update({"format": OUTBOX_FORMAT}, doc_ids=[1])
    index.close()
    with Outbox(data):
        pass
