"""One grid cell, from its composed config to the ``StudySpec`` its study runs with.

Everything that can refuse the cell happens here, before any study of the sweep runs a trial:
the sweeper's keys, the search space (each range's ends validated as a config), the method
config, the objective's directions, the model and data preflight; then the experiment's
fingerprint names the study, the storage is opened and the sampler seeded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mudman.preflight import check_data, check_model, check_objective
from mudman.redaction import redact
from mudman.sweeping.fingerprint import experiment_of, fingerprint
from mudman.sweeping.provenance import git_state
from mudman.sweeping.runner import StudySpec
from mudman.sweeping.space import check_space, parse_space
from mudman.sweeping.storage import make_storage
from mudman.sweeping.validation import (
    check_space_size,
    check_sweeper,
    check_trial_count,
    study_directions,
    study_name_for,
)

log = logging.getLogger(__name__)


@dataclass
class CellPlan:
    """One grid cell, composed, validated and preflighted: ready to open and run its study."""

    label: str  # "grid cell 2/3 (method=tar)", or "" for a sweep of one study
    overrides: list[str]
    cfg: DictConfig
    spec: StudySpec
    heartbeat_interval: float


def seeded_samplers(sampler_cfg: dict[str, Any]) -> Any:
    """Trial number -> a sampler seeded ``seed + number``, or ``None`` without a seed.

    Trial numbers are unique in a study (they are taken under the study lock), so resumed,
    re-run and concurrent processes never replay one another's proposals, and a resume
    continues the sequence where the killed run stopped.
    """
    if sampler_cfg.get("seed") is None:
        return None
    base = int(sampler_cfg["seed"])
    return lambda number: instantiate({**sampler_cfg, "seed": base + number})


def search_space(sweeper: DictConfig, search: list[str]) -> tuple[dict[str, Any], dict, int]:
    """The cell's ``hydra.sweeper.params`` with the command line's search overrides on top:
    -> (params as written, parsed space, trial count: one without a distribution)."""
    params = OmegaConf.to_container(sweeper.params, resolve=True) if sweeper.params else {}
    parse_space(params)  # refuses a params: that is not a mapping
    for text in search:
        key, _, expression = text.partition("=")
        params[key] = expression
    space = parse_space(params)
    has_search = any(isinstance(d, optuna.distributions.BaseDistribution) for d in space.values())
    check_trial_count(int(sweeper.n_trials), params, has_search)
    return params, space, int(sweeper.n_trials) if has_search else 1


def plan_cell(
    label: str, overrides: list[str], cell_cfg: DictConfig, search: list[str]
) -> CellPlan:
    """Validate and preflight one composed cell and build its study's spec (no weights load)."""
    from mudman.config import validate_config

    sweeper = cell_cfg.hydra.sweeper
    check_sweeper(sweeper)
    params, space, n_trials = search_space(sweeper, search)
    if n_trials == 1 and int(sweeper.n_trials) > 1:
        log.info(
            "%s: no search space, so one trial (hydra.sweeper.n_trials=%d does not apply)",
            label,
            int(sweeper.n_trials),
        )
    check_space_size(n_trials, space)
    validate_config(cell_cfg)  # a bad cell fails here, not in every trial
    directions = study_directions(cell_cfg)
    check_space(cell_cfg, space)  # every key exists; each range's ends pass validation
    experiment = experiment_of(cell_cfg, params)
    digest = fingerprint(experiment)
    name = study_name_for(sweeper.study_name, digest)
    url = os.path.expanduser(str(sweeper.storage))
    storage = make_storage(url, int(sweeper.heartbeat_interval), int(sweeper.grace_period))
    check_model(cell_cfg)  # model config + module tree, then data: still no weights
    check_data(cell_cfg)
    check_objective(cell_cfg)
    sampler_cfg = OmegaConf.to_container(sweeper.sampler, resolve=True)
    resolved = OmegaConf.to_container(cell_cfg, resolve=False)
    resolved.pop("hydra", None)
    spec = StudySpec(
        name=name,
        storage_url=url,
        storage=storage,
        directions=directions,
        n_trials=n_trials,
        space=space,
        sampler=instantiate(sampler_cfg),
        sampler_for=seeded_samplers(sampler_cfg),
        max_failure_rate=float(sweeper.max_failure_rate),
        experiment=redact(experiment),
        fingerprint=digest,
        allow_config_change=bool(sweeper.get("allow_config_change", False)),
        attrs=redact(  # study attrs are read by everyone with access to the storage
            {
                **git_state(),
                "config": json.loads(json.dumps(resolved, default=str)),
                "search_space": params,
                "n_trials": n_trials,
            }
        ),
    )
    return CellPlan(label, overrides, cell_cfg, spec, float(sweeper.heartbeat_interval))
