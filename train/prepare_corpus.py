#!/usr/bin/env python3
"""Build the demo-model corpus from "The Rust Programming Language" (the Rust Book) HTML
that ships with the toolchain's rust-docs component, offline:

    $(rustc --print sysroot)/share/doc/rust/html/book/{foreword,ch*,appendix-*}.html

License: the book is part of the Rust project documentation; the toolchain's
share/doc/rust/COPYRIGHT.html lists it under the root entry ("File/Directory: .") with
"License: Apache-2.0 OR MIT" (src/doc/book is not among the exceptions), license texts in
share/doc/rust/licenses/{MIT,Apache-2.0}.txt. (Upstream rust-lang/book: MIT OR Apache-2.0.)

Conversion: the page's <main> element only (sidebar, navigation, scripts, styles, buttons
and SVG icons dropped); hidden doc-test lines of code examples (<span class="boring">)
dropped; code blocks (<pre>) kept verbatim; other text whitespace-collapsed; block elements
(paragraphs, headings, code, ...) separated by a blank line, consecutive list items /
table rows by a single newline. Legacy redirect stubs are not in the file set.

Split (deterministic): files sorted by name; file index i goes to validation iff
i % 20 == 10, else to training. Documents are separated by a form feed (\\f) in
train/out/{train,val}.txt; train/out/corpus_files.json lists the files per split.

Usage:
    python train/prepare_corpus.py [--book DIR] [--out train/out]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

BLOCK = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "section", "div", "table",
         "dl", "ul", "ol", "figure", "hr", "aside"}
LINE = {"li", "tr", "dt", "dd", "br"}
SKIP = {"script", "style", "nav", "button", "svg", "template", "noscript", "head", "title"}


class BookText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.in_main = 0
        self.skip = 0
        self.pre = 0
        self.boring = []   # stack: whether each open <span> is a "boring" span
        self.boring_depth = 0
        self.blocks = []   # list of (kind, text) with kind "text", "item" or "pre"
        self.cur = []
        self.item_depth = 0  # open li / tr / dt / dd elements

    def flush(self):
        txt = "".join(self.cur)
        self.cur = []
        if self.pre:
            return
        txt = re.sub(r"\s+", " ", txt).strip()
        if txt:
            self.blocks.append(("item" if self.item_depth else "text", txt))

    def handle_starttag(self, tag, attrs):
        if tag == "main":
            self.in_main += 1
            return
        if not self.in_main:
            return
        if tag in SKIP:
            self.skip += 1
            return
        if tag == "span":
            cls = dict(attrs).get("class", "") or ""
            is_boring = "boring" in cls.split()
            self.boring.append(is_boring)
            if is_boring:
                self.boring_depth += 1
            return
        if tag == "pre":
            self.flush()
            self.pre += 1
            self.cur = []
            return
        if tag in BLOCK:
            self.flush()
        elif tag in LINE:
            self.flush()
            if tag != "br":
                self.item_depth += 1
        elif tag in ("td", "th"):
            self.cur.append(" ")

    def handle_endtag(self, tag):
        if tag == "main":
            self.flush()
            self.in_main = max(0, self.in_main - 1)
            return
        if not self.in_main:
            return
        if tag in SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag == "span":
            if self.boring and self.boring.pop():
                self.boring_depth -= 1
            return
        if tag == "pre":
            code = "".join(self.cur).rstrip()
            self.cur = []
            self.pre = max(0, self.pre - 1)
            # trim trailing spaces per line, drop leading blank lines
            code = "\n".join(l.rstrip() for l in code.split("\n")).lstrip("\n")
            if code.strip():
                self.blocks.append(("pre", code))
            return
        if tag in BLOCK:
            self.flush()
        elif tag in LINE:
            self.flush()
            if tag != "br":
                self.item_depth = max(0, self.item_depth - 1)

    def handle_data(self, data):
        if not self.in_main or self.skip or self.boring_depth:
            return
        self.cur.append(data)

    def text(self) -> str:
        out = []
        for i, (kind, txt) in enumerate(self.blocks):
            if i:
                both_items = kind == "item" and self.blocks[i - 1][0] == "item"
                out.append("\n" if both_items else "\n\n")
            out.append(txt)
        s = "".join(out).replace("\f", " ").replace("\r", "")
        return re.sub(r"\n{3,}", "\n\n", s).strip() + "\n"


def html_to_text(html: str) -> str:
    p = BookText()
    p.feed(html)
    p.close()
    return p.text()


def default_book_dir() -> str:
    sysroot = subprocess.check_output(["rustc", "--print", "sysroot"], text=True).strip()
    return os.path.join(sysroot, "share", "doc", "rust", "html", "book")


def book_files(book: str) -> list:
    files = [os.path.join(book, "foreword.html")]
    files += glob.glob(os.path.join(book, "ch[0-9][0-9]-*.html"))
    files += glob.glob(os.path.join(book, "appendix-[0-9][0-9]*.html"))
    files = sorted(f for f in files if os.path.isfile(f))
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--book", default=None, help="Rust Book HTML dir (default: from rustc sysroot)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = ap.parse_args(argv)
    book = args.book or default_book_dir()
    files = book_files(book)
    assert files, f"no book files in {book}"
    train, val, listing = [], [], {"book_dir": book, "train": [], "val": []}
    for i, f in enumerate(files):
        with open(f, encoding="utf-8") as fh:
            txt = html_to_text(fh.read())
        name = os.path.basename(f)
        if i % 20 == 10:
            val.append(txt)
            listing["val"].append(name)
        else:
            train.append(txt)
            listing["train"].append(name)
    os.makedirs(args.out, exist_ok=True)
    for split, docs in (("train", train), ("val", val)):
        p = os.path.join(args.out, f"{split}.txt")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write("\f".join(docs))
        b = open(p, "rb").read()
        listing[f"{split}_bytes"] = len(b)
        listing[f"{split}_sha256"] = hashlib.sha256(b).hexdigest()
        print(f"{split}: {len(docs)} documents, {len(b)} bytes ({len(b) / 1e6:.3f} MB) -> {p}")
    with open(os.path.join(args.out, "corpus_files.json"), "w") as fh:
        json.dump(listing, fh, indent=1)
    print(f"validation files: {listing['val']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
