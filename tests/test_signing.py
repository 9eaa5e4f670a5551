"""Receipts only the archive can make: Ed25519 signatures on receipts and batch states."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from harness import BIN, Broker, ServerProcess, agent_env, run_agent
from PIL import Image

from protocol import signing
from protocol.messages import PartState, Receipt

SHA = "a" * 64
ID = "b" * 32


def _receipt(**kw: object) -> Receipt:
    fields: dict[str, object] = {
        "device_id": "xa-a",
        "msg_id": ID,
        "sent_at": 1.0,
        "batch_id": ID,
        "committed": (PartState(page_id=ID, part="text", sha256=SHA, committed=True),),
    }
    fields.update(kw)
    return Receipt.model_validate(fields)


def test_a_signature_binds_every_field() -> None:
    key = signing.new_key()
    public = signing.public_key_hex(key)
    receipt = _receipt()
    sig = signing.sign(receipt, key)
    assert signing.verify(receipt, sig, public)
    signed = receipt.model_copy(update={"signature": sig})
    assert signing.verify(signed, signed.signature, public)  # the field itself is not signed
    tampered = _receipt(
        committed=(PartState(page_id=ID, part="archival", sha256=SHA, committed=True),)
    )
    assert not signing.verify(tampered, sig, public)
    assert not signing.verify(_receipt(device_id="xa-b"), sig, public)
    assert not signing.verify(receipt, sig, signing.public_key_hex(signing.new_key()))
    assert not signing.verify(receipt, None, public)
    assert not signing.verify(receipt, "zz", public)


@pytest.mark.mqtt
@pytest.mark.slow
def test_the_agent_deletes_nothing_on_receipts_it_cannot_verify(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "receipt-key"],
        env=server.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    real_key = out.stdout.strip()
    assert len(real_key) == 64
    src = tmp_path / "a.png"
    Image.new("RGB", (300, 200), "white").save(src, dpi=(300, 300))

    wrong = agent_env(
        tmp_path / "wrong",
        broker.url,
        device_id="xa-wrong",
        SOHOA_SERVER_PUBLIC_KEY=signing.public_key_hex(signing.new_key()),
    )
    run_agent(wrong, "import", str(src), check=True)
    res = run_agent(wrong, "-v", "sync", "--wait", "--timeout", "10")
    assert res.returncode == 75
    assert "bad or missing server signature" in res.stderr
    st = json.loads(run_agent(wrong, "status", "--json", check=True).stdout)
    assert st["pages_waiting_sync"] == 1  # the archive has it, but we could not verify that
    assert list((tmp_path / "wrong" / "batches").glob("*/text/*"))  # nothing was released

    right = agent_env(
        tmp_path / "right", broker.url, device_id="xa-right", SOHOA_SERVER_PUBLIC_KEY=real_key
    )
    run_agent(right, "import", str(src), check=True)
    run_agent(right, "sync", "--wait", "--timeout", "60", check=True)
    st = json.loads(run_agent(right, "status", "--json", check=True).stdout)
    assert st["pages_waiting_sync"] == 0
