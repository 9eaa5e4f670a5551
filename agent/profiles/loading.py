"""Reading profile files: the packaged `hw_profiles/`, then a site's own folder.

This module owns where profiles come from and which one wins (same id: the site's), and
turns a bad file into a ProfileError naming it. It must not match a device to a profile or
interpret what a profile says.
"""

from __future__ import annotations

import logging
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from agent.profiles.models import BoardProfile, ButtonProfile, ProfileError, ScannerProfile

log = logging.getLogger(__name__)

# Site profiles live here and are read after the packaged ones (same id: the site wins).
SITE_PROFILE_DIR = Path("/etc/sohoa/hw_profiles")

_P = TypeVar("_P", ScannerProfile, BoardProfile, ButtonProfile)


def _toml_files(folder: Traversable | Path) -> list[tuple[str, bytes]]:
    if not folder.is_dir():
        return []
    found = [(entry.name, entry.read_bytes()) for entry in folder.iterdir()]
    return sorted((name, data) for name, data in found if name.endswith(".toml"))


def _packaged_dirs(subdir: str) -> list[Traversable | Path]:
    try:
        return [resources.files("hw_profiles").joinpath(subdir)]
    except NotADirectoryError:
        # An editable install made while hw_profiles/ had no __init__.py maps it as a namespace
        # package whose __path__ holds a non-directory hook entry, and importlib.resources
        # refuses that. Fall back to the real directories on __path__.
        import hw_profiles

        return [Path(p) / subdir for p in hw_profiles.__path__ if Path(p).is_dir()]


def _load(model: type[_P], subdir: str, extra_dir: Path | None) -> list[_P]:
    folders: list[tuple[str, Traversable | Path]] = [
        (f"hw_profiles/{subdir}", folder) for folder in _packaged_dirs(subdir)
    ]
    if extra_dir is not None:
        folders.append((str(extra_dir / subdir), extra_dir / subdir))
    by_id: dict[str, _P] = {}
    for label, folder in folders:
        seen_here: set[str] = set()
        for filename, data in _toml_files(folder):
            where = f"{label}/{filename}"
            try:
                raw = tomllib.loads(data.decode("utf-8"))
                profile = model.model_validate(raw)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValidationError) as exc:
                raise ProfileError("profile.invalid", f"{where}: {exc}") from exc
            if profile.id != filename.removesuffix(".toml"):
                raise ProfileError("profile.invalid", f"{where}: id {profile.id!r} != file name")
            if profile.id in seen_here:  # pragma: no cover - file names are unique per folder
                raise ProfileError("profile.duplicate", where)
            seen_here.add(profile.id)
            if profile.id in by_id:
                log.info("profile %s from %s overrides the packaged one", profile.id, where)
            by_id[profile.id] = profile
    return list(by_id.values())


def load_scanner_profiles(extra_dir: Path | None = None) -> list[ScannerProfile]:
    """Packaged scanner profiles, then those in `extra_dir/scanners` (same id: site wins)."""
    profiles = _load(ScannerProfile, "scanners", extra_dir)
    if not any(p.id == "generic" for p in profiles):
        raise ProfileError("profile.invalid", "no 'generic' scanner profile")
    return profiles


def load_board_profiles(extra_dir: Path | None = None) -> list[BoardProfile]:
    """Packaged board profiles, then those in `extra_dir/boards`."""
    return _load(BoardProfile, "boards", extra_dir)


def load_button_profiles(extra_dir: Path | None = None) -> list[ButtonProfile]:
    """Packaged button profiles, then those in `extra_dir/buttons`."""
    return _load(ButtonProfile, "buttons", extra_dir)
