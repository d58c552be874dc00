"""Compare the offline Wikipedia corpus made by our wiki-markup stripper with library strippers.

    pip install mwparserfromhell==0.7.2 wikitextparser==3.0.0   # not project dependencies
    python scripts/compare_wiki_markup.py --dump <enwiki ...-shortened.bz2> [--tokenizer DIR]

The dump is the one ``mudman.assets.wikipedia`` reads (a member of the pinned gensim wheel; after
``make assets-main`` it is under ``<cache>/downloads/``). For each stripper it prints the
articles kept, paragraphs, paragraphs of >= 100 tokens (what the retain set is built from, with
``--tokenizer``; else words), markup left in the text, and a few differing paragraphs. Every
stripper sees the same articles (our redirect/disambiguation filter) and the same paragraph
split; what differs is only wikitext -> text.
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
from collections.abc import Callable
from pathlib import Path

from mudman.assets.wikipedia import (
    MIN_ARTICLE_WORDS,
    _drop_back_matter,
    is_article,
    iter_pages,
    strip_wiki_markup,
)

# Markup that should never survive into language-model text, by what it signals.
LEFTOVERS = {
    "template {{ }}": re.compile(r"\{\{|\}\}"),
    "link [[ ]]": re.compile(r"\[\[|\]\]"),
    "table row | ! {|": re.compile(r"^\s*(\{\||\|[-}+]?|!)", re.MULTILINE),
    "html tag": re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*[^<>]*>"),
    "entity &x;": re.compile(r"&[a-zA-Z]+;|&#\d+;"),
    "bold/italic ''": re.compile(r"''"),
    "heading ==": re.compile(r"^\s*==", re.MULTILINE),
    "media/category": re.compile(r"\b(File|Image|Category):|\bthumb\|"),
    "template key=value": re.compile(r"^\s*\|?\s*[a-z_ ]+\s*=\s*\S", re.MULTILINE),
}


def _mwparserfromhell(text: str) -> str:
    import mwparserfromhell

    return mwparserfromhell.parse(_drop_back_matter(text)).strip_code(normalize=True, collapse=True)


def _wikitextparser(text: str) -> str:
    import wikitextparser

    return wikitextparser.parse(_drop_back_matter(text)).plain_text()


STRIPPERS: dict[str, Callable[[str], str]] = {
    "ours": strip_wiki_markup,
    "mwparserfromhell strip_code": _mwparserfromhell,
    "wikitextparser plain_text": _wikitextparser,
}


def paragraphs_of(text: str) -> list[str]:
    """The corpus's paragraph split (blank-line separated, blank-only lines dropped)."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        block = "\n".join(line.strip() for line in block.split("\n") if re.search(r"\w", line))
        if block:
            out.append(block)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, help="count tokens with this tokenizer dir")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    pages = [p for p in iter_pages(args.dump) if is_article(p)]
    length: Callable[[str], int] = lambda s: len(s.split())  # noqa: E731
    unit = "words"
    if args.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(args.tokenizer))
        length, unit = (lambda s: len(tok(s)["input_ids"])), "tokens"
    corpora: dict[str, dict[str, list[str]]] = {}
    print(f"{len(pages)} articles in the dump after the redirect/disambiguation filter")
    header = f"{'stripper':28} {'articles':>8} {'paragr.':>8} {'>=100 ' + unit:>12} {'words':>9}"
    print(header + "  markup left (occurrences)")
    for name, strip in STRIPPERS.items():
        corpus = {}
        for page in pages:
            text = strip(page["text"])
            if len(text.split()) >= MIN_ARTICLE_WORDS:
                corpus[page["title"]] = paragraphs_of(text)
        corpora[name] = corpus
        paras = [p for ps in corpus.values() for p in ps]
        long = sum(length(p) >= 100 for p in paras)
        words = sum(len(p.split()) for p in paras)
        joined = "\n\n".join(paras)
        left = {k: len(rx.findall(joined)) for k, rx in LEFTOVERS.items()}
        left_text = ", ".join(f"{k} {v}" for k, v in left.items() if v)
        print(f"{name:28} {len(corpus):>8} {len(paras):>8} {long:>12} {words:>9}  {left_text}")
    ours = corpora["ours"]
    rng = random.Random(0)
    for name, corpus in corpora.items():
        if name == "ours":
            continue
        titles = sorted(set(ours) & set(corpus))
        same = sum(ours[t] == corpus[t] for t in titles)
        print(f"\n== {name}: {same} of {len(titles)} shared articles identical; sample diffs:")
        differing = [t for t in titles if ours[t] != corpus[t]]
        for title in rng.sample(differing, min(args.samples, len(differing))):
            a, b = ours[title], corpus[title]
            diff = difflib.unified_diff(a, b, "ours", name, n=0, lineterm="")
            lines = [line[:240] for line in diff][:8]
            print(f"--- {title}\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
