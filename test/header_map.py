#!/usr/bin/env python3
"""Checks that src/hubspot_events.h tells the truth about src/, and that no two
C files need each other.

* the file map at the top of the header names every src/*.c, and only those;
* every function the header declares under "/* ---- name.c ---- */" is
  defined in name.c (and every extern function of a .c file is declared);
* the C files' calls form no cycle: a file uses functions of other files in
  one direction only (a cycle is printed with the functions on each edge).

Prints "header_map: N passed, N failed"; exits non-zero on any failure.
Standard library only.
"""
import collections
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
HEADER = "hubspot_events.h"


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def defined_functions(text):
    """Non-static functions defined in a .c file (name at column 0, then a body)."""
    names = set()
    text = strip_comments(text)
    for m in re.finditer(r"(?m)^([A-Za-z_]\w*)\(([^;{]*?)\)\s*\{", text):
        start = text.rfind("\n", 0, max(m.start() - 1, 0))
        prev = text[start + 1:m.start()]
        if "static" not in prev:
            names.add(m.group(1))
    return names


def header_sections(text):
    """{file: set of declared function names} from the header's sections."""
    sections = collections.defaultdict(list)
    current = None
    body = text[text.index("#ifndef HUBSPOT_EVENTS_H"):]
    for line in body.split("\n"):
        m = re.match(r"/\* ---- ([a-z_]+\.c)\b", line)
        if m:
            current = m.group(1)
            continue
        if current is None:
            continue
        sections[current].append(line)
    declared = {}
    for f, lines in sections.items():
        chunk = strip_comments("\n".join(lines))
        for m in re.finditer(r"\bextern\b[^;()]*?\b([A-Za-z_]\w*)\s*\(", chunk):
            declared.setdefault(f, set()).add(m.group(1))
    return declared


def main():
    passed, failed = 0, 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAILED: %s%s" % (what, (": " + detail) if detail else ""))

    header = open(os.path.join(SRC, HEADER)).read()
    cfiles = sorted(f for f in os.listdir(SRC) if f.endswith(".c"))
    texts = {f: open(os.path.join(SRC, f)).read() for f in cfiles}

    # the file map
    top = header[:header.index("*/")]
    mapped = set(re.findall(r"(?m)^ \*\s+([a-z_]+\.c)\s", top))
    check(mapped == set(cfiles), "the header's file map names every src/*.c and only those",
          "missing %s, extra %s" % (sorted(set(cfiles) - mapped), sorted(mapped - set(cfiles))))

    # declarations under the file that defines them
    defs = {f: defined_functions(t) for f, t in texts.items()}
    where = {}
    for f, names in defs.items():
        for n in names:
            where[n] = f
    declared = header_sections(header)
    for f in sorted(declared):
        check(f in texts, "the header's section %s names a file of src/" % f)
        wrong = sorted("%s (in %s)" % (n, where.get(n, "no file")) for n in declared[f]
                       if where.get(n) != f)
        check(not wrong, "every function declared under %s is defined there" % f, ", ".join(wrong))
    all_declared = set().union(*declared.values()) if declared else set()
    for f in cfiles:
        undeclared = sorted(n for n in defs[f] if n not in all_declared
                            and not n.startswith(("_PG_", "hubspot_")) and n != "Pg_magic_func")
        check(not undeclared, "every extern function of %s is declared in the header" % f,
              ", ".join(undeclared))

    # no cycle between files
    uses = collections.defaultdict(lambda: collections.defaultdict(set))
    for f, t in texts.items():
        body = strip_comments(t)
        for n, df in where.items():
            if df != f and re.search(r"\b%s\s*\(" % re.escape(n), body):
                uses[f][df].add(n)
    state, stack, cycles = {}, [], []

    def visit(f):
        state[f] = 1
        stack.append(f)
        for g in sorted(uses[f]):
            if state.get(g) == 1:
                cycles.append(stack[stack.index(g):] + [g])
            elif g not in state:
                visit(g)
        stack.pop()
        state[f] = 2

    for f in cfiles:
        if f not in state:
            visit(f)
    detail = "; ".join(" -> ".join("%s [%s]" % (a, ", ".join(sorted(uses[a][b])))
                                   for a, b in zip(c, c[1:])) for c in cycles)
    check(not cycles, "no two C files need each other (no cycle of calls)", detail)

    print("header_map: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
