"""Tiny randomly initialized models and a byte-level tokenizer, built in code.

They exercise the real code paths (Llama-style gated MLP with ``gate_proj``; GPT-NeoX with
``dense_h_to_4h``) in milliseconds, so the test suite needs no downloaded weights. Saving them
with ``save_pretrained`` gives local directories that go through the same loader as Hub ids.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

BYTE_VOCAB = 257  # 256 byte symbols + <|endoftext|>


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte: deterministic, needs no training data, any text round-trips."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: i for i, symbol in enumerate(sorted(alphabet))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>"
    )


def tiny_llama(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = BYTE_VOCAB):
    """A 2-layer Llama (gated MLP, tied embeddings like SmolLM) with ~30k parameters."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def tiny_gpt_neox(seed: int = 0, hidden: int = 32, layers: int = 2, vocab: int = BYTE_VOCAB):
    """A 2-layer GPT-NeoX (pythia's architecture: dense_h_to_4h / dense_4h_to_h)."""
    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(config).eval()


TINY_BUILDERS = {"llama": tiny_llama, "gpt_neox": tiny_gpt_neox}


def build_tiny(architecture: str, seed: int = 0) -> PreTrainedModel:
    """Build a tiny model by architecture name (``llama`` or ``gpt_neox``)."""
    return TINY_BUILDERS[architecture](seed=seed)
