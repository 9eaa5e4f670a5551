"""Rotating the archive's receipt key with an overlap, no station re-enrolled (issue #14).

The forger first: a "new key" announcement signed by a key the station does not trust, or
altered after signing, is refused and changes nothing. Then: during the overlap receipts
signed by the old and the new key are both accepted, after the cut-over the old key is
refused; and with real processes, a station with pages in flight across the rotation gets
every page archived and deleted only on receipts it could verify."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import (
    TEST_ARCHIVE_KEY,
    Broker,
    ServerProcess,
    agent_env,
    enrol_offline,
    run_agent,
    run_server,
)
from PIL import Image

from agent.uplink import enrol, transfer
from protocol import keyrotation, signing
from protocol.messages import PartState, Receipt
from server.store import keys

DAY = 86400.0
NOW = 1_800_000_000.0


def _receipt(key: Ed25519PrivateKey | None = None) -> Receipt:
    msg = Receipt(
        device_id="xa-a",
        msg_id=uuid.uuid4().hex,
        sent_at=NOW,
        batch_id=uuid.uuid4().hex,
        committed=(
            PartState(page_id=uuid.uuid4().hex, part="text", sha256="0" * 64, committed=True),
        ),
        complete=True,
    )
    if key is None:
        return msg
    return msg.model_copy(update={"signature": signing.sign(msg, key)})


def test_a_forged_new_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    old, new, thief = signing.new_key(), signing.new_key(), signing.new_key()
    pinned = signing.public_key_hex(old)
    # Signed by the thief's own key (consistent in itself, but not a key the station trusts).
    forged = keyrotation.announce(thief, signing.public_key_hex(thief), NOW, NOW + 30 * DAY)
    with pytest.raises(enrol.EnrolError) as err:
        enrol.record_rotation(tmp_path, pinned, forged.encode())
    assert err.value.key == "archive_key_refused"
    # Claiming the archive's key as the signer, signed by the thief.
    claimed = forged.model_copy(update={"old_key": pinned})
    with pytest.raises(enrol.EnrolError):
        enrol.record_rotation(tmp_path, pinned, claimed.encode())
    # The genuine announcement, altered after signing (another new key).
    genuine = keyrotation.announce(old, signing.public_key_hex(new), NOW, NOW + 30 * DAY)
    altered = genuine.model_copy(update={"new_key": signing.public_key_hex(thief)})
    with pytest.raises(enrol.EnrolError):
        enrol.record_rotation(tmp_path, pinned, altered.encode())
    assert not (enrol.enrol_dir(tmp_path) / enrol.ROTATIONS_FILE).exists()
    assert enrol.archive_keys(tmp_path, pinned, NOW) == {pinned}
    # A thief's receipt is still refused.
    assert not transfer.authentic(_receipt(thief), enrol.archive_keys(tmp_path, pinned, NOW))
    # ... and a forged announcement planted in the station's own file is not believed either.
    folder = enrol.enrol_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / enrol.ROTATIONS_FILE).write_text(json.dumps([json.loads(forged.encode())]))
    assert enrol.archive_keys(tmp_path, pinned, NOW) == {pinned}


def test_both_keys_during_the_overlap_only_the_new_after(tmp_path: Path) -> None:
    old, new = signing.new_key(), signing.new_key()
    pinned = signing.public_key_hex(old)
    announced = keyrotation.announce(old, signing.public_key_hex(new), NOW, NOW + 30 * DAY)
    assert enrol.record_rotation(tmp_path, pinned, announced.encode())
    assert not enrol.record_rotation(tmp_path, pinned, announced.encode())  # heard twice: once
    during = enrol.archive_keys(tmp_path, pinned, NOW + DAY)
    assert transfer.authentic(_receipt(old), during)
    assert transfer.authentic(_receipt(new), during)
    after = enrol.archive_keys(tmp_path, pinned, NOW + 31 * DAY)
    assert not transfer.authentic(_receipt(old), after)  # the old key is refused now
    assert transfer.authentic(_receipt(new), after)
    assert not transfer.authentic(_receipt(), after)  # unsigned: never
    # The next rotation must be signed by the new key, not the retired one.
    newer = signing.new_key()
    by_retired = keyrotation.announce(old, signing.public_key_hex(newer), NOW + 40 * DAY,
                                      NOW + 70 * DAY)  # fmt: skip
    chained = keyrotation.announce(new, signing.public_key_hex(newer), NOW + 40 * DAY,
                                   NOW + 70 * DAY)  # fmt: skip
    assert enrol.record_rotation(tmp_path, pinned, chained.encode())
    later = enrol.archive_keys(tmp_path, pinned, NOW + 80 * DAY)
    assert later == {signing.public_key_hex(newer)}
    # The retired key cannot announce one: after its cut-over it is out of the chain.
    chain = [announced, by_retired]
    assert keyrotation.trusted_keys(pinned, chain, NOW + 80 * DAY) == {signing.public_key_hex(new)}


def test_the_server_signs_with_the_old_key_until_the_cut_over(tmp_path: Path) -> None:
    old = keys.load_or_create(tmp_path)
    announced = keys.rotate(tmp_path, 30 * DAY, now=NOW)
    assert announced.old_key == signing.public_key_hex(old)
    with pytest.raises(keys.RotationPending):
        keys.rotate(tmp_path, 30 * DAY, now=NOW + 1)
    during = keys.current(tmp_path, now=NOW + DAY)
    assert signing.public_key_hex(during) == signing.public_key_hex(old)
    assert keys.cutover_due(tmp_path) == NOW + 30 * DAY
    after = keys.current(tmp_path, now=NOW + 30 * DAY)
    assert signing.public_key_hex(after) == announced.new_key
    assert keys.cutover_due(tmp_path) is None
    assert keys.rotation(tmp_path) == announced  # kept: late stations still learn the key
    assert any(p.name.startswith(f"{keys.KEY_FILE}.retired-") for p in tmp_path.iterdir())


def _page(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (400, 300), "white").save(path, dpi=(300, 300))
    return path


@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
def test_rotation_with_pages_in_flight_needs_no_re_enrolment(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(tmp_path / "server", broker.url, enrolled_only=True)
    agent_dir = tmp_path / "agent"
    try:
        enrol_offline(server.data_dir, agent_dir, "xa-rot-01")
        server.start()
        env = agent_env(agent_dir, broker.url, "xa-rot-01")
        old_key = signing.public_key_hex(signing.private_key_from_bytes(TEST_ARCHIVE_KEY))
        assert env["SOHOA_SERVER_PUBLIC_KEY"] == old_key

        run_agent(env, "import", str(_page(tmp_path / "in" / "a.png")), check=True)
        assert run_agent(env, "sync", "--wait", "--timeout", "120").returncode == 0
        # Page B is in flight (scanned, not yet sent) when the archive rotates its key.
        run_agent(env, "import", str(_page(tmp_path / "in" / "b.png")), check=True)
        out = run_server(server, "receipt-key", "--rotate", "30")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().splitlines()[-1] == old_key  # still signing with it
        server.stop()
        server.start()  # as the command says: the restarted server announces the key
        assert run_agent(env, "sync", "--wait", "--timeout", "120").returncode == 0
        run_agent(env, "sync", "--timeout", "20")  # nothing to send: collects commands
        announced = json.loads((agent_dir / "enrolment" / enrol.ROTATIONS_FILE).read_text())
        new_key = announced[0]["new_key"]
        assert announced[0]["old_key"] == old_key and new_key != old_key

        # The archive signs with the new key; the station was never enrolled again.
        out = run_server(server, "receipt-key", "--cut-over")
        assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == new_key
        server.stop()
        server.start()
        run_agent(env, "import", str(_page(tmp_path / "in" / "c.png")), check=True)
        out = run_agent(env, "sync", "--wait", "--timeout", "120")
        assert out.returncode == 0, out.stdout + out.stderr
        status = json.loads(run_agent(env, "status", "--json", check=True).stdout)
        assert status["pages_waiting_sync"] == 0
        batches = server.get_json("/api/v1/batches")
        assert len(batches) == 3 and {b["device_id"] for b in batches} == {"xa-rot-01"}
        assert time.time() < announced[0]["cutover_at"]  # all of it inside the overlap
    finally:
        server.stop()
        broker.stop()
