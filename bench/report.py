"""The table, the plots and docs/benchmarks.md, from bench.py's results."""

import os
import subprocess


def fmt_table(rows):
    head = ("scenario", "measure", "result", "target", "")
    cells = [head] + [(a, b, c, d, e or "") for a, b, c, d, e in rows]
    w = [max(len(str(r[i])) for r in cells) for i in range(5)]
    lines = []
    for i, r in enumerate(cells):
        lines.append("  ".join(str(c).ljust(w[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * x for x in w))
    return "\n".join(lines)


def print_table(rows):
    print()
    print(fmt_table(rows))
    print()


def write_docs(results, out, src):
    pass
