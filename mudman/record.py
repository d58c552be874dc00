"""A trial's record, field by field: the one schema of ``results.json`` (docs/trial.md).

The trial fills a ``TrialRecord`` step by step and returns ``to_json()`` (what
``results.json`` holds); the sweeper stores ``optuna_attrs()`` on the Optuna trial; the report
and the comparison read files back with ``from_json`` and stored trials with ``from_attrs``.
Older files and studies keep reading: a missing key is its field's default, a key this
version does not know is kept in ``extra`` and written back unchanged.

Each field's metadata says what it means (``doc``), whether it is left out of the JSON while
unset (``optional``; every other field is written, ``null`` included) and how it reaches the
Optuna trial (``attr``: ``"as is"``, or the derived attribute's name).
``python -m mudman.record`` prints the schema tables of docs/trial.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self


def about(
    doc: str, *, optional: bool = False, attr: str = "", nested: type | None = None
) -> dict[str, Any]:
    """A field's metadata: its documentation and its JSON and Optuna rules."""
    return {"doc": doc, "optional": optional, "attr": attr, "nested": nested}


@dataclass
class JsonRecord:
    """A record read from and written to a JSON object, keeping keys it does not know."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    @classmethod
    def schema(cls) -> list[Any]:
        """The documented fields (``extra`` is not one)."""
        return [f for f in fields(cls) if f.name != "extra"]

    def to_json(self) -> dict[str, Any]:
        """The JSON object: fields in schema order (unset optional ones left out), then
        ``extra``. Values are the record's own objects, not copies."""
        out: dict[str, Any] = {}
        for f in self.schema():
            value = getattr(self, f.name)
            if value is None and f.metadata["optional"]:
                continue
            out[f.name] = value.to_json() if isinstance(value, JsonRecord) else value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """A record from a JSON object, as written by this or an older version."""
        if not isinstance(data, Mapping):
            raise ValueError(f"holds a {type(data).__name__}, not a JSON object")
        known = {f.name: f for f in cls.schema()}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                extra[key] = value
                continue
            nested = known[key].metadata["nested"]
            values[key] = (
                nested.from_json(value) if nested and isinstance(value, Mapping) else value
            )
        return cls(**values, extra=extra)


@dataclass
class Rejection(JsonRecord):
    """Why a trial was rejected (not a valid sample; Optuna records it as PRUNED)."""

    reason: str | None = field(
        default=None,
        metadata=about(
            "the broken constraint, e.g. `retain loss 3.9 > budget limit 3.5`, `non-finite loss`, "
            "or the capability guard's message"
        ),
    )
    passes: int | None = field(
        default=None, metadata=about("unlearning passes done when it was rejected")
    )
    losses: dict[str, float] | None = field(
        default=None, metadata=about("the values that broke the constraint")
    )


@dataclass
class Passes(JsonRecord):
    """Forward-backward passes: the budgets and what was done."""

    unlearning_budget: int | None = field(
        default=None, metadata=about("`unlearn_passes` of the config")
    )
    per_loop: int | None = field(
        default=None, metadata=about("passes one loop of the method costs")
    )
    loops: int | None = field(default=None, metadata=about("loops the budget allows"))
    relearning: int | None = field(
        default=None, metadata=about("`relearn_passes`: each attack's budget")
    )
    attacks: dict[str, int] | None = field(
        default=None,
        metadata=about("passes each attack ran, by label (completed trials)", optional=True),
    )
    attack_total: int | None = field(
        default=None, metadata=about("passes of all attacks together", optional=True)
    )
    unlearning_done: int | None = field(
        default=None, metadata=about("unlearning passes done (fewer when rejected early)")
    )
    paused_loops: int | None = field(
        default=None,
        metadata=about(
            "loops whose unlearning step the pause rule (`retain_pause_budget`) skipped"
        ),
    )


@dataclass
class TrialRecord(JsonRecord):
    """Everything one trial measured, in the order ``results.json`` lists it."""

    status: str | None = field(
        default=None,
        metadata=about(
            "`completed` or `rejected` (`running` only while the trial runs)", attr="as is"
        ),
    )
    objective: float | None = field(
        default=None,
        metadata=about(
            "the primary objective, `null` when rejected: min forget loss during relearning "
            "(`maximize`) or target accuracy after relearning (`minimize`); the worst case over "
            "the attacks of a suite",
            attr="as is",
        ),
    )
    direction: str | None = field(
        default=None, metadata=about("`maximize` or `minimize`: the primary objective's")
    )
    rejection: Rejection | None = field(
        default=None,
        metadata=about(
            "why the trial was rejected (`null` when completed)",
            attr="as is; its reason also as `rejection_reason`",
            nested=Rejection,
        ),
    )
    device: str | None = field(
        default=None, metadata=about("the torch device the trial ran on, e.g. `cpu`, `cuda:0`")
    )
    dtype: str | None = field(
        default=None, metadata=about("the model's dtype, e.g. `float32`, `bfloat16`")
    )
    tf32: bool | None = field(
        default=None, metadata=about("whether TF32 matmuls were in effect (CUDA only)")
    )
    threads: int | None = field(
        default=None, metadata=about("torch's CPU threads (`threads:`, docs/performance.md)")
    )
    data_reused: bool | None = field(
        default=None,
        metadata=about(
            "the batches were already on the device, built by an earlier trial (or the preflight) "
            "of the same process"
        ),
    )
    data_rows: dict[str, dict[str, int]] | None = field(
        default=None, metadata=about("per data source: rows read, kept, too short, duplicates")
    )
    targets: list[str] | None = field(
        default=None, metadata=about("names of the parameters unlearning changes")
    )
    n_targeted_params: int | None = field(
        default=None, metadata=about("how many weights those hold")
    )
    n_model_params: int | None = field(
        default=None, metadata=about("how many weights the model holds")
    )
    n_batches: dict[str, int] | None = field(
        default=None,
        metadata=about("batches of `forget_train`, `retain_train`, `forget_val`, `retain_val`"),
    )
    passes: Passes | None = field(
        default=None, metadata=about("pass budgets and counts", attr="as is", nested=Passes)
    )
    attacks: list[dict[str, Any]] | None = field(
        default=None,
        metadata=about(
            "per attack (completed trials): `label`, `name`, `settings`, `value`, `scores`, "
            "`curve` (`[passes, forget loss]`), `passes`, `steps`, `seconds`",
            optional=True,
            attr="`attack_values`: value by label",
        ),
    )
    worst_attack: str | None = field(
        default=None,
        metadata=about(
            "label of the attacker's best attack (its value is the objective)",
            optional=True,
            attr="as is",
        ),
    )
    scores: dict[str, float] | None = field(
        default=None,
        metadata=about(
            "what the objective measured after relearning (for `mc_accuracy`: both metrics of "
            "target and guard)",
            optional=True,
        ),
    )
    objectives: dict[str, float] | None = field(
        default=None,
        metadata=about(
            "every optimized value by name (two for a multi-objective study)",
            optional=True,
            attr="as is",
        ),
    )
    directions: list[str] | None = field(
        default=None, metadata=about("their directions, in the same order", optional=True)
    )
    curves: dict[str, list[Any]] | None = field(
        default=None,
        metadata=about(
            "`unlearning`: `[passes, forget, retain]` per evaluation; `relearning` (completed "
            "trials): `[passes, forget]` of the worst-case attack"
        ),
    )
    evaluations: list[Any] | None = field(
        default=None,
        metadata=about(
            "`mc_accuracy` only: `[passes, {target/accuracy, target/correct_letter_prob, "
            "guard/...}]` at pass 0, every `objective.eval_every_passes` and at the end of "
            "unlearning",
            optional=True,
        ),
    )
    retain_loss_limit: float | None = field(
        default=None,
        metadata=about(
            "initial retain loss + `retain_loss_budget`: above it the trial is rejected"
        ),
    )
    losses: dict[str, dict[str, float]] | None = field(
        default=None,
        metadata=about(
            "forget/retain losses `initial`, `after_unlearning` and (completed trials) "
            "`after_relearning` (forget only)",
            attr="as is",
        ),
    )
    baseline: dict[str, Any] | None = field(
        default=None,
        metadata=about(
            "with `compare_baseline`: the relearn-only baseline (same attacks on the untouched "
            "model): `objective`, `scores`, `curve`, `seconds`, `attacks`, `worst_attack`, "
            "`cached` (read from the baseline cache)",
            optional=True,
            attr="`baseline_objective`, and `baseline_attack_values` by label",
        ),
    )
    timings: dict[str, float] | None = field(
        default=None,
        metadata=about(
            "seconds: `preflight_s`, `tracker_s`, `load_s`, `data_s`, `initial_eval_s`, "
            "`evaluation_setup_s`, `unlearning_s`, `relearning_s`, `scoring_s`, `baseline_s`, "
            "`other_s` (what no phase measured); they sum to `total_s` (docs/console.md)",
            attr="as is",
        ),
    )
    config: dict[str, Any] | None = field(
        default=None,
        metadata=about(
            "the full resolved config, secret-named keys such as `token` masked (written by "
            "`python -m mudman`, not by `run_trial`)",
            optional=True,
        ),
    )
    memory: dict[str, float | None] | None = field(
        default=None,
        metadata=about(
            "`rss_mb` (resident now) and `peak_rss_mb` of the process after the trial (written "
            "by `python -m mudman`)",
            optional=True,
        ),
    )

    @classmethod
    def read(cls, path: Path) -> TrialRecord:
        """The record of a ``results.json`` file."""
        return cls.from_json(json.loads(Path(path).read_text()))

    @property
    def attack_values(self) -> dict[str, float | None]:
        """Each attack's value by label (empty without an attack record)."""
        return {a["label"]: a.get("value") for a in self.attacks or []}

    @property
    def baseline_objective(self) -> float | None:
        return (self.baseline or {}).get("objective")

    @property
    def baseline_attack_values(self) -> dict[str, float | None]:
        return {a["label"]: a.get("value") for a in (self.baseline or {}).get("attacks") or []}

    def optimized_values(self, n_directions: int) -> float | list[float] | None:
        """What Optuna is told: the objective, or every objective of a multi-objective study."""
        if n_directions > 1 and self.objectives:
            return list(self.objectives.values())
        return self.objective

    def optuna_attrs(self, run_dir: Path | None) -> dict[str, Any]:
        """The fields stored on the Optuna trial (JSON-safe; curves and config stay in
        results.json): those marked ``attr="as is"`` plus the values derived from the rest."""
        data = self.to_json()
        attrs = {
            f.name: data[f.name]
            for f in self.schema()
            if f.metadata["attr"].startswith("as is") and data.get(f.name) is not None
        }
        if self.attacks:
            attrs["attack_values"] = self.attack_values
        if isinstance(self.baseline, dict):
            attrs["baseline_objective"] = self.baseline_objective
            if self.baseline.get("attacks"):
                attrs["baseline_attack_values"] = self.baseline_attack_values
        if self.rejection is not None and self.rejection.reason is not None:
            attrs["rejection_reason"] = self.rejection.reason
        attrs["run_dir"] = str(run_dir)
        return json.loads(json.dumps(attrs, default=str))

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialRecord:
        """The part of a record an Optuna trial stores (``optuna_attrs``; older studies too)."""
        stored = {f.name for f in cls.schema() if f.metadata["attr"].startswith("as is")}
        record = cls.from_json({k: v for k, v in attrs.items() if k in stored})
        if attrs.get("attack_values"):
            record.attacks = [{"label": k, "value": v} for k, v in attrs["attack_values"].items()]
        if "baseline_objective" in attrs:
            record.baseline = {"objective": attrs["baseline_objective"]}
            values = attrs.get("baseline_attack_values") or {}
            if values:
                record.baseline["attacks"] = [{"label": k, "value": v} for k, v in values.items()]
        return record


def schema_markdown() -> str:
    """The tables of docs/trial.md, one per record type, from the fields' metadata."""
    parts = []
    for cls in (TrialRecord, Rejection, Passes):
        lines = [
            f"#### `{cls.__name__}`",
            "",
            (cls.__doc__ or "").strip().replace("``", "`"),
            "",
            "| field | type | meaning | when unset | Optuna attr |",
            "|---|---|---|---|---|",
        ]
        for f in cls.schema():
            kind = str(f.type).removesuffix(" | None").replace("|", "\\|")
            unset = "left out" if f.metadata["optional"] else "`null`"
            attr = f.metadata["attr"] or "-"
            lines.append(f"| `{f.name}` | `{kind}` | {f.metadata['doc']} | {unset} | {attr} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
