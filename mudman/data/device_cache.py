"""Trial batches built on the device once per process, shared by all its trials.

A study worker runs many trials in one process with the same data, tokenizer and device, so
the batches are tokenized (or read from the disk cache), split and copied to the device once
and then reused. No method writes into its batches (a test runs every method and checks), so
sharing them is safe. One entry is kept: a grid that moves to other data frees the old batches.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from mudman.cache_keys import json_key
from mudman.data.batching import TrialData, build_trial_data, tokenizer_fingerprint


class DeviceDataCache:
    """The last built :class:`TrialData`, keyed by everything that determines its contents."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.data: TrialData | None = None
        self.builds = 0

    def get(
        self,
        data_cfg: DictConfig,
        tokenizer,
        context_len: int,
        batch_size: int,
        cache_dir: str | None,
        device: torch.device,
    ) -> tuple[TrialData, bool]:
        """Return ``(data, reused)``: the device batches, and whether they were already built."""
        from mudman.data.digests import inputs_digest

        sides = {
            f"data.{side}.{data_cfg.source}": data_cfg[side].get(data_cfg.source)
            for side in ("forget", "retain")
            if data_cfg[side].get(data_cfg.source) is not None
        }
        key = json_key(
            [
                OmegaConf.to_container(data_cfg, resolve=True),
                inputs_digest(sides, cache_dir),  # an edited file: rebuilt, not reused
                tokenizer_fingerprint(tokenizer),
                context_len,
                batch_size,
                str(cache_dir),
                str(device),
            ]
        )
        if key == self.key and self.data is not None:
            return self.data, True
        self.clear()  # free the old batches before building the new ones
        data = build_trial_data(data_cfg, tokenizer, context_len, batch_size, cache_dir)
        self.key, self.data = key, data.to(device)
        self.builds += 1
        return self.data, False

    def clear(self) -> None:
        self.key = self.data = None


DEVICE_DATA = DeviceDataCache()
