"""Small builders shared by the multiple-choice tests: a tokenizer where " A".." D" are one
token each (the fast path), a tiny Llama with large random weights (so choices differ clearly),
and a handful of questions of different lengths."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from mudman.evaluation.questions import MultipleChoiceTask, Question
from mudman.models.tiny import tiny_llama

LETTER_VOCAB = 261  # 256 bytes + " A".." D" + <|endoftext|>


def letter_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE whose only merges make " A", " B", " C", " D" single tokens."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    merges = [("Ġ", letter) for letter in "ABCD"]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def sharp_tiny_llama(seed: int = 0, vocab: int = 257, std: float = 0.3):
    """A tiny Llama whose weights are large enough that log-likelihoods differ by nats."""
    model = tiny_llama(seed=seed, vocab=vocab)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model.eval()


QUESTIONS = [
    Question(
        "What is the powerhouse of the cell?",
        ("nucleus", "mitochondrion", "ribosome", "golgi"),
        1,
        "college_biology",
    ),
    Question(
        "  Which gas do plants take up?  ", ("O2", "CO2", "N2", "He"), 1, "high_school_biology"
    ),
    Question("DNA has how many strands?", ("1", "2", "3", "4"), 1, "college_biology"),
    Question(
        "Which of these is a prime number? Think about divisors carefully.",
        ("4", "6", "7", "9"),
        2,
        "abstract_algebra",
    ),
    Question("2 + 2 =", ("3", "4", "5", "22"), 1, "abstract_algebra"),
    Question(
        "Pick the longest answer.",
        ("a", "a much longer choice than the others", "bb", "c"),
        1,
        "virology",
    ),
]


def small_task(description: str = "", questions: list[Question] | None = None):
    return MultipleChoiceTask("small", list(questions or QUESTIONS), description)
