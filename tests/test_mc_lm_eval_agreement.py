"""Cross-check with the real lm-evaluation-harness: the same questions written as a local lm-eval
task (YAML + JSONL, loaded through its TaskManager) and scored by its ``HFLM`` must give the same
per-choice log-likelihoods and accuracy as ``MultipleChoiceEvaluator``.

Covers both scoring paths: the byte tokenizer (" A" is two tokens: one row per choice) and a
tokenizer where " A".." D" are single tokens (one forward per question). Offline: the task reads
a local JSON file; ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` are set by conftest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mudman.evaluation.multiple_choice import MultipleChoiceEvaluator, MultipleChoiceTask
from mudman.models.tiny import byte_tokenizer

from .mc_helpers import LETTER_VOCAB, QUESTIONS, letter_tokenizer, sharp_tiny_llama

lm_eval = pytest.importorskip(
    "lm_eval", reason="lm-eval is not installed (pip install -e '.[dev]' installs it)"
)

TOLERANCE = 1e-4
DESCRIPTIONS = {
    # lm-eval's wmdp_bio description, and mmlu_<subject>'s for one subject
    "wmdp": ("The following are multiple choice questions (with answers) about biology.\n\n", None),
    "mmlu": (
        "The following are multiple choice questions (with answers) about {subject}.\n\n",
        "college_biology",
    ),
}
TEMPLATE = (
    'doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\n'
    'C. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"\n'
)


def _write_task(directory: Path, name: str, description: str, questions) -> None:
    data = directory / f"{name}.jsonl"
    data.write_text(
        "".join(
            json.dumps({"question": q.question, "choices": list(q.choices), "answer": q.answer})
            + "\n"
            for q in questions
        )
    )
    (directory / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        f"description: {json.dumps(description)}\n"
        f"{TEMPLATE}"
        'doc_to_choice: ["A", "B", "C", "D"]\n'
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"
    )


def _lm_eval_scores(model, tokenizer, directory: Path, name: str, batch_size: int):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    results = simple_evaluate(
        model=lm,
        tasks=[name],
        task_manager=TaskManager(include_path=str(directory)),
        num_fewshot=0,
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = sorted(results["samples"][name], key=lambda s: s["doc_id"])
    loglik = torch.tensor(
        [[resp[0] for resp in sample["filtered_resps"]] for sample in samples], dtype=torch.float64
    )
    prompts = [sample["arguments"][0][0] for sample in samples]
    return loglik, results["results"][name]["acc,none"], prompts


@pytest.mark.parametrize(("letters", "style"), [("single-token", "mmlu"), ("multi-token", "wmdp")])
def test_loglikelihoods_and_accuracy_agree_with_lm_eval(tmp_path, letters, style):
    if letters == "single-token":
        tokenizer, model = letter_tokenizer(), sharp_tiny_llama(seed=11, vocab=LETTER_VOCAB)
    else:
        tokenizer, model = byte_tokenizer(), sharp_tiny_llama(seed=11)
    template, subject = DESCRIPTIONS[style]
    questions = [
        type(q)(q.question, q.choices, q.answer, subject) if subject else q for q in QUESTIONS
    ]
    ours_task = MultipleChoiceTask("check", questions, template)
    lm_eval_description = template.replace("{subject}", (subject or "").replace("_", " "))
    name = f"mudman_check_{style}"
    _write_task(tmp_path, name, lm_eval_description, questions)

    theirs, their_acc, their_prompts = _lm_eval_scores(model, tokenizer, tmp_path, name, 4)
    evaluator = MultipleChoiceEvaluator(ours_task, tokenizer, batch_size=4)
    assert evaluator.single_token == (letters == "single-token")
    ours = evaluator.loglikelihoods(model)
    metrics = evaluator(model)

    assert their_prompts == evaluator.prompts  # the same prompt strings
    difference = (ours - theirs).abs().max().item()
    print(f"{letters}/{style}: max |ours - lm-eval| = {difference:.2e}")
    assert difference < TOLERANCE, f"max |ours - lm-eval| = {difference:.2e}"
    assert metrics["accuracy"] == pytest.approx(their_acc, abs=1e-12)
    gaps = ours.sort(dim=1, descending=True).values
    assert (gaps[:, 0] - gaps[:, 1]).min() > 10 * TOLERANCE  # argmax is not decided by noise
