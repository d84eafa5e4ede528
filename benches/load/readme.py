#!/usr/bin/env python3
"""Copies the "## Summary" section of a RESULTS file into README.md, between
`<!-- load:NAME -->` and `<!-- /load:NAME -->`, so the README's numbers are the
harness's own. Usage: readme.py RESULTS.md NAME (a README without the markers is
left alone)."""

import re
import sys
from pathlib import Path

results, name = Path(sys.argv[1]), sys.argv[2]
readme = Path(__file__).resolve().parents[2] / "README.md"
text = results.read_text()
m = re.search(r"^## Summary\n(.*?)(?=^## |\Z)", text, re.S | re.M)
if not m:
    sys.exit(f"{results}: no '## Summary' section")
start, end = f"<!-- load:{name} -->", f"<!-- /load:{name} -->"
doc = readme.read_text()
if start not in doc or end not in doc:
    print(f"README.md has no {start} block; not updated", file=sys.stderr)
    sys.exit(0)
head, rest = doc.split(start, 1)
_, tail = rest.split(end, 1)
block = f"{start}\n{m.group(1).strip()}\n\nFull tables: [`benches/load/{results.name}`](benches/load/{results.name}).\n{end}"
readme.write_text(head + block + tail)
print(f"README.md: {name} block updated from {results}", file=sys.stderr)
