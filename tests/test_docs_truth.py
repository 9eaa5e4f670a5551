"""The docs an administrator follows name only things that exist.

Every ``sohoa-agent …`` / ``sohoa-server …`` command written in the README, ``docs/`` or
``systemd/`` is checked against the real argparse (each subcommand and each flag); every
credential a unit loads or a doc names is one the settings read, under the same name; every
``SOHOA_*`` variable a doc names is one the settings read.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

from agent import cli as agent_cli
from agent import config as agent_config
from server import cli as server_cli
from server import config as server_config

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
UNITS = sorted((REPO / "systemd").rglob("*.service"))
PARSERS = {"sohoa-agent": agent_cli.build_parser(), "sohoa-server": server_cli.build_parser()}
# Commands the runbooks name before the work that adds them has landed (issue #14 adds
# `device`). The test fails once one exists, so the entry is removed with its arrival.
COMING: dict[tuple[str, str], str] = {}

# The program at the start of a line, after a space or "(", or as .../bin/<program> — not a
# folder such as /var/lib/sohoa-agent.
COMMAND = re.compile(r"(?:^|(?<=[\s(])|(?<=bin/))(sohoa-agent|sohoa-server)(?=\s|$)(.*)", re.M)


def _code(text: str) -> list[str]:
    """Fenced code blocks and inline code spans of a markdown text."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    spans = [s.replace("\n", " ") for s in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", prose)]
    return blocks + spans


def _commands(code: str) -> list[tuple[str, list[str]]]:
    found = []
    code = re.sub(r"(^|\s)#.*$", "", code, flags=re.M)  # shell comments are prose
    for m in COMMAND.finditer(code):
        rest = re.split(r"\s#|\s&&\s|\s;\s|\s\|\s|\s<\s|\s>\s|\s2?>", m.group(2))[0]
        found.append((m.group(1), rest.split()))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings}


def check(prog: str, tokens: list[str]) -> str | None:
    """None if the command exists as written, else what is wrong."""
    parser = PARSERS[prog]
    options = _options(parser)
    path = [prog]
    skip = False
    for raw in tokens:
        if skip:
            skip = False
            continue
        token = raw.strip("[]()`,.:")
        if not token or token in ("…", "...") or raw.startswith("<"):
            break
        if token.startswith("-"):
            flag, _, value = token.partition("=")
            if flag not in options:
                return f"{' '.join(path)}: no option {flag}"
            skip = options[flag].nargs != 0 and not value
            continue
        subs = _subparsers(parser)
        if not subs:
            continue  # a positional argument (PATH, NAME…)
        if token not in subs:
            if (prog, token) in COMING:
                return None
            return f"{' '.join(path)}: no command {token!r} (has: {', '.join(subs)})"
        path.append(token)
        parser = subs[token]
        options |= _options(parser)
    return None


def _documented() -> list[tuple[str, str, list[str]]]:
    out = []
    for doc in DOCS:
        for code in _code(doc.read_text(encoding="utf-8")):
            out += [(doc.name, prog, tokens) for prog, tokens in _commands(code)]
    for unit in UNITS:
        for line in unit.read_text().splitlines():
            if line.startswith("Exec"):
                out += [(unit.name, prog, tokens) for prog, tokens in _commands(line)]
    return out


def test_the_checker_catches_what_does_not_exist() -> None:
    assert check("sohoa-server", ["user", "add", "NAME", "--role", "admin"]) is None
    assert check("sohoa-server", ["--config", "/etc/x.toml", "audit", "verify"]) is None
    assert check("sohoa-server", ["user", "add", "x", "--pasword-file", "f"]) is not None
    assert check("sohoa-server", ["users", "add"]) is not None
    assert check("sohoa-agent", ["sync", "--wait", "--timeout", "60"]) is None
    assert check("sohoa-agent", ["sync", "--json"]) is not None
    assert _commands("$ sudo -u sohoa sohoa-server token create --user an  # one") == [
        ("sohoa-server", ["token", "create", "--user", "an"])
    ]


def test_every_documented_command_and_flag_exists() -> None:
    documented = _documented()
    assert len(documented) > 20, "the docs lost their commands?"
    wrong = [f"{where}: {err}" for where, p, t in documented if (err := check(p, t))]
    assert not wrong, "\n".join(wrong)


def test_coming_commands_are_still_coming() -> None:
    arrived = [f"{p} {c}" for p, c in sorted(COMING) if c in _subparsers(PARSERS[p])]
    assert not arrived, f"these exist now: remove them from COMING: {arrived}"


def test_units_load_credentials_under_the_names_the_settings_read() -> None:
    names = {
        "sohoa-agent.service": agent_config,
        "sohoa-server.service": server_config,
        "sohoa-fixity.service": server_config,  # runs `sohoa-server fixity check`
        "sohoa-backup.service": server_config,  # runs `sohoa-server backup`
    }
    for unit in UNITS:
        module = names[unit.name]
        loaded = re.findall(r"^LoadCredential=([^:\n]+):(\S+)$", unit.read_text(), flags=re.M)
        assert loaded or not module.CREDENTIALS, unit.name
        for name, path in loaded:
            assert name in module.CREDENTIALS, f"{unit.name}: {name} is read by nothing"
            assert Path(path) == module.CREDENTIALS_DIR / name, f"{unit.name}: {path}"


def test_the_station_password_has_one_place_and_the_unit_and_docs_agree(tmp_path: Path) -> None:
    """Issue #16: the agent unit loaded the credential mqtt-password from /etc/sohoa while
    enrolment keeps the password in the data dir (and a LoadCredential= whose file is missing
    stops the unit). Now: the place enrolment writes, under the unit's own state directory,
    is the one the docs name, and the agent reads it from there."""
    from agent.uplink import enrol

    unit = (REPO / "systemd" / "sohoa-agent.service").read_text()
    assert "LoadCredential" not in re.sub(r"(?m)^#.*$", "", unit)
    assert agent_config.CREDENTIALS == ()
    data_dir = re.search(r"(?m)^Environment=SOHOA_DATA_DIR=(\S+)$", unit)
    state = re.search(r"(?m)^StateDirectory=(\S+)$", unit)
    assert data_dir and state and data_dir.group(1) == f"/var/lib/{state.group(1)}"
    place = f"{data_dir.group(1)}/{enrol.ENROL_DIR}/{enrol.PASSWORD_FILE}"
    for doc in (
        REPO / "README.md",
        REPO / "docs" / "operations.md",
        REPO / "systemd" / "sohoa-agent.service",
    ):
        assert place in doc.read_text(encoding="utf-8"), f"{doc.name} does not name {place}"
    # What the enrolment leaves is what the settings read, with no credentials directory.
    folder = enrol.enrol_dir(tmp_path)
    folder.mkdir()
    (folder / enrol.PASSWORD_FILE).write_text("pw-from-enrolment")
    (folder / enrol.STATE_FILE).write_text(
        '{"format": "sohoa-enrolment", "device_id": "xa-a", "mqtt_url": "mqtt://xa-a@localhost:1883",'
        f' "mqtt_password_file": "{folder / enrol.PASSWORD_FILE}"}}'
    )
    settings = agent_config.load(None, {"SOHOA_DATA_DIR": str(tmp_path)})
    assert settings.broker().password == "pw-from-enrolment"


def test_documented_credentials_and_variables_exist() -> None:
    credentials = set(agent_config.CREDENTIALS) | set(server_config.CREDENTIALS)
    credentials |= set(server_config.OBJECT_STORE_CREDENTIALS)
    credentials |= set(server_config.BACKUP_STORE_CREDENTIALS)
    variables = set()  # what some code reads: the settings, and a few literals (demo ports)
    for source in [
        *REPO.glob("agent/**/*.py"),
        *REPO.glob("server/**/*.py"),
        *REPO.glob("scripts/*"),
    ]:
        variables |= set(re.findall(r"[\"'](SOHOA_[A-Z_]+)[\"']", source.read_text()))
    for settings in (agent_config.AgentSettings, server_config.ServerSettings):
        variables |= {"SOHOA_" + name.upper() for name in settings.model_fields}
    wrong = []
    for doc in [*DOCS, *UNITS, *sorted((REPO / "systemd").rglob("*.conf"))]:
        text = doc.read_text(encoding="utf-8")
        for name in re.findall(r"credentials/([a-z][a-z0-9-]*)", text):
            if name not in credentials:
                wrong.append(f"{doc.name}: credential {name}")
        for var in re.findall(r"\bSOHOA_[A-Z_]+[A-Z]\b", text):
            if var not in variables:
                wrong.append(f"{doc.name}: variable {var}")
    assert not wrong, "\n".join(wrong)


def test_install_script_installs_what_the_repository_ships() -> None:
    """scripts/install-server.sh cannot run here (it owns a whole machine); what it installs
    must at least be the files, credentials and paths the rest of the repository names."""
    path = REPO / "scripts" / "install-server.sh"
    script = path.read_text()
    assert "set -euo pipefail" in script
    subprocess.run(["bash", "-n", str(path)], check=True)  # it parses
    for shipped in ("systemd/sohoa-server.service", "systemd/mosquitto/sohoa.conf",
                    "systemd/nginx/sohoa.conf"):  # fmt: skip
        assert f"$PREFIX/{shipped}" in script, shipped
        assert (REPO / shipped).exists()
    for name in server_config.CREDENTIALS:  # made by the script, or by broker init
        assert f"secret {name}" in script or f'password-file "$CRED/{name}"' in script, name
    site = (REPO / "systemd" / "nginx" / "sohoa.conf").read_text()
    for path in re.findall(r"ssl_certificate(?:_key)?\s+(\S+);", site):
        assert path.replace("/etc/sohoa", "$ETC") in script, path
    unit = (REPO / "systemd" / "sohoa-server.service").read_text()
    assert "User=sohoa" in unit and "adduser --system --group" in script
    toml = re.search(r"cat > \"\$ETC/server.toml\" <<TOML\n(.*?)\nTOML", script, re.S)
    assert toml is not None
    import tomllib

    text = toml.group(1).replace("$HOST", "archive.example.vn")
    settings = server_config.ServerSettings.model_validate(tomllib.loads(text))
    assert settings.trusted_proxies == ["127.0.0.1"]  # nginx on the same host
    assert settings.mqtt_url.startswith("mqtt://sohoa-server@")  # the broker user it creates
    assert settings.database_url == "postgresql://sohoa@localhost:5432/sohoa"


def test_the_object_stores_credential_names_are_the_ones_read() -> None:
    from server.store import objects

    for which, names in (
        ("s3", server_config.OBJECT_STORE_CREDENTIALS),
        ("backup-s3", server_config.BACKUP_STORE_CREDENTIALS),
    ):
        asked: list[str] = []

        def secret(name: str, asked: list[str] = asked) -> str:
            asked.append(name)
            return "x"

        objects.credentials_from({}, secret, which)
        assert tuple(asked) == names
