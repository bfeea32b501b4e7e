#!/usr/bin/env python3
"""Bytes libspark.a adds to a linked firmware, from the linker map: the sizes of the
input sections taken from libspark.a, split into .text and .rodata (and data/bss)."""
import re
import sys

sizes = {}
pending = None  # a section name on its own line (the address/size follow on the next)
kept = False  # the map lists the discarded (garbage-collected) sections first
for line in open(sys.argv[1]):
    if line.startswith("Linker script and memory map"):
        kept = True
    if not kept:
        continue
    m = re.match(r"^ (\.[\w.$]+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)", line)
    name = None
    if m and m.group(1):
        name = m.group(1)
    elif m and pending:
        name = pending
    pending = None
    if not m:
        n = re.match(r"^ (\.[\w.$]+)\s*$", line)
        if n:
            pending = n.group(1)
        continue
    if name is None or "libspark.a" not in m.group(4):
        continue
    kind = "." + name.split(".")[1]
    if kind in (".text", ".rodata", ".data", ".bss"):
        sizes[kind] = sizes.get(kind, 0) + int(m.group(3), 16)
print(" ".join(f"{k}={v}" for k, v in sorted(sizes.items())), f"text+rodata={sizes.get('.text', 0) + sizes.get('.rodata', 0)}")
