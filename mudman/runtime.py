"""Process settings a trial applies at its start: torch CPU threads and glibc's allocator.

Threads (``threads:`` in the main config). On a CPU shared with other jobs, torch's default
(one thread per core) collapses: an OpenMP barrier waits for the slowest thread, and a thread
that the scheduler parks stalls all of them (a SmolLM2 loop measured 44-100 s with 2 threads
under load against 13-15 s with 1; see docs/performance.md for this machine's table).
``threads: auto`` therefore picks:

* the value of ``OMP_NUM_THREADS`` when it is set (the user's choice, or the Optuna sweeper's
  per-worker share of the cores): torch already read it, nothing is changed;
* on CUDA, torch's default (the CPU only launches kernels);
* on CPU, 1 thread: measured within a few percent of 2 threads on an idle 2-core machine for the
  models this project runs on CPU, and several times faster under load.

``threads: N`` (an int >= 1) forces N. The thread count can change the last bits of CPU
reductions, so it is recorded in results.json (``threads``) and is part of a run's identity.

Allocator. glibc returns freed blocks above its mmap threshold to the kernel and faults them in
again on the next allocation of that size; every loop allocates and frees the same gradients,
so a trial spends its time re-faulting pages. ``tune_allocator`` raises the mmap threshold to
its maximum (32 MiB on 64-bit glibc; larger blocks are always mapped afresh) and the trim
threshold to 2 GiB, in-process (``mallopt``), so it applies to every process that runs a trial
(``python -m mudman``, sweep workers, scripts) without environment variables, which glibc reads
only at process start. A process then keeps its freed heap for reuse instead of returning it.
Allocation placement never changes a computed number.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

import torch

from mudman.errors import ConfigError

log = logging.getLogger(__name__)

THREAD_ENV = "OMP_NUM_THREADS"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's cap on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # keep up to 2 GiB of free heap: 64 MiB still re-faulted


def check_threads(value: object) -> None:
    """``threads`` must be ``auto`` or an int >= 1 (checked before anything loads)."""
    ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    if not ok:
        raise ConfigError(f"threads={value!r} is out of range; allowed: auto or an int >= 1")


def choose_threads(value: object, device_type: str, environ: dict | None = None) -> int | None:
    """The thread count to set, or None to leave torch's (see the module docstring)."""
    check_threads(value)
    if value != "auto":
        return int(value)
    env = os.environ if environ is None else environ
    if env.get(THREAD_ENV) or device_type != "cpu":
        return None
    return 1


def apply_thread_policy(value: object, device: torch.device) -> int:
    """Set torch's CPU threads per ``threads:``; returns the count the trial runs with."""
    threads = choose_threads(value, device.type)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def tune_allocator() -> bool:
    """Keep freed large blocks in the heap (glibc only); True when the settings took effect."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without mallopt)
        return False
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    return ok and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
