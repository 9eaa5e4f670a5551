"""Every subcommand of both CLIs, walked with bad input as an administrator meets it: no
terminal, a missing or unreadable settings file, a data folder that is not a folder, missing
input files, the wrong user. Each must end in one clear line and an exit code the CLI
documents — never a Python traceback."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import BIN

from agent import cli as agent_cli
from server import cli as server_cli

pytestmark = [pytest.mark.slow, pytest.mark.sane]  # `devices` and `scan` open SANE

PROGS = {
    "sohoa-agent": (agent_cli.build_parser(), agent_cli.EXIT_CODES),
    "sohoa-server": (server_cli.build_parser(), server_cli.EXIT_CODES),
}
MISSING = "/nonexistent/sohoa-walk"
# Options a command cannot run without, with a value that is fine on its own.
REQUIRED = {"--role": "viewer", "--user": "an", "--ma-ho-so": "000.00.00.H53.2024.HS-05",
            "--dynsec-file": MISSING + ".json", "--commune": "Xã Tân Phú",
            "--out": MISSING + "-out", "--receiver": "Nguyễn Văn B",
            "--reference": "BB-01/2026", "--fonds": "XL",
            "--to": "s3://sohoa-walk/archive?endpoint=http://127.0.0.1:9"}  # fmt: skip
# The same option with another meaning in one command: (command path, option) -> value.
REQUIRED_FOR = {(("db", "migrate-to-postgresql"), "--to"): "postgresql://sohoa@127.0.0.1:9/sohoa"}
# Never started here: they serve until stopped (checked with bad settings only).
SERVING = {("sohoa-agent", "run"), ("sohoa-server", "run")}


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out = []
            for name, sub in action.choices.items():
                out += _leaves(sub, (*path, name))
            return out
    return [(path, parser)]


def _argv(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command with each required argument filled with something that does not exist."""
    argv = list(path)
    for action in parser._actions:
        if action.option_strings:
            if action.required:
                option = action.option_strings[0]
                value = REQUIRED_FOR.get((path, option), REQUIRED.get(option))
                assert value is not None, f"{path} {option}: add a value to REQUIRED"
                argv += [option, value]
        elif not isinstance(action, argparse._SubParsersAction):
            if action.type is int:
                argv.append("1")  # a page id that is not there
            else:
                argv.append(MISSING if action.type is Path else "xa-missing")
    return argv


COMMANDS = [
    (prog, _argv(path, parser))
    for prog, (root, _) in PROGS.items()
    for path, parser in _leaves(root)
]


def _run(prog: str, argv: list[str], env: dict[str, str], user: str | None = None) -> int:
    cmd = [str(BIN / prog), *argv]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(
        cmd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env["SOHOA_WALK_CWD"],
    )
    said = f"{prog} {' '.join(argv)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert "Traceback" not in out.stderr + out.stdout, said
    assert out.returncode in PROGS[prog][1], said
    assert out.returncode != 70, said  # "unexpected": every one of these is expected
    return out.returncode


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.pop("CREDENTIALS_DIRECTORY", None)
    env.update(
        SOHOA_DEVICE_ID="xa-walk-01",
        SOHOA_MQTT_URL="mqtt://127.0.0.1:9",  # nothing listens: refused at once
        SOHOA_SCANNER="test:0",
        SOHOA_INGEST="false",
        SOHOA_WALK_CWD=str(tmp_path),  # coversheet writes its PDF where it runs
    )
    env.update(extra)
    return env


def test_the_walk_covers_every_subcommand() -> None:
    names = {(prog, argv[0]) for prog, argv in COMMANDS}
    assert ("sohoa-server", "user") in names and ("sohoa-agent", "import-receipts") in names
    assert len(COMMANDS) >= 18


@pytest.mark.parametrize(
    ("prog", "argv"), COMMANDS, ids=lambda x: x if isinstance(x, str) else " ".join(x[:2])
)
def test_missing_settings_file(tmp_path: Path, prog: str, argv: list[str]) -> None:
    code = _run(prog, ["--config", MISSING + ".toml", *argv], _env(tmp_path))
    assert code == 78


@pytest.mark.parametrize(
    ("prog", "argv"), COMMANDS, ids=lambda x: x if isinstance(x, str) else " ".join(x[:2])
)
def test_data_folder_is_a_file(tmp_path: Path, prog: str, argv: list[str]) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder")
    env = _env(tmp_path, SOHOA_DATA_DIR=str(data))
    if (prog, argv[0]) in SERVING:
        env["SOHOA_PORT"] = "1"  # if it got that far, it could not listen either
    _run(prog, argv, env)


@pytest.mark.parametrize(
    ("prog", "argv"),
    [c for c in COMMANDS if (c[0], c[1][0]) not in SERVING],
    ids=lambda x: x if isinstance(x, str) else " ".join(x[:2]),
)
def test_missing_inputs_and_no_terminal(tmp_path: Path, prog: str, argv: list[str]) -> None:
    env = _env(tmp_path, SOHOA_DATA_DIR=str(tmp_path / "data"))
    code = _run(prog, argv, env)
    if MISSING in argv or argv[:2] == ["user", "add"]:
        assert code != 0  # a missing file, or a password with no terminal to ask it on


def test_password_file_missing_or_from_stdin(tmp_path: Path) -> None:
    env = _env(tmp_path, SOHOA_DATA_DIR=str(tmp_path / "data"))
    add = ["user", "add", "an", "--role", "viewer"]
    assert _run("sohoa-server", [*add, "--password-file", MISSING], env) == 74
    out = subprocess.run(
        [str(BIN / "sohoa-server"), *add, "--password-file", "-"],
        env=env, input="correct horse battery\n", capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play root and another user")
@pytest.mark.parametrize(
    ("prog", "argv"),
    [c for c in COMMANDS if (c[0], c[1][0]) not in SERVING],
    ids=lambda x: x if isinstance(x, str) else " ".join(x[:2]),
)
def test_wrong_user(tmp_path: Path, prog: str, argv: list[str]) -> None:
    """Root on the service's data: refused before a root-owned file appears. Another user
    who cannot enter it: one line."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.chown(data, "nobody")
    data.chmod(0o700)
    before = sorted(data.iterdir())
    env = _env(tmp_path, SOHOA_DATA_DIR=str(data))
    code = _run(prog, argv, env)
    if argv[0] not in ("devices", "coversheet"):  # touch no data folder
        assert code == 77
    assert sorted(data.iterdir()) == before
    tmp_path.chmod(0o755)
    shutil.chown(data, "root")
    other = _run(prog, argv, env, user="nobody")
    if argv[0] not in ("devices", "coversheet"):
        assert other != 0
