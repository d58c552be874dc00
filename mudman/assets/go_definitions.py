"""Gene Ontology term definitions (biology text), from the Debian package ``r-bioc-go.db``.

The package is fetched with ``apt-get download`` (never installed), pinned by file name and
sha256 and kept in the downloads folder, so a re-prep is offline. We read its ``GO.sqlite``
(table ``go_term``) with our own small ``ar`` + ``tarfile`` reader and write one JSON line per
term that has a definition: ``go_id``, ``term``, ``ontology`` (BP/MF/CC), ``text`` (the
definition) and ``split``: ``heldout`` for ~5 % of terms chosen by hash of ``go_id``
(:func:`mudman.assets.heldout.is_heldout`), else ``train``. The house model never trains on
held-out definitions, so evaluation sets built from them stay unseen.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from mudman.assets.heldout import HELDOUT_PERCENT, is_heldout
from mudman.assets.store import AssetError, sha256_file, work_directory

RECIPE = 1
OUTPUT_FILE = "definitions.jsonl"
PACKAGE = "r-bioc-go.db"
VERSION = "3.16.0-1"
DEB_FILE = f"{PACKAGE}_{VERSION}_all.deb"
DEB_SHA256 = "6cf9c43b97212811ecb7ad0d7cde12e76f984ab7494a59c02455239a9dd3243d"
MEMBER = "./usr/lib/R/site-library/GO.db/extdata/GO.sqlite"
LICENCE = "CC-BY-4.0"
LICENCE_NOTE = (
    "Gene Ontology (geneontology.org), CC BY 4.0, as packaged by Bioconductor GO.db 3.16.0 "
    "(Debian r-bioc-go.db). Cite: Gene Ontology Consortium."
)


def asset_key() -> dict[str, Any]:
    """What the asset depends on: recipe version and the pinned package file."""
    return {"recipe": RECIPE, "deb_sha256": DEB_SHA256, "heldout_percent": HELDOUT_PERCENT}


def fetch_deb(downloads: Path) -> Path:
    """The verified .deb in ``downloads``, fetched with ``apt-get download`` only if needed."""
    target = downloads / DEB_FILE
    if target.is_file() and sha256_file(target) == DEB_SHA256:
        return target
    if shutil.which("apt-get") is None:
        raise AssetError(f"{DEB_FILE} is not in {downloads} and apt-get is not available")
    with work_directory(downloads) as tmp:
        proc = subprocess.run(
            ["apt-get", "download", f"{PACKAGE}={VERSION}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
        got = tmp / DEB_FILE
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise AssetError(
                f"apt-get download {PACKAGE}={VERSION} failed (run `apt-get update` first?):\n"
                + "\n".join(tail)
            )
        if sha256_file(got) != DEB_SHA256:
            raise AssetError(f"{DEB_FILE}: sha256 mismatch (want {DEB_SHA256})")
        got.replace(target)
    return target


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Members of a Unix ``ar`` archive (the .deb container format)."""
    if not data.startswith(b"!<arch>\n"):
        raise AssetError("not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def extract_sqlite(deb: Path, dest: Path) -> Path:
    """Write the package's ``GO.sqlite`` to ``dest``."""
    members = _ar_members(deb.read_bytes())
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise AssetError(f"{deb.name} has no data.tar member")
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        source = archive.extractfile(MEMBER)
        if source is None:
            raise AssetError(f"{deb.name} has no {MEMBER}")
        dest.write_bytes(source.read())
    return dest


def build(out_dir: Path, downloads: Path) -> dict[str, Any]:
    """Write ``definitions.jsonl`` into ``out_dir``; returns the manifest fields."""
    deb = fetch_deb(downloads)
    counts = {"train": 0, "heldout": 0}
    with work_directory(downloads) as tmp:
        db = sqlite3.connect(extract_sqlite(deb, tmp / "GO.sqlite"))
        try:
            rows = db.execute(
                "SELECT go_id, term, ontology, definition FROM go_term "
                "WHERE definition IS NOT NULL AND definition != '' ORDER BY go_id"
            ).fetchall()
        finally:
            db.close()
    with (out_dir / OUTPUT_FILE).open("w", encoding="utf-8") as handle:
        for go_id, term, ontology, definition in rows:
            split = "heldout" if is_heldout(go_id) else "train"
            counts[split] += 1
            record = {"go_id": go_id, "term": term, "ontology": ontology, "text": definition}
            handle.write(json.dumps({**record, "split": split}, ensure_ascii=False) + "\n")
    return {
        "source": {"package": f"{PACKAGE}={VERSION}", "file": DEB_FILE, "sha256": DEB_SHA256},
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
        "split_rule": f"heldout iff int(sha256(go_id)[:8], 16) % 100 < {HELDOUT_PERCENT}",
        "counts": {"definitions": len(rows), **counts},
    }
