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


def set_tf32(device: torch.device, enabled: bool) -> bool:
    """TF32 matmuls and convolutions on CUDA (Ampere and newer run float32 matmuls on tensor
    cores with a 10-bit mantissa, ~2-8x faster); set explicitly for every trial so a process
    never inherits the previous trial's choice. Returns whether TF32 is in effect."""
    if device.type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return enabled and torch.cuda.get_device_capability(device)[0] >= 8


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


PICKLE_PATTERNS = ("*.bin", "*.pt", "*.pth")  # torch.load checkpoints: unpickling runs code


def check_local_model_dir(path: str, allow_pickle: bool = False) -> None:
    """Fail early and clearly on a missing directory, one without weights, or pickle weights.

    Weights are loaded from safetensors only: a pickle-based checkpoint (``*.bin``, ``*.pt``,
    ``*.pth``) can execute arbitrary code when loaded, so it needs ``model.allow_pickle=true``.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ConfigError(f"model.path={path!r} is not a directory")
    if not (directory / "config.json").exists():
        raise ConfigError(f"model.path={path!r} has no config.json (save it with save_pretrained)")
    if list(directory.glob("*.safetensors")):
        return
    pickled = sorted(p.name for pattern in PICKLE_PATTERNS for p in directory.glob(pattern))
    if not pickled:
        raise ConfigError(f"model.path={path!r} holds no weights (*.safetensors)")
    if not allow_pickle:
        raise ConfigError(
            f"model.path={path!r} holds only pickle-based weights ({', '.join(pickled[:3])}), "
            "which can run arbitrary code when loaded; allowed: *.safetensors (re-save with "
            "save_pretrained), or model.allow_pickle=true for a checkpoint you trust"
        )


def _flag(model_cfg: DictConfig, key: str) -> bool:
    """A security switch: off unless the config sets it to the boolean ``true``."""
    return model_cfg.get(key, False) is True


def _load_error(err: Exception, location: str, kind: str, allow_pickle: bool) -> ConfigError:
    """One clear message for every way a Hub id or directory can fail to load."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    hint = (
        " The Hub is unreachable (HF_HUB_OFFLINE=1): use model=smollm2-135m (offline asset)"
        " or model.path=/local/dir."
        if kind == "hub"
        else ""
    )
    if not allow_pickle and "safetensors" in str(err):
        hint += (
            " Only safetensors weights are loaded; set model.allow_pickle=true to accept a "
            "pickle-based checkpoint you trust."
        )
    return ConfigError(
        f"could not load model {location!r} ({kind}){' offline' if offline else ''}: {first}.{hint}"
    )


def load_tokenizer(model_cfg: DictConfig, cache_dir: str | None = None) -> Any:
    """The model's tokenizer alone (cheap): data checks run before any weights are loaded."""
    from transformers import AutoTokenizer

    kind, location = model_source(model_cfg, cache_dir)
    if kind == "tiny":
        from mudman.models.tiny import byte_tokenizer

        tokenizer = byte_tokenizer()
    else:
        if kind == "path":
            check_local_model_dir(location, _flag(model_cfg, "allow_pickle"))
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                location, trust_remote_code=_flag(model_cfg, "trust_remote_code")
            )
        except (OSError, ValueError) as err:
            raise _load_error(err, location, kind, True) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_config(model_cfg: DictConfig, cache_dir: str | None = None) -> Any:
    """The architecture config (``config.json``) without weights."""
    from transformers import AutoConfig

    kind, location = model_source(model_cfg, cache_dir)
    if kind == "tiny":
        from mudman.models.tiny import build_tiny

        with torch.device("meta"):
            return build_tiny(location).config
    if kind == "path":
        check_local_model_dir(location, _flag(model_cfg, "allow_pickle"))
    try:
        return AutoConfig.from_pretrained(
            location, trust_remote_code=_flag(model_cfg, "trust_remote_code")
        )
    except (OSError, ValueError) as err:
        raise _load_error(err, location, kind, True) from err


def load_model_and_tokenizer(
    model_cfg: DictConfig, device: torch.device, dtype: torch.dtype, cache_dir: str | None = None
) -> tuple[Any, Any]:
    """Load weights and tokenizer, move to ``device`` in ``dtype``, in eval mode.

    ``trust_remote_code`` is off unless ``model.trust_remote_code=true``; weights come from
    safetensors unless ``model.allow_pickle=true``.
    """
    from transformers import AutoModelForCausalLM

    kind, location = model_source(model_cfg, cache_dir)
    tokenizer = load_tokenizer(model_cfg, cache_dir)
    if kind == "tiny":
        from mudman.models.tiny import build_tiny

        model = build_tiny(location, seed=0)
    else:
        allow_pickle = _flag(model_cfg, "allow_pickle")
        try:
            model = AutoModelForCausalLM.from_pretrained(
                location,
                dtype=dtype,
                trust_remote_code=_flag(model_cfg, "trust_remote_code"),
                use_safetensors=None if allow_pickle else True,
            )
        except OSError as err:
            raise _load_error(err, location, kind, allow_pickle) from err
    model = model.to(device=device, dtype=dtype).eval()
    model.config.use_cache = False
    return model, tokenizer
