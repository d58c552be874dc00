"""Load a causal LM and its tokenizer from a local path, an offline asset, the Hub, or code.

One function for every source, so the Hub path users rely on is the same code that tests
exercise on ``save_pretrained`` copies (``model.path=/some/dir``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from mudman.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; explicit values are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available; use device=auto or cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise ConfigError(
            f"device={device!r} is not a valid device (auto, cpu, cuda, cuda:N)"
        ) from err


def resolve_dtype(dtype: str, model_dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` takes the model's preferred dtype, falling back to float32 where unsupported."""
    name = model_dtype if dtype == "auto" else dtype
    if name not in DTYPES:
        raise ConfigError(f"dtype={name!r} is not allowed; allowed: auto, {', '.join(DTYPES)}")
    if dtype == "auto" and device.type == "cpu" and name == "float16":
        name = "float32"  # CPU float16 matmuls are slow and lossy; bf16 is fine on CPU
    return DTYPES[name]


def model_source(model_cfg: DictConfig, cache_dir: str | None = None) -> tuple[str, str]:
    """Return ``(kind, location)``: kind is ``path``, ``asset``, ``tiny`` or ``hub``."""
    if model_cfg.get("path"):
        return "path", str(model_cfg.path)
    if model_cfg.get("asset"):
        from mudman.assets import require_asset

        return "asset", str(require_asset(model_cfg.asset, cache_dir))
    if model_cfg.get("tiny"):
        return "tiny", str(model_cfg.tiny)
    if model_cfg.get("hub_id"):
        return "hub", str(model_cfg.hub_id)
    raise ConfigError(f"model {model_cfg.get('name')!r} sets none of path, asset, tiny, hub_id")


def check_local_model_dir(path: str) -> None:
    """Fail early and clearly on a missing directory or one without weights."""
    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"model.path={path!r} is not a directory")
    if not (directory / "config.json").exists():
        raise ConfigError(f"model.path={path!r} has no config.json (save it with save_pretrained)")
    weights = list(directory.glob("*.safetensors")) + list(directory.glob("*.bin"))
    if not weights:
        raise ConfigError(f"model.path={path!r} holds no weights (*.safetensors)")


def load_model_and_tokenizer(
    model_cfg: DictConfig, device: torch.device, dtype: torch.dtype, cache_dir: str | None = None
) -> tuple[Any, Any]:
    """Load weights and tokenizer, move to ``device`` in ``dtype``, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, location = model_source(model_cfg, cache_dir)
    if kind == "tiny":
        from mudman.models.tiny import build_tiny, byte_tokenizer

        model, tokenizer = build_tiny(location, seed=0), byte_tokenizer()
    else:
        if kind == "path":
            check_local_model_dir(location)
        trust = bool(model_cfg.get("trust_remote_code", False))
        try:
            model = AutoModelForCausalLM.from_pretrained(
                location, dtype=dtype, trust_remote_code=trust
            )
            tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust)
        except OSError as err:
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = (
                " The Hub is unreachable (HF_HUB_OFFLINE=1): use model=smollm2-135m (offline asset)"
                " or model.path=/local/dir."
                if kind == "hub"
                else ""
            )
            raise ConfigError(
                f"could not load model {location!r} ({kind}){' offline' if offline else ''}: "
                f"{str(err).splitlines()[0]}.{hint}"
            ) from err
    model = model.to(device=device, dtype=dtype).eval()
    model.config.use_cache = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
