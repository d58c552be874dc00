"""Offline assets: code/wiki cleaning, manifests, idempotent prep (fast, no downloads).

Tests that need the real prepared assets are marked ``slow``.
"""

from __future__ import annotations

import ast
import bz2
import hashlib
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mudman.assets import (
    ASSET_NAMES,
    AssetError,
    MissingAssetError,
    asset_path,
    asset_status,
    default_cache_dir,
    prepare,
    prepare_one,
    require_asset,
)
from mudman.assets.__main__ import main
from mudman.assets.stdlib_python import (
    collect_functions,
    extract_functions,
    strip_docstrings_and_comments,
)
from mudman.assets.store import (
    atomic_directory,
    clean_stale_temp_dirs,
    sha256_file,
    verify_asset,
    write_manifest,
)
from mudman.assets.wheels import WheelSpec, extract_member, fetch_wheel
from mudman.assets.wikipedia import extract_articles, iter_pages, strip_wiki_markup

# ---------------------------------------------------------------- docstrings and comments


def test_strip_removes_function_docstring_comments_and_blank_lines():
    source = '''
def f(x):
    """Doc string.

    More doc.
    """
    # a full-line comment
    y = x + 1  # trailing comment

    return y
'''
    assert strip_docstrings_and_comments(source) == "def f(x):\n    y = x + 1\n    return y"


def test_strip_removes_nested_docstrings_and_keeps_code_valid():
    source = '''"""Module docstring."""
def outer():
    """Outer."""
    def inner():
        \'\'\'Inner.\'\'\'
        return 1
    class Error(Exception):
        """Only a docstring: becomes pass."""
    class Box:
        "Box doc"
        size = 3
    return inner, Error, Box
'''
    out = strip_docstrings_and_comments(source)
    assert "Outer" not in out and "Inner" not in out and "doc" not in out.lower()
    assert "class Error(Exception):\n        pass" in out
    assert "class Box:\n        size = 3" in out
    ast.parse(out)


def test_strip_keeps_hash_inside_strings_and_fstrings():
    source = (
        "def g(name):\n"
        "    a = 'not # a comment'  # real comment\n"
        '    b = f"{name} #{len(name)}"  # another\n'
        '    c = "#"\n'
        "    return a, b, c\n"
    )
    out = strip_docstrings_and_comments(source)
    assert "'not # a comment'" in out
    assert 'f"{name} #{len(name)}"' in out
    assert 'c = "#"' in out
    assert "real comment" not in out and "another" not in out


def test_strip_keeps_decorators_continuations_and_multiline_strings():
    source = (
        "@decorator(1)\n"
        "def h():\n"
        "    total = 1 + \\\n"
        "        2\n"
        '    text = """first\n'
        "\n"
        "    # not a comment  \n"
        '"""\n'
        "    return total, text\n"
    )
    out = strip_docstrings_and_comments(source)
    assert out.startswith("@decorator(1)\ndef h():")
    assert "total = 1 + \\\n        2" in out
    # The blank line, the '#' and the trailing spaces belong to the string: untouched.
    assert 'text = """first\n\n    # not a comment  \n"""' in out
    ns: dict = {}
    exec(compile(out.replace("@decorator(1)\n", ""), "<test>", "exec"), ns)
    assert ns["h"]() == (3, "first\n\n    # not a comment  \n")


def test_strip_one_line_def_with_docstring_only():
    assert strip_docstrings_and_comments('def f(): "doc"') == "def f(): pass"
    assert strip_docstrings_and_comments('def f():\n    "doc"; return 2') == (
        "def f():\n    return 2"
    )


def test_strip_rejects_invalid_python():
    with pytest.raises(SyntaxError):
        strip_docstrings_and_comments("def broken(:\n    pass")


# ---------------------------------------------------------------- function extraction

_MODULE = '''
import os

def short():
    return 1

def three_lines(a):
    b = a * 2
    return b

class Thing:
    """A class."""

    @property
    def value(self):
        """The value."""
        # computed
        return self._value

    async def fetch(self, url):
        async with url as handle:
            data = await handle.read()
        return data

    def outer(self):
        def helper(x):
            y = x + 1
            return y
        return helper(2)

def three_lines_again(a):
    b = a * 2
    return b
'''


def test_extract_functions_counts_filter_dedup_and_dedent():
    texts = extract_functions(_MODULE)
    # short() has 2 lines (dropped); three_lines_again differs by name only, so it stays;
    # value (decorator + 2 lines), fetch, outer and the nested helper are all >= 3 lines.
    assert [t.splitlines()[0] for t in texts] == [
        "def three_lines(a):",
        "@property",
        "async def fetch(self, url):",
        "def outer(self):",
        "def helper(x):",
        "def three_lines_again(a):",
    ]
    value = texts[1]
    assert value == "@property\ndef value(self):\n    return self._value"
    for text in texts:
        ast.parse(text)  # dedented and still valid Python
        assert '"""' not in text and "#" not in text


def test_extract_functions_deduplicates_identical_text_and_respects_min_lines():
    body = "def f(a):\n    b = a\n    return b\n"
    source = body + "\nclass A:\n    " + body.replace("\n", "\n    ").rstrip() + "\n"
    assert extract_functions(source) == [body.strip()]
    assert len(extract_functions("def g():\n    return 1\n", min_lines=2)) == 1
    assert extract_functions("def g():\n    return 1\n") == []


def test_extract_keeps_multiline_string_content_when_dedenting():
    source = 'class K:\n    def m(self):\n        s = """a\n  b"""\n        return s\n'
    (text,) = extract_functions(source)
    assert text == 'def m(self):\n    s = """a\n  b"""\n    return s'


def _fake_stdlib(root: Path) -> Path:
    files = {
        "alpha.py": "def a1(x):\n    y = x\n    return y\n",
        "pkg/beta.py": "def a1(x):\n    y = x\n    return y\n\n"
        "def b2():\n    q = 1\n    return q\n",
        "pkg/test/test_beta.py": "def t1():\n    x = 1\n    assert x\n",
        "tests/helper.py": "def t2():\n    x = 1\n    return x\n",
        "idlelib/idle_test/x.py": "def t3():\n    x = 1\n    return x\n",
        "site-packages/lib.py": "def s1():\n    x = 1\n    return x\n",
        "broken.py": "def py2():\n    print 'hello'\n    return 1\n",
        "latin.py": "# -*- coding: latin-1 -*-\ndef l1():\n    s = 'caf\xe9'\n    return s\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        encoding = "latin-1" if rel == "latin.py" else "utf-8"
        path.write_bytes(text.encode(encoding))
    return root


def test_collect_functions_excludes_tests_skips_broken_and_sorts(tmp_path):
    records, stats = collect_functions(_fake_stdlib(tmp_path / "stdlib"))
    assert [r["source"] for r in records] == ["alpha.py:1", "latin.py:2", "pkg/beta.py:5"]
    assert records[1]["text"] == "def l1():\n    s = 'café'\n    return s"
    assert stats["files_skipped"] == 1  # broken.py (Python 2)
    assert stats["duplicates_dropped"] == 1  # pkg/beta.py:1 repeats alpha.py:1 exactly


# ---------------------------------------------------------------- wiki markup


def test_wiki_templates_links_and_emphasis():
    text = (
        "{{Infobox person|name={{nowrap|X}}|born={{birth date|1900|1|1}}}}\n"
        "'''Ada''' was a [[mathematician]] and [[Writer (person)|writer]] "
        "from [[London]]s.{{citation needed|date=May 2016}}"
    )
    assert strip_wiki_markup(text) == "Ada was a mathematician and writer from Londons."


def test_wiki_refs_comments_files_categories_tables_and_entities():
    text = (
        "[[File:Map.png|thumb|A map of [[Europe]]]]\n"
        "Paris<ref name=a>{{cite web|url=http://x}}</ref> is large<ref name=b/>."
        "<!-- hidden\ncomment --> It&nbsp;has a &lt;river&gt; &amp; a "
        "[http://example.org tower].\n"
        "{| class=wikitable\n|-\n| cell\n{|\n| nested\n|}\n| after nested\n|}\n"
        "[[Category:Cities]]\n[[de:Paris]]"
    )
    assert strip_wiki_markup(text) == "Paris is large. It has a <river> & a tower."


def test_wiki_headings_lists_paragraphs_and_back_matter():
    text = (
        "First paragraph line.\n\n"
        "== History ==\n"
        "Second ''paragraph''.\n"
        "* item one\n"
        "# item two\n\n"
        "=== Sub ===\n"
        "Third {{lang|fr|bonjour}} ({{IPA|x}}) with {{convert|5|km}}.\n"
        "== References ==\n"
        "* Some book\n"
        "=== Notes ===\n"
        "Note text\n"
        "== Legacy ==\n"
        "Last."
    )
    assert strip_wiki_markup(text) == (
        "First paragraph line.\n\n"
        "Second paragraph.\nitem one\nitem two\n\n"
        "Third bonjour with 5 km.\n\n"
        "Last."
    )


def test_wiki_unbalanced_template_does_not_swallow_the_article():
    assert strip_wiki_markup("{{broken|x\nText survives.") == "broken|x\nText survives."


_DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>Real</title><ns>0</ns><id>1</id>
    <revision><text>'''Real''' is an article. {words}</text></revision></page>
  <page><title>Old</title><ns>0</ns><id>2</id><redirect title="Real" />
    <revision><text>#REDIRECT [[Real]]</text></revision></page>
  <page><title>Wikipedia:Policy</title><ns>4</ns><id>3</id>
    <revision><text>{words}</text></revision></page>
  <page><title>Thing (disambiguation)</title><ns>0</ns><id>4</id>
    <revision><text>{words}</text></revision></page>
  <page><title>Stub</title><ns>0</ns><id>5</id>
    <revision><text>Too short.</text></revision></page>
</mediawiki>
"""


def test_dump_parsing_keeps_only_real_articles(tmp_path):
    dump = tmp_path / "dump.xml.bz2"
    dump.write_bytes(bz2.compress(_DUMP.format(words="word " * 60).encode()))
    pages = list(iter_pages(dump))
    assert [p["title"] for p in pages][:2] == ["Real", "Old"] and pages[1]["redirect"]
    articles = extract_articles(pages)
    assert [a["title"] for a in articles] == ["Real"]
    assert articles[0]["text"].startswith("Real is an article. word word")


# ---------------------------------------------------------------- store and wheels


def test_require_asset_on_empty_cache_names_asset_and_command(tmp_path):
    with pytest.raises(MissingAssetError) as info:
        require_asset("wikipedia", tmp_path)
    message = str(info.value)
    assert "'wikipedia'" in message and str(tmp_path / "assets" / "wikipedia") in message
    assert "make assets" in message and "python -m mudman.assets --only wikipedia" in message
    assert isinstance(info.value, FileNotFoundError)


def test_unknown_asset_name_lists_allowed(tmp_path):
    with pytest.raises(ValueError, match="python-stdlib"):
        asset_path("nope", tmp_path)
    with pytest.raises(ValueError):
        require_asset("nope", tmp_path)
    assert ASSET_NAMES[:3] == ("smollm2-135m", "python-stdlib", "wikipedia")
    assert set(ASSET_NAMES[3:]) == {"go-definitions", "house", "mmlu"}


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MUDMAN_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert asset_path("wikipedia") == tmp_path / "c" / "assets" / "wikipedia"
    monkeypatch.delenv("MUDMAN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "mudman"


def test_manifest_verification_detects_corruption(tmp_path):
    asset = tmp_path / "a"
    asset.mkdir()
    (asset / "data.txt").write_text("hello")
    write_manifest(asset, {"key": {"r": 1}, "files": {"data.txt": sha256_file(asset / "data.txt")}})
    assert verify_asset(asset, {"r": 1}) is None
    assert verify_asset(asset, {"r": 2}).startswith("stale")
    (asset / "data.txt").write_text("hellO")
    assert verify_asset(asset, {"r": 1}) == "checksum mismatch for data.txt"
    (asset / "data.txt").unlink()
    assert verify_asset(asset, {"r": 1}) == "missing file data.txt"
    assert verify_asset(tmp_path / "none") == "missing"


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "assets" / "x"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "full.txt").write_text("done")
    assert [p.name for p in target.parent.iterdir()] == ["x"]
    assert (target / "full.txt").read_text() == "done"


@pytest.mark.spawns
def test_stale_temp_dirs_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".wikipedia.tmp-{dead.pid}-0123abcd"
    mine = tmp_path / f".work-{os.getpid()}-0123abcd"
    kept = tmp_path / "wikipedia"
    for path in (stale, mine, kept):
        path.mkdir()
    clean_stale_temp_dirs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, kept.name])


def test_extract_member_and_fetch_wheel_reuse_verified_file(tmp_path, monkeypatch):
    wheel = tmp_path / "downloads" / "pkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data.txt", "payload")
    spec = WheelSpec("pkg", "1.0", wheel.name, hashlib.sha256(wheel.read_bytes()).hexdigest())

    def no_network(*args, **kwargs):
        raise AssertionError("pip must not run when the verified wheel is present")

    monkeypatch.setattr("mudman.assets.wheels.subprocess.run", no_network)
    assert fetch_wheel(spec, wheel.parent) == wheel
    out = extract_member(wheel, "pkg/data.txt", tmp_path / "out" / "data.txt")
    assert out.read_text() == "payload"
    with pytest.raises(AssetError, match="no member"):
        extract_member(wheel, "pkg/missing.txt", tmp_path / "out" / "m.txt")


def test_fetch_wheel_rejects_checksum_mismatch(tmp_path, monkeypatch):
    spec = WheelSpec("pkg", "1.0", "pkg-1.0-py3-none-any.whl", "0" * 64)

    class Done:
        returncode, stdout, stderr = 0, "", ""

    def fake_pip(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / spec.filename).write_bytes(b"not the pinned wheel")
        return Done()

    monkeypatch.setattr("mudman.assets.wheels.subprocess.run", fake_pip)
    with pytest.raises(AssetError, match="sha256 mismatch"):
        fetch_wheel(spec, tmp_path)
    assert not (tmp_path / spec.filename).exists()


# ---------------------------------------------------------------- idempotent prep


def test_stdlib_asset_prep_is_idempotent_and_repairs_corruption(tmp_path):
    cache, root = tmp_path / "cache", _fake_stdlib(tmp_path / "stdlib")
    first = prepare_one("python-stdlib", cache, stdlib_root=root)
    assert first.status == "built" and first.reason == "missing"
    output = first.path / "functions.jsonl"
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["source"] for r in rows] == ["alpha.py:1", "latin.py:2", "pkg/beta.py:5"]
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest["counts"]["functions"] == 3 and manifest["licence"] == "PSF-2.0"
    assert manifest["files"] == {"functions.jsonl": sha256_file(output)}
    assert manifest["source"]["python_version"]
    mtime = output.stat().st_mtime_ns

    second = prepare_one("python-stdlib", cache, stdlib_root=root)
    assert second.status == "cached" and second.seconds < 1.0
    assert output.stat().st_mtime_ns == mtime
    assert prepare(["python-stdlib"], cache, stdlib_root=root) == {"python-stdlib": first.path}
    assert output.stat().st_mtime_ns == mtime
    assert require_asset("python-stdlib", cache) == first.path
    assert asset_status("python-stdlib", cache, stdlib_root=root) == "ok"

    output.write_text("corrupted\n")
    third = prepare_one("python-stdlib", cache, stdlib_root=root)
    assert third.status == "built" and "checksum" in third.reason
    assert sha256_file(output) == manifest["files"]["functions.jsonl"]

    forced = prepare_one("python-stdlib", cache, force=True, stdlib_root=root)
    assert forced.status == "built" and forced.reason == "forced"
    assert sorted(p.name for p in (cache / "assets").iterdir()) == ["python-stdlib"]


def test_cli_list_on_empty_cache(tmp_path, capsys):
    assert main(["--cache-dir", str(tmp_path), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [[name, "missing"] for name in ASSET_NAMES]


def test_cli_rejects_unknown_asset(tmp_path):
    with pytest.raises(SystemExit):
        main(["--cache-dir", str(tmp_path), "--only", "nope"])


# ---------------------------------------------------------------- real assets (slow)


@pytest.mark.slow
def test_real_smollm2_asset_loads_and_predicts_english():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mudman.assets.smollm2 import loss_per_token

    path = require_asset("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (
        model.config.tie_word_embeddings
        and getattr(model.config, "quantization_config", None) is None
    )
    loss = loss_per_token(model, tokenizer, "The cat sat on the mat. It was a sunny day in Paris.")
    assert math.isfinite(loss) and loss < 0.5 * math.log(model.config.vocab_size)


@pytest.mark.slow
def test_real_text_assets_have_expected_sizes():
    functions = (require_asset("python-stdlib") / "functions.jsonl").read_text().splitlines()
    articles = (require_asset("wikipedia") / "articles.jsonl").read_text().splitlines()
    assert len(functions) > 10_000
    assert 90 <= len(articles) <= 110
    first = json.loads(articles[0])
    assert first["title"] == "Anarchism" and "\n\n" in first["text"]
    for name in ("python-stdlib", "wikipedia", "smollm2-135m"):
        assert asset_status(name) == "ok"


@pytest.mark.spawns
def test_import_has_no_heavy_side_effects():
    code = "import sys, mudman.assets; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
