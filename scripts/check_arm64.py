"""Does every pinned dependency install on a Raspberry Pi (arm64, Debian 12 bookworm)?

For each line of requirements.lock: `pip download --only-binary :all:` for CPython 3.11 on
aarch64 with glibc up to 2.36 (bookworm's), one package at a time without its dependencies
(they are lines of their own). A package without such a wheel must be listed in
ARM64_SOURCE_BUILDS with the Debian packages its build needs (scripts/bootstrap.sh installs
them; then a source distribution must exist), or build here to a pure-Python wheel
(py3-none-any, installs anywhere). Needs the PyPI registry. Exit 1 on any package that does
none of these.

    python scripts/check_arm64.py [--lock requirements.lock] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# glibc of Debian 12 is 2.36: wheels tagged up to manylinux_2_36 install there.
PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64")
# Packages with no arm64 wheel for our pin, and what building them needs from Debian.
ARM64_SOURCE_BUILDS: dict[str, tuple[str, ...]] = {
    "python-sane": ("libsane-dev", "build-essential", "python3-dev"),
}


def _pip_download(spec: str, dest: Path, binary: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest), spec]  # fmt: skip
    if binary:
        cmd += ["--only-binary", ":all:", "--implementation", "cp", "--python-version", "3.11"]
        for platform in PLATFORMS:
            cmd += ["--platform", platform]
    else:
        cmd += ["--no-binary", ":all:"]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _pure_python(spec: str, tmp: Path) -> bool:
    """A source-only package that builds, here, to a wheel for any platform (no compiler)."""
    out = tmp / ("wheel-" + spec.split("==")[0])
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
         "-q", "--no-binary", ":all:", "-w", str(out), spec],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wheels = list(out.glob("*.whl")) if built.returncode == 0 else []
    return bool(wheels) and all(w.name.endswith("-none-any.whl") for w in wheels)


def pins(lock: Path) -> list[str]:
    lines = lock.read_text(encoding="utf-8").splitlines()
    return [ln.split(";")[0].strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--only", nargs="*", help="check only these package names")
    args = parser.parse_args(argv)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in pins(args.lock):
            name = spec.split("==")[0].lower()
            if args.only and name not in {n.lower() for n in args.only}:
                continue
            wheel = _pip_download(spec, Path(tmp), binary=True)
            if wheel.returncode == 0:
                print(f"wheel   {spec}")
                continue
            deps = ARM64_SOURCE_BUILDS.get(name)
            if deps is not None:
                sdist = _pip_download(spec, Path(tmp), binary=False)
                if sdist.returncode == 0:
                    print(f"source  {spec} (builds with Debian: {' '.join(deps)})")
                else:
                    print(f"MISSING {spec}: no arm64 wheel and no source distribution")
                    failed.append(spec)
            elif _pure_python(spec, Path(tmp)):
                print(f"pure    {spec} (source only; builds to a py3-none-any wheel)")
            else:
                print(f"MISSING {spec}: no arm64 wheel and not in ARM64_SOURCE_BUILDS")
                failed.append(spec)
    print(f"{len(failed)} package(s) cannot be installed on arm64" if failed else "all pins ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
