"""Cross-check with the real lm-evaluation-harness: the same questions written as a local lm-eval
task (YAML + JSONL, loaded through its TaskManager) and scored by its ``HFLM`` must give the same
per-choice log-likelihoods and accuracy as ``MultipleChoiceEvaluator``.

Covers both letter paths: the byte tokenizer (" A" is two tokens: one row per choice) and a
tokenizer where " A".." D" are single tokens (one forward per question); and ``scoring:
choice_text`` against lm-eval's plain ``multiple_choice`` task (``doc_to_choice`` = the choice
texts, each scored as target_delimiter " " + text), where ``acc_norm`` must agree too. Offline:
the task reads a local JSON file; ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` are set by
conftest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mudman.evaluation.evaluator import MultipleChoiceEvaluator
from mudman.evaluation.prompts import continuations
from mudman.evaluation.questions import MultipleChoiceTask, Question
from mudman.models.tiny import byte_tokenizer
from tests.mc_helpers import LETTER_VOCAB, QUESTIONS, letter_tokenizer, sharp_tiny_llama

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
    'doc_to_choice: ["A", "B", "C", "D"]\n'
)
# lm-eval's ARC/SciQ form: choices not in the prompt; target_delimiter (default " ") + text.
TEXT_TEMPLATE = 'doc_to_text: "{{question.strip()}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\n'


def _write_task(
    directory: Path, name: str, description: str, questions, template: str = TEMPLATE
) -> None:
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
        f"{template}"
        "doc_to_target: answer\n"
        "metric_list:\n"
        "  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
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
    conts = [[arg[1] for arg in sample["arguments"]] for sample in samples]
    metrics = {m: results["results"][name][f"{m},none"] for m in ("acc", "acc_norm")}
    return loglik, metrics, prompts, conts


@pytest.mark.spawns
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

    theirs, their_metrics, their_prompts, _ = _lm_eval_scores(model, tokenizer, tmp_path, name, 4)
    evaluator = MultipleChoiceEvaluator(ours_task, tokenizer, batch_size=4)
    assert evaluator.single_token == (letters == "single-token")
    ours = evaluator.loglikelihoods(model)
    metrics = evaluator(model)

    assert their_prompts == evaluator.prompts  # the same prompt strings
    difference = (ours - theirs).abs().max().item()
    print(f"{letters}/{style}: max |ours - lm-eval| = {difference:.2e}")
    assert difference < TOLERANCE, f"max |ours - lm-eval| = {difference:.2e}"
    assert metrics["accuracy"] == pytest.approx(their_metrics["acc"], abs=1e-12)
    gaps = ours.sort(dim=1, descending=True).values
    assert (gaps[:, 0] - gaps[:, 1]).min() > 10 * TOLERANCE  # argmax is not decided by noise


# Choice texts of different lengths in characters, so acc and acc_norm can differ.
TEXT_QUESTIONS = [
    *QUESTIONS,
    Question("Unit of length?", ("m", "metre", "kilometre", "\u00b5m"), 1),
    Question("  Spaced choice?", (" leading space", "x", "yy", "a longer one"), 0),
]


@pytest.mark.spawns
@pytest.mark.parametrize("tokenizer_kind", ["byte", "letter-merges"])
def test_choice_text_scoring_agrees_with_lm_eval(tmp_path, tokenizer_kind):
    if tokenizer_kind == "byte":
        tokenizer, model = byte_tokenizer(), sharp_tiny_llama(seed=12)
    else:
        tokenizer, model = letter_tokenizer(), sharp_tiny_llama(seed=12, vocab=LETTER_VOCAB)
    description, _ = DESCRIPTIONS["wmdp"]
    ours_task = MultipleChoiceTask("check", TEXT_QUESTIONS, description, scoring="choice_text")
    name = f"mudman_check_text_{tokenizer_kind.replace('-', '_')}"
    _write_task(tmp_path, name, description, TEXT_QUESTIONS, TEXT_TEMPLATE)

    theirs, their_metrics, their_prompts, their_conts = _lm_eval_scores(
        model, tokenizer, tmp_path, name, 4
    )
    evaluator = MultipleChoiceEvaluator(ours_task, tokenizer, batch_size=4)
    assert not evaluator.single_token  # choice texts span several tokens: one row per choice
    ours = evaluator.loglikelihoods(model)
    metrics = evaluator(model)

    assert their_prompts == evaluator.prompts
    assert their_conts == [continuations(q, "choice_text") for q in TEXT_QUESTIONS]
    difference = (ours - theirs).abs().max().item()
    print(f"choice_text/{tokenizer_kind}: max |ours - lm-eval| = {difference:.2e}, {metrics}")
    assert difference < TOLERANCE, f"max |ours - lm-eval| = {difference:.2e}"
    assert metrics["accuracy"] == pytest.approx(their_metrics["acc"], abs=1e-12)
    assert metrics["accuracy_norm"] == pytest.approx(their_metrics["acc_norm"], abs=1e-12)
    lengths = evaluator.choice_lengths
    for scores in (ours, ours / lengths):  # neither argmax is decided by noise
        gaps = scores.sort(dim=1, descending=True).values
        assert (gaps[:, 0] - gaps[:, 1]).min() > 10 * TOLERANCE
    by_length = ((ours / lengths).argmax(1) != ours.argmax(1)).sum()
    assert by_length > 0  # acc_norm's normalization changes at least one pick: it is tested
