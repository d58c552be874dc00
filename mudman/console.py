"""Progress bars and log lines sharing one terminal (docs/console.md).

Bars are drawn only on a terminal: in a log file, a pipe or SLURM output every redraw would be
one more ``\\r`` frame. While bars are drawn, each console log record is written through tqdm
(the bars are cleared, the line written, the bars redrawn), so no line is glued onto a bar.
This is what tqdm's ``logging_redirect_tqdm`` does, except that the project's own console
handlers are kept (their format and their secret-masking filters), only their stream is wrapped.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def bars_wanted(progress: bool) -> bool:
    """``progress=true`` draws bars only when both console streams are terminals: tqdm draws
    on stderr, the log lines go to stdout, and either one captured means a file full of frames."""
    return bool(progress) and is_terminal(sys.stdout) and is_terminal(sys.stderr)


def library_bars(enabled: bool) -> None:
    """The same rule for the Hugging Face libraries' own bars ("Loading weights", shards,
    dataset maps): in a log file each of them is a run of ``\\r`` frames too."""
    import os

    from transformers.utils import logging as hf_logging

    if enabled:
        hf_logging.enable_progress_bar()  # transformers' and huggingface_hub's
    else:
        hf_logging.disable_progress_bar()
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"  # datasets reads it at import
    datasets = sys.modules.get("datasets")
    if datasets is not None:
        (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()


class _BarSafeStream:
    """A console stream whose writes clear the progress bars first and redraw them after."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from tqdm.auto import tqdm

        with tqdm.external_write_mode(file=self.stream):
            written = self.stream.write(text)
            self.stream.flush()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
        return getattr(self.stream, name)


def _console_handlers() -> list[logging.StreamHandler]:
    handlers = []
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if (
                type(handler) is logging.StreamHandler  # not FileHandler (a subclass)
                and handler.stream in (sys.stdout, sys.stderr)
                and handler not in handlers
            ):
                handlers.append(handler)
    return handlers


@contextmanager
def logs_above_bars(enabled: bool = True) -> Iterator[None]:
    """Inside: console log lines are written above the progress bars, never onto one."""
    if not enabled:
        yield
        return
    swapped = [(h, h.setStream(_BarSafeStream(h.stream))) for h in _console_handlers()]
    try:
        yield
    finally:
        for handler, stream in swapped:
            handler.setStream(stream)
