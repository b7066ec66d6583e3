#!/usr/bin/env python3
"""check_layout: the house's rules, checked on the sources (docs/design.md).

1. Arrows: comm/, data/ and kernels/ include none of each other's headers nor trainer/'s;
   inside trainer/ the rooms point one way: cli -> run -> model -> {observe, config}.
2. Size: no function in trainer/ over 150 lines, no source file (anywhere but tests/) over 800.

Headers are included by base name (each library exports its folder), so a header's room is
found from where the file lives.  Exit 1 with one line per breach."""
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULES = ["comm", "data", "kernels", "trainer"]
ROOMS = ["cli", "run", "model", "observe", "config"]
# which rooms (or modules) each may include, besides itself
ALLOWED = {
    "comm": set(), "data": set(), "kernels": set(),
    "trainer/config": set(),
    "trainer/observe": {"comm", "kernels"},
    "trainer/model": {"kernels", "trainer/observe", "trainer/config", "comm"},
    "trainer/run": {"comm", "data", "kernels", "trainer/model", "trainer/observe",
                    "trainer/config"},
    "trainer/interop": {"data", "kernels", "trainer/run", "trainer/model", "trainer/config"},
    "trainer/cli": {"comm", "data", "kernels", "trainer/interop", "trainer/run", "trainer/model",
                    "trainer/observe", "trainer/config"},
}
SOURCE = (".c", ".h", ".cu")


def room_of(rel):
    parts = rel.split("/")
    if parts[0] == "trainer" and len(parts) > 2:
        return "trainer/" + parts[1]
    return parts[0]


def sources():
    for mod in MODULES:
        for d, _, files in os.walk(os.path.join(ROOT, mod)):
            for f in files:
                if f.endswith(SOURCE):
                    yield os.path.relpath(os.path.join(d, f), ROOT)


def strip(text):
    """Comments, strings and character literals blanked (newlines kept)."""
    pat = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
    return pat.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def functions(text):
    """(first line, line count) of each function body at file scope."""
    out, depth, header, start = [], 0, "", 0
    line = 1
    for ch in strip(text):
        if ch == "\n":
            line += 1
        if depth == 0:
            if ch == "{":
                if header.strip().endswith(")"):
                    start = line
                else:
                    start = 0
                depth = 1
                header = ""
            elif ch in ";}":
                header = ""
            else:
                header += ch
        else:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and start:
                    out.append((start, line - start + 1))
    return out


def main():
    files = list(sources())
    owner = {}   # header base name -> room
    for rel in files:
        if rel.endswith(".h"):
            owner.setdefault(os.path.basename(rel), set()).add(room_of(rel))
    breaches = []
    inc = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
    for rel in files:
        room = room_of(rel)
        text = open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace").read()
        for n, line in enumerate(text.splitlines(), 1):
            m = inc.match(line)
            if not m:
                continue
            name = os.path.basename(m.group(1))
            for target in owner.get(name, ()):
                if target != room and target not in ALLOWED.get(room, set()):
                    breaches.append(f"{rel}:{n}: {room} includes {name} of {target}")
        lines = text.splitlines()
        if len(lines) > 800:
            breaches.append(f"{rel}: {len(lines)} lines (at most 800)")
        if rel.startswith("trainer/") and rel.endswith(".c"):
            for start, length in functions(text):
                if length > 150:
                    breaches.append(f"{rel}:{start}: function of {length} lines (at most 150)")
    for b in breaches:
        print(b)
    print(f"check_layout: {len(files)} files, {len(breaches)} breaches")
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
