#!/usr/bin/env python3
"""Builds documents_benign.jsonl: ordinary "work on this document" prompts over permissively
licensed text found on a developer machine, as extra benign training rows for the screen.

Sources (each row's `source` names the file and licence):
- README/CHANGELOG files of crates in the local cargo registry whose Cargo.toml licence is MIT
  and/or Apache-2.0, skipping every crate that long_documents_benign.jsonl already uses (so that
  source stays a fair held-out test);
- the licence texts in Debian's /usr/share/common-licenses (verbatim copying of licence texts
  is permitted by each licence).
Deterministic: files are visited in sorted order and chunked with a seeded generator.

Usage: python3 data/screen/make_documents_benign.py > data/screen/documents_benign.jsonl
"""
import glob, json, os, random, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
LONG = os.path.join(HERE, "..", "prompt-injection-extra", "long_documents_benign.jsonl")
used = set()
for line in open(LONG, encoding="utf-8"):
    src = json.loads(line).get("source", "")
    m = re.match(r"crate (\S+?)-\d", src)
    if m:
        used.add(m.group(1))

TASKS = [
    "Give me a short summary of this:", "What is this document about?", "Summarise in three bullet points:",
    "Please proofread the following text:", "Explain this to a new team member:", "Turn this into a checklist:",
    "Translate the following into German:", "Translate the following into French:", "What are the key obligations here?",
    "Does this text mention any limitations? Answer briefly.", "Write a one-paragraph abstract of the text below.",
    "Extract every command mentioned in this text:", "Rewrite this for a non-technical reader:",
    "Find any spelling mistakes in this:", "Make a FAQ from the following:", "Which version changes matter most?",
]
rng = random.Random(20241129)

def chunks(text, n):
    text = text.strip()
    out = []
    for _ in range(n):
        size = rng.choice([400, 900, 1800, 3500, 6000])
        if len(text) <= size:
            start = 0
        else:
            start = rng.randrange(0, len(text) - size)
        piece = text[start:start + size].strip()
        if len(piece) >= 300:
            out.append(piece)
    return out

rows = []
reg = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/*")))
for d in reg:
    name_ver = os.path.basename(d)
    m = re.match(r"(.+?)-(\d+\.\d+.*)$", name_ver)
    if not m or m.group(1) in used:
        continue
    try:
        toml = open(os.path.join(d, "Cargo.toml"), encoding="utf-8").read()
    except OSError:
        continue
    lic = re.search(r'^license\s*=\s*"([^"]+)"', toml, re.M)
    if not lic:
        continue
    lic = lic.group(1)
    parts = set(re.split(r"\s*(?:OR|AND|/|\(|\))\s*", lic)) - {""}
    if not parts or not parts <= {"MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "Unlicense", "0BSD"}:
        continue
    for fname in ("README.md", "CHANGELOG.md"):
        p = os.path.join(d, fname)
        if not os.path.isfile(p):
            continue
        text = open(p, encoding="utf-8", errors="replace").read()
        for piece in chunks(text, 1 if len(text) < 4000 else 2):
            rows.append({"text": rng.choice(TASKS) + "\n\n" + piece, "label": 0,
                         "source": f"crate {name_ver} {fname} ({lic})"})
for p in sorted(glob.glob("/usr/share/common-licenses/*")):
    if os.path.islink(p) or not os.path.isfile(p):
        continue
    text = open(p, encoding="utf-8", errors="replace").read()
    for piece in chunks(text, 3):
        rows.append({"text": rng.choice(TASKS) + "\n\n" + piece, "label": 0,
                     "source": f"licence text {os.path.basename(p)} (Debian common-licenses)"})
for r in rows:
    sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
print(f"{len(rows)} rows", file=sys.stderr)
