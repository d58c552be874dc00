"""Thread policy and allocator tuning applied at the start of a trial (mudman/runtime.py)."""

from __future__ import annotations

import pytest
import torch

from mudman.errors import ConfigError
from mudman.runtime import apply_thread_policy, check_threads, choose_threads, tune_allocator


def test_auto_is_one_cpu_thread_unless_omp_num_threads_is_set():
    assert choose_threads("auto", "cpu", environ={}) == 1
    assert choose_threads("auto", "cpu", environ={"OMP_NUM_THREADS": "3"}) is None  # respected
    assert choose_threads("auto", "cuda", environ={}) is None  # torch's default
    assert choose_threads(4, "cpu", environ={"OMP_NUM_THREADS": "3"}) == 4  # explicit wins


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True, None])
def test_bad_threads_name_the_key_and_what_is_allowed(bad):
    with pytest.raises(ConfigError, match=r"threads=.*allowed: auto or an int >= 1"):
        check_threads(bad)


def test_bad_threads_fail_at_config_time(compose):
    from mudman.config import validate_config

    with pytest.raises(ConfigError, match=r"threads=0"):
        validate_config(compose("threads=0"))


def test_the_policy_sets_torch_threads_and_reports_them(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        assert apply_thread_policy(2, torch.device("cpu")) == 2 == torch.get_num_threads()
        assert apply_thread_policy("auto", torch.device("cpu")) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_trial_records_its_threads(compose):
    from mudman.trial import run_trial

    before = torch.get_num_threads()
    try:
        record = run_trial(compose("threads=2"))
    finally:
        torch.set_num_threads(before)
    assert record["threads"] == 2 and record["status"] == "completed"


def test_tuned_allocator_reuses_freed_blocks_without_page_faults():
    """Allocating and freeing the same 24 MiB block: faulted in once, not every time."""
    import platform
    import resource

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() is True
    torch.ones(6 * 2**20).sum()  # warm: the block now sits in the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.ones(6 * 2**20).sum()  # 24 MiB, touched: 6144 faults if it came from the kernel
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 6144, faults
