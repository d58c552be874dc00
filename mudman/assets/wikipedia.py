"""Real English Wikipedia articles, taken from the test data that ships inside the gensim wheel.

The gensim wheel carries a shortened 2016 dump of the first enwiki articles (MediaWiki XML). We
download the wheel only (never install gensim), read the dump, keep main-namespace articles that
are not redirects or disambiguation pages, and turn wikitext into plain paragraphs with our own
small markup stripper (good enough for language-model text, not a full wikitext parser).
"""

from __future__ import annotations

import bz2
import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mudman.assets.store import work_directory
from mudman.assets.wheels import WheelSpec, extract_member, fetch_wheel

RECIPE = 1
OUTPUT_FILE = "articles.jsonl"
WHEEL = WheelSpec(
    package="gensim",
    version="4.4.0",
    filename="gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256="91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
    # Pin the platform tags so every host picks this exact wheel (the data file is what we want).
    pip_args=(
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
    ),
)
MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
# Revisions in this dump date from 2003 to 2016-05 (MediaWiki 1.27); Wikipedia text of that era is
# CC BY-SA 3.0 and, for most of it, also GFDL 1.2-or-later. CC BY-SA 4.0 only applies from 2023.
LICENCE = "CC-BY-SA-3.0"
LICENCE_NOTE = (
    "Wikipedia contributors, English Wikipedia revisions 2003-2016 (dump generated with MediaWiki "
    "1.27). Text is licensed CC BY-SA 3.0 Unported; most of it is also available under GFDL "
    "1.2-or-later (dual-licensed). Attribution: the contributors listed in each article's page "
    "history on the English Wikipedia. The gensim package (LGPL-2.1) only redistributes the dump."
)
MIN_ARTICLE_WORDS = 50

# Namespace prefixes whose [[links]] are not running text (media, categories).
_DROP_LINK_PREFIXES = frozenset({"file", "image", "media", "category"})
# Tags whose content is not prose: removed together with what they enclose.
_DROP_TAG_CONTENT = (
    "ref",
    "gallery",
    "timeline",
    "imagemap",
    "math",
    "chem",
    "score",
    "syntaxhighlight",
    "source",
    "references",
    "graph",
    "mapframe",
)
_DISAMBIG_TEMPLATE = re.compile(
    r"\{\{\s*(disambig[^|}]*|dab|disamb|hndis|geodis|set index[^|}]*|surname|given name)\s*[|}]",
    re.IGNORECASE,
)
_INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$")


_UNITS = {
    "sqmi": "sq mi",
    "km2": "km²",
    "sqkm": "km²",
    "m2": "m²",
    "sqft": "sq ft",
    "C": "°C",
    "F": "°F",
    "K": "K",
    "mi": "mi",
    "km": "km",
    "ft": "ft",
    "m": "m",
}
_RANGE_WORDS = frozenset({"to", "-", "–", "and", "or", "by", "x", "×", "+"})
# Inline templates whose first positional argument is the visible text.
_FIRST_ARG_TEMPLATES = frozenset(
    {
        "nowrap",
        "nobr",
        "small",
        "smaller",
        "big",
        "larger",
        "sic",
        "abbr",
        "vanchor",
        "flag",
        "flagcountry",
        "quote",
        "cquote",
        "nihongo",
        "nowrap begin",
        "keypress",
        "mono",
        "code",
        "em",
        "strong",
        "formatnum",
        "ill",
        "interlanguage link",
    }
)
_SYMBOL_TEMPLATES = {
    "ndash": "–",
    "mdash": "—",
    "snd": " – ",
    "spaced ndash": " – ",
    "nbsp": " ",
    "'": "'",
    "pipe": "|",
    "!": "|",
    "=": "=",
}


def _split_args(inner: str) -> list[str]:
    """Split template content on ``|`` that are not inside a ``[[link|label]]``."""
    parts, depth, current = [], 0, []
    i = 0
    while i < len(inner):
        if inner.startswith("[[", i):
            depth += 1
            current.append("[[")
            i += 2
        elif inner.startswith("]]", i) and depth:
            depth -= 1
            current.append("]]")
            i += 2
        elif inner[i] == "|" and not depth:
            parts.append("".join(current))
            current = []
            i += 1
        else:
            current.append(inner[i])
            i += 1
    parts.append("".join(current))
    return parts


def _render_template(inner: str) -> str:
    """Visible text of a few common inline templates (lang, convert, ...); '' for the rest.

    Infoboxes, citations, hatnotes, navboxes and the like are dropped entirely.
    """
    name, *args = _split_args(inner)
    name = name.strip().lower().replace("_", " ")
    pos = [a.strip() for a in args if not re.match(r"^\s*[\w -]+\s*=", a)]
    if name in _SYMBOL_TEMPLATES:
        return _SYMBOL_TEMPLATES[name]
    if name in _FIRST_ARG_TEMPLATES:
        return pos[0] if pos else ""
    if name == "lang" or name == "transl":
        return pos[-1] if len(pos) >= 2 else ""
    if name.startswith("lang-"):
        return pos[0] if pos else ""
    if name == "chem":
        return "".join(pos)
    if name in ("as of", "asof"):
        return ("As of " + " ".join(pos[:1])) if pos else ""
    if name in ("circa", "c."):
        return ("c. " + pos[0]) if pos else "c."
    if name == "angbr":
        return f"⟨{pos[0]}⟩" if pos else ""
    if name == "frac" and pos:
        return "/".join(pos[-2:]) if len(pos) < 3 else f"{pos[0]} {pos[1]}/{pos[2]}"
    if name in ("convert", "cvt") and len(pos) >= 2:
        word = pos[1].removesuffix("(-)")
        if len(pos) >= 4 and word in _RANGE_WORDS:
            return f"{pos[0]} {word} {pos[2]} {_UNITS.get(pos[3], pos[3])}"
        return f"{pos[0]} {_UNITS.get(pos[1], pos[1])}"
    return ""


def _strip_templates(text: str) -> str:
    """Replace ``{{...}}`` (nested) by their rendering; an unclosed ``{{`` is dropped alone."""
    out: list[str] = []
    i, depth, start, n = 0, 0, 0, len(text)
    while i < n:
        if text.startswith("{{", i):
            if depth == 0:
                start = i
            depth += 1
            i += 2
        elif depth and text.startswith("}}", i):
            depth -= 1
            i += 2
            if depth == 0:
                out.append(_render_template(_strip_templates(text[start + 2 : i - 2])))
        else:
            if depth == 0:
                out.append(text[i])
            i += 1
    if depth:  # unbalanced: keep what followed the unclosed "{{" instead of losing the rest
        out.append(_strip_templates(text[start + 2 :]))
    return "".join(out)


_HEADING_PARTS = re.compile(r"^\s*(=+)\s*(.*?)\s*=+\s*$")
# Sections that are reference lists or link farms rather than prose.
_BACK_MATTER = frozenset(
    {
        "references",
        "external links",
        "further reading",
        "see also",
        "notes",
        "bibliography",
        "sources",
        "footnotes",
        "citations",
        "notes and references",
        "references and notes",
        "works cited",
        "literature",
        "reading list",
        "selected bibliography",
        "other websites",
    }
)


def _drop_back_matter(text: str) -> str:
    """Remove "References", "External links", ... sections (down to the next heading of the same
    or a higher level)."""
    out, skip_level = [], 0
    for line in text.split("\n"):
        heading = _HEADING_PARTS.match(line)
        if heading:
            level = len(heading.group(1))
            if skip_level and level > skip_level:
                continue
            skip_level = level if heading.group(2).strip().lower() in _BACK_MATTER else 0
        if not skip_level:
            out.append(line)
    return "\n".join(out)


def _remove_tables(text: str) -> str:
    """Drop ``{| ... |}`` tables (markers at line start), nested tables included."""
    out, depth = [], 0
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("{|"):
            depth += 1
            continue
        if depth and stripped.startswith("|}"):
            depth -= 1
            continue
        if not depth:
            out.append(line)
    return "\n".join(out)


def _link_text(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    target = target.strip()
    visible_namespace = target.startswith(":")  # [[:Category:X]] is a link, not a tag
    prefix = target.lstrip(":").split(":", 1)[0].strip().lower() if ":" in target else ""
    if prefix in _DROP_LINK_PREFIXES and not visible_namespace:
        return ""
    if label:
        return label.split("|")[-1]
    if prefix and _INTERLANGUAGE.match(prefix) and not visible_namespace:
        return ""  # interlanguage link such as [[de:Anarchismus]]
    return target.lstrip(":")


def _replace_links(text: str) -> str:
    inner_link = re.compile(r"\[\[([^\[\]]*)\]\]")
    while True:  # innermost first, so captions with links inside [[File:...]] go away whole
        new = inner_link.sub(_link_text, text)
        if new == text:
            break
        text = new
    return text.replace("[[", "").replace("]]", "")


_EXTERNAL_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_HEADING = re.compile(r"^\s*=+.*=+\s*$")
_LIST_MARKER = re.compile(r"^[*#:;]+\s*")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*?/?>")
_WORDY = re.compile(r"\w")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def strip_wiki_markup(text: str) -> str:
    """Plain text of a wikitext article: paragraphs separated by one blank line.

    Drops templates (except the visible text of a few inline ones such as ``lang`` and
    ``convert``), tables, media/category links, refs, comments, tags, headings, list markers and
    bold/italic quotes; keeps link labels and the text of external links.
    """
    text = text.replace("\r\n", "\n")
    text = re.sub(r"<!--.*?(-->|$)", "", text, flags=re.DOTALL)
    text = _drop_back_matter(text)
    for tag in _DROP_TAG_CONTENT:
        text = re.sub(rf"<{tag}\b[^>]*/>", "", text, flags=re.IGNORECASE)
        text = re.sub(rf"<{tag}\b[^>]*>.*?</{tag}\s*>", "", text, flags=re.IGNORECASE | re.DOTALL)
    text = _strip_templates(text)
    text = _remove_tables(text)
    text = _replace_links(text)
    text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    text = _BR.sub(" ", text)
    text = _TAG.sub("", text)
    text = re.sub(r"__[A-Z]+__", "", text)  # magic words such as __NOTOC__
    text = re.sub(r"'{2,}", "", text)  # ''italic'', '''bold''', '''''both'''''
    lines = []
    for line in text.split("\n"):
        if _HEADING.match(line) or re.fullmatch(r"\s*-{4,}\s*", line):
            lines.append("")  # a heading or rule also ends the paragraph before it
            continue
        lines.append(_LIST_MARKER.sub("", line.strip()))
    text = html.unescape("\n".join(lines)).replace("\xa0", " ")
    text = re.sub(r"\([ \t]*[,;]?[ \t]*\)", "", text)  # "()" left behind by removed templates
    text = re.sub(r"\([ \t]*[,;][ \t]*", "(", text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,.;:!?)])", r"\1", text)
    text = re.sub(r"\( +", "(", text)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        block = "\n".join(line.strip() for line in block.split("\n") if _WORDY.search(line))
        if block:
            paragraphs.append(block)
    return "\n\n".join(paragraphs)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def iter_pages(dump: Path) -> Iterator[dict[str, Any]]:
    """Pages of a (bz2) MediaWiki XML dump: title, ns, id, redirect flag and wikitext."""
    opener = bz2.open if dump.suffix == ".bz2" else open
    with opener(dump, "rb") as fh:
        for _, elem in ET.iterparse(fh, events=("end",)):
            if _local(elem.tag) != "page":
                continue
            page: dict[str, Any] = {"redirect": False, "text": ""}
            for child in elem:
                name = _local(child.tag)
                if name in ("title", "ns", "id"):
                    page[name] = child.text or ""
                elif name == "redirect":
                    page["redirect"] = True
                elif name == "revision":
                    for sub in child:
                        if _local(sub.tag) == "text":
                            page["text"] = sub.text or ""
            elem.clear()
            yield page


def is_article(page: dict[str, Any]) -> bool:
    """Main namespace, not a redirect, not a disambiguation page."""
    if page.get("ns") != "0" or page["redirect"]:
        return False
    text = page["text"]
    if text.lstrip().upper().startswith("#REDIRECT"):
        return False
    return not (page["title"].endswith("(disambiguation)") or _DISAMBIG_TEMPLATE.search(text))


def extract_articles(
    pages: Iterable[dict[str, Any]], min_words: int = MIN_ARTICLE_WORDS
) -> list[dict[str, str]]:
    """``{"title", "text"}`` for every real article with at least ``min_words`` words of text."""
    articles = []
    for page in pages:
        if not is_article(page):
            continue
        text = strip_wiki_markup(page["text"])
        if len(text.split()) >= min_words:
            articles.append({"title": page["title"], "text": text})
    return articles


def asset_key() -> dict[str, Any]:
    """What the asset depends on: recipe version and the pinned wheel."""
    return {"recipe": RECIPE, "wheel_sha256": WHEEL.sha256}


def build(out_dir: Path, downloads: Path) -> dict[str, Any]:
    """Write ``articles.jsonl`` into ``out_dir``; returns the manifest fields."""
    wheel = fetch_wheel(WHEEL, downloads)
    with work_directory(downloads) as tmp:
        dump = extract_member(wheel, MEMBER, tmp / Path(MEMBER).name)
        pages = list(iter_pages(dump))
    articles = extract_articles(pages)
    with open(out_dir / OUTPUT_FILE, "w", encoding="utf-8", newline="\n") as fh:
        for article in articles:
            fh.write(json.dumps(article, ensure_ascii=False) + "\n")
    return {
        "source": WHEEL.provenance(MEMBER),
        "licence": LICENCE,
        "licence_note": LICENCE_NOTE,
        "counts": {
            "pages_in_dump": len(pages),
            "articles": len(articles),
            "paragraphs": sum(a["text"].count("\n\n") + 1 for a in articles),
            "words": sum(len(a["text"].split()) for a in articles),
            "characters": sum(len(a["text"]) for a in articles),
        },
    }
