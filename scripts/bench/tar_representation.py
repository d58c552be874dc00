"""TAR's representation retain term on a real model: size, gradient and stability, per variant.

Why TAR (``method=tar``) at ``representation_weight=1`` is rejected on SmolLM2 with the
squared-L2 term, and whether a variant behaves: for each candidate distance (the old squared L2,
the per-token relative squared L2 now used by default, each with and without the attention-sink
position 0, and a per-layer normalized squared L2), at points along TAR's own trajectory (run
with ``representation_weight=0``, so every variant sees the same weights):

* ``value``: the term; ``grad``: its gradient norm over the targeted weights (next to the
  retain cross-entropy's, ``ce grad``); ``pos0``: the share of the value that position 0 makes;
* ``step ratio``: the term after one plain SGD step of size ``retaining_rate`` on the term
  alone (what the retain step does at weight 1), divided by the term before; > 1 means the
  retain step *increases* the distance it should shrink: the term diverges at weight 1.

Points: the untouched model after a random weight perturbation (RMS ``--perturb`` x each
weight tensor's RMS; the term and its gradient are exactly 0 at the untouched weights), then
after each of ``--loops`` cumulative loop counts. Also prints the original hidden-state norm of
position 0 against the other positions. One process, one thread; the numbers are comparable
side by side.

    python -m scripts.bench tar_representation model=smollm2-135m batch_size=8 context_len=64
    python -m scripts.bench tar_representation model=tiny-llama --loops 1 3   # smoke
"""

from __future__ import annotations

import argparse
import time

import torch

from scripts.bench.common import compose, load_model_and_batches


def layer_normalized_squared_l2(hidden, original, skip_first: int = 0) -> torch.Tensor:
    """Per layer sum_t ||h_t - o_t||^2 / sum_t ||o_t||^2, mean over layers (a candidate)."""
    per_layer = []
    for h, o in zip(hidden, original, strict=True):
        h, o = h[:, skip_first:].float(), o[:, skip_first:].float()
        per_layer.append((h - o).pow(2).sum() / o.pow(2).sum().clamp_min(1e-12))
    return torch.stack(per_layer).mean()


def candidates() -> dict:
    from mudman.methods.components.representations import (
        mean_relative_l2,
        mean_relative_squared_l2,
        mean_squared_l2,
    )

    return {
        "squared_l2 (old)": lambda h, o: mean_squared_l2(h, o),
        "squared_l2, skip pos 0": lambda h, o: mean_squared_l2(h, o, skip_first=1),
        "relative_squared_l2 (new)": lambda h, o: mean_relative_squared_l2(h, o),
        "relative_squared_l2, skip pos 0": lambda h, o: mean_relative_squared_l2(
            h, o, skip_first=1
        ),
        "relative_l2 (not squared)": lambda h, o: mean_relative_l2(h, o),
        "layer-normalized squared_l2": lambda h, o: layer_normalized_squared_l2(h, o),
        "layer-normalized, skip pos 0": lambda h, o: layer_normalized_squared_l2(h, o, 1),
    }


def measure(model, params, original, batch, retaining_rate: float) -> dict[str, dict]:
    """Every candidate's value, gradient norm, position-0 share and one-step ratio."""
    from mudman.losses import cross_entropy

    targets = list(params.values())
    ref = original.hidden_states(model, batch)[:-1]
    out = model(input_ids=batch, output_hidden_states=True)
    ce_grad = torch.linalg.vector_norm(
        torch.stack(
            [g.norm() for g in torch.autograd.grad(cross_entropy(out.logits, batch), targets)]
        )
    ).item()
    rows = {}
    for name, term in candidates().items():
        out = model(input_ids=batch, output_hidden_states=True)
        hidden = out.hidden_states[:-1]
        value = term(hidden, ref)
        grads = torch.autograd.grad(value, targets, allow_unused=True, materialize_grads=True)
        grad_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
        with torch.no_grad():  # share of position 0: the term minus the term without it
            first_only = term([h[:, :1] for h in hidden], [o[:, :1] for o in ref]).item()
            n = hidden[0].shape[1]
            share = first_only / n / value.item() if value.item() > 0 else float("nan")
            if "skip" in name:
                share = 0.0
            elif "layer-normalized" in name:  # its per-layer ratio does not split as a mean
                share = float("nan")
            saved = [p.detach().clone() for p in targets]
            torch._foreach_sub_([p.data for p in targets], list(grads), alpha=retaining_rate)
            after = term(model(input_ids=batch, output_hidden_states=True).hidden_states[:-1], ref)
            for p, s in zip(targets, saved, strict=True):
                p.data.copy_(s)
        rows[name] = {
            "value": value.item(),
            "grad": grad_norm,
            "pos0": share,
            "step_ratio": after.item() / value.item() if value.item() > 0 else float("nan"),
            "ce_grad": ce_grad,
        }
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench tar_representation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model=smollm2-135m")
    parser.add_argument("--loops", type=int, nargs="+", default=[1, 3, 10], help="cumulative")
    parser.add_argument("--perturb", type=float, default=1e-3, help="relative weight RMS")
    args = parser.parse_args(argv)

    from mudman.config import validate_config
    from mudman.methods.components.original import OriginalWeights
    from mudman.methods.monitor import PassMonitor
    from mudman.methods.mudman import Mudman
    from mudman.models.loading import resolve_device
    from mudman.models.targets import select_target_params
    from mudman.runtime import apply_thread_policy
    from mudman.trial import set_seed

    overrides = ["method=tar", *args.overrides, "method.representation_weight=0"]
    cfg = compose(overrides)
    validate_config(cfg)
    device = resolve_device(cfg.device)
    apply_thread_policy(cfg.threads, device)
    _dtype, model, _tok, data = load_model_and_batches(cfg, device)
    params = select_target_params(model, cfg.target_modules)
    for name, param in model.named_parameters():
        param.requires_grad_(name in params)
    original = OriginalWeights(params)
    batch = data.retain_eval
    rr = cfg.method.retaining_rate
    print(f"# {' '.join(overrides)}; retaining_rate {rr}; eval batch {tuple(batch.shape)}")

    with torch.no_grad():
        hs = model(input_ids=batch, output_hidden_states=True).hidden_states[:-1]
        norms = torch.stack([h.float().norm(dim=-1) for h in hs])  # [layer, batch, pos]
        first, rest = norms[:, :, 0], norms[:, :, 1:]
        print(
            f"original hidden-state norm: position 0 max {first.max():.0f} "
            f"(median over layers {first.median():.0f}); other positions max {rest.max():.0f}, "
            f"median {rest.median():.0f}"
        )

    def report(label: str, rows: dict) -> None:
        print(f"\n{label}")
        print("| term | value | grad | ce grad | pos0 share | step ratio |")
        print("|---|---|---|---|---|---|")
        for name, r in rows.items():
            print(
                f"| {name} | {r['value']:.3e} | {r['grad']:.3e} | {r['ce_grad']:.3e} | "
                f"{r['pos0']:.3f} | {r['step_ratio']:.3g} |"
            )

    set_seed(cfg.seed)
    saved = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for p in params.values():
            p.add_(torch.randn_like(p) * p.pow(2).mean().sqrt() * args.perturb)
    start = time.perf_counter()
    report(
        f"untouched + random perturbation (RMS {args.perturb} x weight RMS)",
        measure(model, params, original, batch, rr),
    )
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(saved[n])

    loop_method = Mudman(cfg.method)  # TAR's settings without the term: the shared trajectory
    monitor = PassMonitor(lambda: {}, 10**9, 1.0, 0.0)
    done = 0
    set_seed(cfg.seed)
    for target in sorted(args.loops):
        loop_method.unlearn(model, params, data, target - done, monitor)
        done = target
        report(
            f"after {done} TAR loops (unlearning_rate {cfg.method.unlearning_rate}, weight 0)",
            measure(model, params, original, batch, rr),
        )
    print(f"\n{time.perf_counter() - start:.0f} s")
