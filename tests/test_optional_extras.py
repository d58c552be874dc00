"""Optional features say which extra to install when their library is missing."""

from __future__ import annotations

import importlib.util

import pytest

from mudman.errors import ConfigError
from mudman.report.__main__ import main as report_main
from mudman.sweeping.storage import make_storage


def _hide(monkeypatch, hidden: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == hidden else real(name, *a)
    )


def test_postgres_storage_without_psycopg_names_the_extra(monkeypatch):
    _hide(monkeypatch, "psycopg")
    with pytest.raises(
        ConfigError, match=r"needs the psycopg driver.*pip install -e '\.\[postgres\]'"
    ):
        make_storage("postgresql://mudman:secret@db.internal/mudman", 10, 30)
    with pytest.raises(ConfigError) as err:
        make_storage("postgresql+psycopg://mudman:secret@db.internal/mudman", 10, 30)
    assert "secret" not in str(err.value)  # the URL is masked


def test_report_figures_without_matplotlib_name_the_extra(monkeypatch, capsys, tmp_path):
    _hide(monkeypatch, "matplotlib")
    with pytest.raises(SystemExit) as exit_info:
        report_main(["--storage", f"sqlite:///{tmp_path}/none.db"])
    assert exit_info.value.code == 2
    assert "figures need matplotlib: pip install -e '.[report]' (or --no-plots)" in (
        capsys.readouterr().err
    )
