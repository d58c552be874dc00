"""The house model: a small Llama pretrained by the project on its own offline corpora.

No pythia weights exist offline and SmolLM2-135M costs seconds per pass on a 2-core CPU, so
sweeps need a model that is tiny yet really knows Python, English and biology. Recipe (fixed
seed, 1 CPU thread, ~10 minutes on a 2-core CPU):

* corpora: stdlib Python functions (``python-stdlib``), Wikipedia paragraphs (``wikipedia``),
  Gene Ontology definitions (``go-definitions``); ~5 % of each is held out by hash of a stable
  key (function source, article title, GO id; :func:`mudman.assets.heldout.is_heldout`);
* tokenizer: byte-level BPE (``tokenizers``) with ``VOCAB_SIZE`` entries, trained on the training
  split only; ``<|endoftext|>`` separates documents, nothing is added when tokenizing;
* model: ``LlamaForCausalLM`` with a gated MLP (``gate_proj``, so MUDMAN targets work unchanged)
  and tied embeddings, sized (``ARCH``) so a paper-sized trial runs in about a minute on 2 cores;
* training: AdamW, warm-up then cosine decay, on shuffled 128-token windows of the mixed corpora.

The held-out loss of each corpus is written to the manifest next to the uniform-guess loss
``ln(VOCAB_SIZE)``. Building the asset runs :func:`pretrain`; ``python -m mudman.assets
--house-out DIR [--house-steps N]`` runs the same function into any directory (e.g. with fewer
steps to experiment).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mudman.assets.heldout import HELDOUT_PERCENT, is_heldout
from mudman.assets.store import AssetError, resolve_cache_dir

RECIPE = 1
CORPORA = ("python", "english", "biology")
INPUT_ASSETS = {"python": "python-stdlib", "english": "wikipedia", "biology": "go-definitions"}
EOS = "<|endoftext|>"
VOCAB_SIZE = 4096
ARCH = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}
TRAIN = {
    "seed": 0,
    "threads": 1,  # 2 threads are ~1.5x faster on a quiet 2-core CPU but collapse under load
    "steps": 1200,
    "batch_size": 16,
    "seq_len": 128,
    "lr": 3e-3,
    "min_lr_fraction": 0.1,
    "warmup_steps": 100,
    "weight_decay": 0.01,
    "grad_clip": 1.0,
    "eval_windows": 256,
}
# A model with real skills is far below uniform guessing on every held-out corpus.
SANITY_MAX_FRACTION_OF_UNIFORM = 0.7


def asset_key() -> dict[str, Any]:
    """Recipe, architecture, training settings and the keys of the corpora it trains on."""
    from mudman.assets.prepare import _module

    inputs = {name: _module(name).asset_key() for name in INPUT_ASSETS.values()}
    return {
        "recipe": RECIPE,
        "vocab_size": VOCAB_SIZE,
        "arch": ARCH,
        "train": TRAIN,
        "heldout_percent": HELDOUT_PERCENT,
        "inputs": inputs,
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def corpus_texts(cache_dir: Path | str | None = None) -> dict[str, dict[str, list[str]]]:
    """``{corpus: {"train": [...], "heldout": [...]}}`` from the prepared input assets."""
    from mudman.assets.prepare import prepare_one

    cache = resolve_cache_dir(cache_dir)
    dirs = {corpus: prepare_one(name, cache).path for corpus, name in INPUT_ASSETS.items()}
    out = {corpus: {"train": [], "heldout": []} for corpus in CORPORA}

    def add(corpus: str, key: str, text: str) -> None:
        out[corpus]["heldout" if is_heldout(key) else "train"].append(text)

    for row in _jsonl(dirs["python"] / "functions.jsonl"):
        add("python", row["source"], row["text"])
    for row in _jsonl(dirs["english"] / "articles.jsonl"):
        for paragraph in row["text"].split("\n\n"):
            if paragraph.strip():
                add("english", row["title"], paragraph.strip())
    for row in _jsonl(dirs["biology"] / "definitions.jsonl"):
        split = row["split"]  # decided by the asset with the same rule, keyed by go_id
        out["biology"][split].append(f"{row['term']}: {row['text']}")
    return out


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE) -> Any:
    """Byte-level BPE trained on ``texts``, wrapped for transformers (no special tokens added)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS)


def pack(texts: list[str], tokenizer: Any, seq_len: int) -> Any:
    """Token windows ``[n, seq_len]``: documents joined by EOS, cut into consecutive windows."""
    import torch

    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for start in range(0, len(texts), 2048):
        for ids in tokenizer(texts[start : start + 2048])["input_ids"]:
            stream.extend(ids)
            stream.append(eos)
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


def build_model(tokenizer: Any, seed: int) -> Any:
    """The untrained house architecture (float32)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        **ARCH,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def mean_loss(model: Any, windows: Any, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats/token) over ``windows``."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            batch = windows[start : start + batch_size]
            total += float(model(input_ids=batch, labels=batch).loss) * len(batch)
            count += len(batch)
    return total / count if count else math.nan


def _lr_at(step: int, cfg: dict[str, Any]) -> float:
    if step < cfg["warmup_steps"]:
        return cfg["lr"] * (step + 1) / cfg["warmup_steps"]
    progress = (step - cfg["warmup_steps"]) / max(1, cfg["steps"] - cfg["warmup_steps"])
    floor = cfg["min_lr_fraction"]
    return cfg["lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(
    out_dir: Path,
    cache_dir: Path | str | None = None,
    steps: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train tokenizer and model, save both to ``out_dir``; returns sizes, losses and times."""
    import torch

    cfg = {**TRAIN, **({"steps": steps} if steps is not None else {})}
    started = time.perf_counter()
    torch.set_num_threads(cfg["threads"])
    texts = corpus_texts(cache_dir)
    train_texts = [t for corpus in CORPORA for t in texts[corpus]["train"]]
    tokenizer = train_tokenizer(train_texts)
    windows = {
        corpus: {
            split: pack(texts[corpus][split], tokenizer, cfg["seq_len"])
            for split in ("train", "heldout")
        }
        for corpus in CORPORA
    }
    train = torch.cat([windows[c]["train"] for c in CORPORA])
    heldout = {c: windows[c]["heldout"][: cfg["eval_windows"]] for c in CORPORA}
    prep_s = time.perf_counter() - started
    log(f"tokenizer + packing {prep_s:.1f}s; {train.numel():,} training tokens")

    model = build_model(tokenizer, cfg["seed"])
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], betas=(0.9, 0.95), weight_decay=cfg["weight_decay"]
    )
    generator = torch.Generator().manual_seed(cfg["seed"])
    order = torch.randperm(len(train), generator=generator)
    cursor, train_started = 0, time.perf_counter()
    model.train()
    for step in range(cfg["steps"]):
        if cursor + cfg["batch_size"] > len(order):
            order, cursor = torch.randperm(len(train), generator=generator), 0
        batch = train[order[cursor : cursor + cfg["batch_size"]]]
        cursor += cfg["batch_size"]
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        if step % 100 == 0 or step == cfg["steps"] - 1:
            elapsed = time.perf_counter() - train_started
            log(f"step {step:5d}/{cfg['steps']}  loss {float(loss.detach()):.3f}  {elapsed:.0f}s")
    train_s = time.perf_counter() - train_started
    model.eval()
    uniform = math.log(len(tokenizer))
    losses = {c: round(mean_loss(model, heldout[c]), 4) for c in CORPORA}
    for corpus, value in losses.items():
        log(f"held-out {corpus:<8} loss {value:.3f} nats/token (uniform guess {uniform:.3f})")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "arch": ARCH,
        "train": cfg,
        "tokens": {
            c: {s: int(windows[c][s].numel()) for s in ("train", "heldout")} for c in CORPORA
        },
        "tokens_seen": cfg["steps"] * cfg["batch_size"] * cfg["seq_len"],
        "heldout_loss": losses,
        "heldout_windows": {c: len(heldout[c]) for c in CORPORA},
        "uniform_loss": round(uniform, 4),
        "seconds": {"prepare": round(prep_s, 1), "train": round(train_s, 1)},
    }


def build(out_dir: Path, downloads: Path) -> dict[str, Any]:
    """Pretrain into ``out_dir`` (input assets are prepared first); returns the manifest fields."""
    stats = pretrain(out_dir, cache_dir=downloads.parent, log=lambda line: print(line, flush=True))
    limit = SANITY_MAX_FRACTION_OF_UNIFORM * stats["uniform_loss"]
    worst = max(stats["heldout_loss"].values())
    if not math.isfinite(worst) or worst > limit:
        raise AssetError(f"house model fails the sanity check: held-out loss {worst} > {limit}")
    return {
        "inputs": INPUT_ASSETS,
        "licence": "MIT (the project's), trained on PSF-2.0, CC-BY-SA-3.0 and CC-BY-4.0 text",
        "split_rule": f"heldout iff int(sha256(key)[:8], 16) % 100 < {HELDOUT_PERCENT}; key = "
        "function source (python), article title (english), go_id (biology)",
        **stats,
    }
