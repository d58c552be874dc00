"""``attack=lora``: LoRA fine-tuning with the ``peft`` library (``pip install -e '.[lora]'``).

Low-rank adapters ``B @ A`` (rank ``rank``, scale ``alpha / rank``, PEFT's initialisation: A
random, B zero; no dropout) are attached to the ``target_modules`` linear layers and trained
with AdamW (weight decay 0) at ``lr``; the base weights are frozen and never change. The forget
curve and the objective's score are measured with the adapter active; afterwards the adapter is
removed without merging, so the model holds the weights it had before the attack, bit for bit.
``target_modules: all-linear`` (default) = every ``nn.Linear`` except the output head: for
Llama-style models (SmolLM2, the house model, Llama-3.2) q/k/v/o_proj and gate/up/down_proj,
for GPT-NeoX query_key_value, dense, dense_h_to_4h and dense_4h_to_h. A list takes module names
or ``re:<regex>`` as the top-level ``target_modules`` does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from mudman.attack.base import ATTACKS, Attack, _number, require_attack
from mudman.errors import ConfigError
from mudman.models.targets import select_target_params, validate_target_patterns

ALL_LINEAR = "all-linear"


def _patterns(value: Any) -> str | list[str]:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def check_lora_available(key: str = "attack") -> None:
    """A clear error, before anything loads, when the optional ``peft`` is missing."""
    if importlib.util.find_spec("peft") is None:
        raise ConfigError(
            f"{key}.name='lora' needs the peft library: pip install -e '.[lora]'; "
            "allowed without it: sgd, adamw, retain_then_forget"
        )


def lora_module_names(model: nn.Module, target_modules: Any, key: str = "attack") -> list[str]:
    """Full paths of the linear modules that get adapters (checked against the module tree;
    the preflight runs this on the meta-device skeleton, before any weights load)."""
    target_modules = _patterns(target_modules)
    if target_modules == ALL_LINEAR:
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        names = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module is not head
        ]
        if not names:
            raise ConfigError(f"{key}.target_modules=all-linear: this model has no linear layers")
        return names
    try:
        params = select_target_params(model, target_modules)
    except ConfigError as err:
        raise ConfigError(f"{key}.target_modules: {err}") from err
    return [name.removesuffix(".weight") for name in params]


@ATTACKS.register("lora")
class LoraAttack(Attack):
    def validate(self, relearn_passes: int) -> None:
        super().validate(relearn_passes)
        c, key = self.cfg, self.key
        rank, alpha = c.get("rank"), c.get("alpha")
        ok_rank = isinstance(rank, int) and not isinstance(rank, bool) and rank >= 1
        require_attack(f"{key}.rank", ok_rank, rank, "an integer >= 1")
        require_attack(f"{key}.alpha", _number(alpha) and alpha > 0, alpha, "a number > 0")
        targets = _patterns(c.get("target_modules"))
        if targets != ALL_LINEAR:
            try:
                validate_target_patterns(targets)
            except ConfigError as err:
                raise ConfigError(
                    f"{key}.target_modules={targets!r}: {err}; allowed: all-linear, or a list "
                    "of module names / 're:<regex>'"
                ) from err
        check_lora_available(key)

    def prepare(self, model: nn.Module) -> tuple[nn.Module, list[nn.Parameter]]:
        import peft

        config = peft.LoraConfig(
            r=int(self.cfg.rank),
            lora_alpha=float(self.cfg.alpha),
            lora_dropout=0.0,
            bias="none",
            target_modules=lora_module_names(model, self.cfg.target_modules, self.key),
        )
        wrapped = peft.get_peft_model(model, config)  # freezes every base parameter
        return wrapped, [p for p in wrapped.parameters() if p.requires_grad]

    def optimizer(self, params):
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.0)

    def release(self, model: nn.Module, attacked: nn.Module) -> None:
        """Remove the adapter modules without merging: the base weights are as before."""
        attacked.unload()
        if hasattr(model, "peft_config"):
            del model.peft_config  # PEFT leaves it behind; a later attack would warn
