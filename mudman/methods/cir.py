"""CIR: Collapse of Irrelevant Representations (a follow-up to MUDMAN; see its paper).

The forget set is a fixed group of ``epoch_batches`` forget batches visited once per epoch.
Hooks on the targeted linear modules record each token's input activation and output gradient.
After every epoch, per module, the mean and the top principal components (``act_components``
for activations, ``grad_components`` for gradients) of the tokens collected in that epoch
define the "common representations"; during the next epoch they are projected out of the
token-wise activations and gradients before the weight gradient is rebuilt (with no
components and no mean it is exactly ordinary backprop). Epoch 0 only collects.

* Forget loss ``mlp_confuse``: MLP outputs of the chosen layers are pushed towards
  orthogonality with their original outputs, ``relu(<o, o_orig> / |o_orig|^2)`` per token
  (clipped at 0; the original outputs are recorded in epoch 0, when the weights are original).
* Update: globally normalized, so ``unlearning_rate`` is the per-weight RMS step.
* Retain step (plain SGD, ``retaining_rate``): squared L2 of one hidden state (``retain_layer``)
  to the original model's, computed with the original targeted weights swapped in.
* Stop rule: after each epoch, stop unlearning if the retain loss on the retain evaluation batch
  exceeds ``initial * (1 + disruption_budget)`` (the paper stops at WikiText loss x 1.001).

Pass accounting: 5 per loop: forget forward + backward (2), original forward on the retain batch
(1), retain forward + backward (2). Collection-only loops of epoch 0 are charged the same 5.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from mudman.errors import ConfigError
from mudman.losses import cross_entropy
from mudman.methods.base import METHODS, UnlearningMethod, require
from mudman.methods.components.collapse import principal_basis, rebuilt_weight_grad
from mudman.methods.components.original import OriginalWeights
from mudman.methods.components.representations import mean_squared_l2, relu_projection

MLP_PATTERN = re.compile(r"(?:.*\.)?layers\.(\d+)\.mlp")


def mlp_modules(model: nn.Module, layers) -> dict[int, nn.Module]:
    """``{layer index: mlp module}`` for the chosen layers (all when ``layers`` is None)."""
    found = {}
    for name, module in model.named_modules():
        match = MLP_PATTERN.fullmatch(name)
        if match:
            found[int(match.group(1))] = module
    chosen = sorted(found) if layers is None else list(layers)
    missing = [i for i in chosen if i not in found]
    if missing:
        raise ConfigError(
            f"method.confuse_layers={list(chosen)}: no MLP at layers {missing}; this model has "
            f"layers 0..{max(found)}"
        )
    return {i: found[i] for i in chosen}


class Recorder:
    """Forward hooks: inputs and outputs of the targeted linears, outputs of the chosen MLPs."""

    def __init__(self, linears: dict[str, nn.Module], mlps: dict[int, nn.Module]) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.mlp_out: dict[int, torch.Tensor] = {}
        self.handles = [
            m.register_forward_hook(self._linear_hook(name)) for name, m in linears.items()
        ]
        self.handles += [m.register_forward_hook(self._mlp_hook(i)) for i, m in mlps.items()]

    def _linear_hook(self, name):
        def hook(module, args, output):
            self.inputs[name], self.outputs[name] = args[0].detach(), output

        return hook

    def _mlp_hook(self, index):
        def hook(module, args, output):
            self.mlp_out[index] = output

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@METHODS.register("cir")
class Cir(UnlearningMethod):
    def passes_per_loop(self) -> int:
        return 5

    def validate(self) -> None:
        c = self.cfg

        def is_int(v, lo):
            return isinstance(v, int) and not isinstance(v, bool) and v >= lo

        for key in ("unlearning_rate", "retaining_rate"):
            v = c.get(key)
            require(c, key, isinstance(v, (int, float)) and v >= 0, "a number >= 0")
        require(c, "epoch_batches", is_int(c.get("epoch_batches"), 1), "an int >= 1")
        for key in ("act_components", "grad_components"):
            require(c, key, is_int(c.get(key), 0), "an int >= 0")
        require(c, "project_mean", isinstance(c.get("project_mean"), bool), "true or false")
        require(c, "retain_layer", is_int(c.get("retain_layer"), 1), "an int >= 1")
        layers = c.get("confuse_layers")
        require(
            c,
            "confuse_layers",
            layers is None or (len(layers) > 0 and all(is_int(i, 0) for i in layers)),
            "null (every layer) or a non-empty list of layer indices >= 0",
        )
        b = c.get("disruption_budget")
        require(c, "disruption_budget", isinstance(b, (int, float)) and b > 0, "a number > 0")

    def unlearn(self, model, params, data, n_loops, monitor, progress=None) -> None:
        c = self.cfg
        targets = list(params.values())
        n_elements = sum(p.numel() for p in targets)
        linears = {n: model.get_submodule(n.removesuffix(".weight")) for n in params}
        recorder = Recorder(linears, mlp_modules(model, c.get("confuse_layers")))
        original = OriginalWeights(params)
        forget = data.forget_train[: c.epoch_batches]
        original_mlp: list[dict[int, torch.Tensor]] = []
        collected: dict[str, list] = {n: [] for n in params}
        bases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        retain_limit = self._retain_loss(model, data.retain_eval) * (1 + c.disruption_budget)
        self.stopped_at = None
        try:
            for loop in range(n_loops):
                epoch, i = divmod(loop, len(forget))
                model(input_ids=forget[i])
                if epoch == 0:  # weights are still the original ones: record the targets
                    original_mlp.append({k: v.detach() for k, v in recorder.mlp_out.items()})
                loss = relu_projection(
                    list(recorder.mlp_out.values()), list(original_mlp[i].values())
                )
                names = list(recorder.outputs)
                out_grads = torch.autograd.grad(loss, [recorder.outputs[n] for n in names])
                grads = {}
                for n, g in zip(names, out_grads, strict=True):
                    acts = recorder.inputs[n].flatten(0, -2)
                    g = g.flatten(0, -2)
                    collected[n].append((acts, g))
                    if epoch > 0:
                        grads[n] = rebuilt_weight_grad(acts, g, *bases[n])
                if epoch > 0:
                    self._unlearning_step(params, grads, n_elements)
                    self._retain_step(
                        model, targets, original, data.retain_train[loop % len(data.retain_train)]
                    )
                if i == len(forget) - 1:  # end of epoch: new subspaces; disruption check
                    bases = {n: self._bases(collected[n]) for n in params}
                    collected = {n: [] for n in params}
                    if epoch > 0 and self._retain_loss(model, data.retain_eval) > retain_limit:
                        self.stopped_at = loop + 1
                monitor.count(self.passes_per_loop())
                if progress is not None:
                    progress.update(1)
                if self.stopped_at is not None:
                    break
        finally:
            recorder.remove()
            original.release()

    def _bases(self, pairs: list) -> tuple[torch.Tensor, torch.Tensor]:
        acts = torch.cat([a for a, _ in pairs])
        grads = torch.cat([g for _, g in pairs])
        mean = self.cfg.project_mean
        return (
            principal_basis(acts, self.cfg.act_components, mean),
            principal_basis(grads, self.cfg.grad_components, mean),
        )

    def _unlearning_step(self, params, grads: dict, n_elements: int) -> None:
        norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()]))
        scale = self.cfg.unlearning_rate * n_elements**0.5 / norm.clamp_min(1e-30)
        with torch.no_grad():
            for n, g in grads.items():
                params[n].sub_(g.to(params[n].dtype), alpha=float(scale))

    def _retain_step(self, model, targets, original: OriginalWeights, batch) -> None:
        if not self.cfg.retaining_rate:
            return
        layer = self.cfg.retain_layer
        reference = original.hidden_states(model, batch)
        if layer >= len(reference) - 1:
            raise ConfigError(
                f"method.retain_layer={layer} must be < {len(reference) - 1} for this model"
            )
        hidden = model(input_ids=batch, output_hidden_states=True).hidden_states
        loss = mean_squared_l2([hidden[layer]], [reference[layer]])
        grads = torch.autograd.grad(loss, targets, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(targets, grads, strict=True):
                if g is not None:
                    p.sub_(g, alpha=self.cfg.retaining_rate)

    @torch.no_grad()
    def _retain_loss(self, model, batch) -> float:
        return cross_entropy(model(input_ids=batch).logits, batch).item()
