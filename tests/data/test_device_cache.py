"""Trial batches are built on the device once per process and shared by its trials; TF32."""

from __future__ import annotations

import pytest
import torch

from mudman.config import validate_config
from mudman.data.device_cache import DEVICE_DATA
from mudman.errors import ConfigError
from mudman.models.loading import set_tf32
from mudman.models.tiny import tiny_llama
from mudman.trial import baseline_key, run_trial
from tests.conftest import CONF
from tests.method_helpers import make_data, never_reject, prepare

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))


def test_trials_in_one_process_reuse_the_device_batches_with_identical_results(compose):
    DEVICE_DATA.clear()
    cfg = compose()
    builds = DEVICE_DATA.builds
    first, second = run_trial(cfg), run_trial(cfg)
    assert (first["data_reused"], second["data_reused"]) == (False, True)
    assert DEVICE_DATA.builds == builds + 1
    assert first["objective"] == second["objective"]
    assert first["curves"] == second["curves"]
    assert first["losses"] == second["losses"]

    other = run_trial(compose("batch_size=2"))  # different batches: rebuilt, old ones freed
    assert other["data_reused"] is False
    assert DEVICE_DATA.builds == builds + 2
    assert DEVICE_DATA.data.forget_train[0].shape[0] == 2


@pytest.mark.parametrize("name", METHODS)
def test_no_method_writes_into_the_shared_batches(compose, name):
    cfg = compose(f"method={name}", "unlearn_passes=60")  # a multiple of every loop
    method = validate_config(cfg)
    model = tiny_llama(seed=0)
    data = make_data(n=8)
    sides = [v for v in vars(data).values() if isinstance(v, list)]  # not the row counts
    before = [b.clone() for side in sides for b in side]
    method.unlearn(model, prepare(model), data, method.n_loops(60), never_reject())
    after = [b for side in sides for b in side]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_tf32_is_set_for_cuda_devices_only_and_enters_the_baseline_key(compose, monkeypatch):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        assert set_tf32(torch.device("cpu"), True) is False
        assert torch.backends.cuda.matmul.allow_tf32 is False  # CPU trials change nothing
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
        assert set_tf32(torch.device("cuda"), True) is True
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert set_tf32(torch.device("cuda"), False) is False  # never inherited from a trial
        assert not torch.backends.cuda.matmul.allow_tf32
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
        assert set_tf32(torch.device("cuda"), True) is False  # pre-Ampere: no TF32 cores
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    assert baseline_key(compose("tf32=false")) == baseline_key(compose())  # CPU: same numbers
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert baseline_key(compose("device=cuda", "tf32=false")) != baseline_key(
        compose("device=cuda")
    )
    with pytest.raises(ConfigError, match=r"tf32='yes'; allowed: true or false"):
        validate_config(compose("tf32=yes"))
