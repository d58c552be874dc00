"""``python -m mudman.evaluation model=<name> eval=<task> [overrides]``: score one model on one
multiple-choice task and print the task's metrics (``accuracy`` and ``correct_letter_prob`` for
``scoring: letters``; ``accuracy``, ``accuracy_norm`` and ``correct_choice_prob`` for
``scoring: choice_text``), the number of questions and the time per 100 questions (config:
``conf/eval_mc.yaml``)."""

from __future__ import annotations

import json
import logging
import sys
import time

import hydra
from omegaconf import DictConfig

from mudman.assets import MissingAssetError
from mudman.defaults import CONF_DIR
from mudman.errors import ConfigError

log = logging.getLogger("mudman")


def evaluate(cfg: DictConfig) -> dict:
    """Load model and task, score, and return a summary (separate from Hydra for tests)."""
    import torch

    from mudman.evaluation.evaluator import MultipleChoiceEvaluator
    from mudman.evaluation.tasks import load_task
    from mudman.models.loading import load_model_and_tokenizer, resolve_device, resolve_dtype

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    cache_dir = cfg.paths.cache_dir
    task = load_task(cfg.eval, cache_dir)  # fail on bad task input before loading a model
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, cfg.model.dtype, device)
    model, tokenizer = load_model_and_tokenizer(cfg.model, device, dtype, cache_dir)
    started = time.perf_counter()
    evaluator = MultipleChoiceEvaluator(task, tokenizer, device, batch_size=int(cfg.batch_size))
    prep_seconds = time.perf_counter() - started
    started = time.perf_counter()
    metrics = evaluator(model)
    seconds = time.perf_counter() - started
    n = evaluator.n_questions
    return {
        "model": cfg.model.name,
        "task": task.name,
        "scoring": evaluator.scoring,
        **metrics,
        "n_questions": n,
        "seconds": round(seconds, 3),
        "seconds_per_100_questions": round(100 * seconds / n, 3),
        "tokenize_seconds": round(prep_seconds, 3),
        "single_token_continuations": evaluator.single_token,
        "shared_prefix": evaluator.used_shared_prefix,
        "input_tokens": evaluator.n_tokens,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
    }


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval_mc")
def main(cfg: DictConfig) -> None:
    try:
        summary = evaluate(cfg)
    except (ConfigError, MissingAssetError) as err:
        log.error("%s", err)
        sys.exit(2)
    from mudman.evaluation.metrics import metric_names

    scores = ", ".join(f"{m} {summary[m]:.4f}" for m in metric_names(summary["scoring"]))
    print(
        f"{summary['model']} on {summary['task']} ({summary['scoring']}): {scores}, "
        f"{summary['n_questions']} questions, "
        f"{summary['seconds_per_100_questions']:.2f} s per 100 questions"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
