"""The README's benchmark blocks, rendered from committed results files by the jobs' own code.

A block sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, NAME being the stem of a results
file (``resample_cpu_epyc2`` -> ``benchmarks/results/resample_cpu_epyc2.json``, as ``posext bench`` writes it:
``{"job", "machine", "rows"}``). It holds the measurement line, the job's table under the column names its
stdout table uses, the job's legend and its summary sentences, every number computed from the rows.

    python -m posext.bench.readme            # rewrite every block of README.md
    python -m posext.bench.readme --check    # exit 1, naming the stale blocks, if README.md and the
                                             # data differ
"""
import argparse
import importlib
import json
import os
import re
import sys

from .common import cell, legend_lines, shown_columns

RESULTS_DIR = os.path.join("benchmarks", "results")
BLOCK = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n(?P<body>.*?)\n?<!-- /bench:(?P=name) -->", re.S)


def markdown_table(rows, columns) -> str:
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, key, fmt) for key, _, fmt in columns) + " |" for row in rows]
    return "\n".join(lines)


def measured_line(data, source: str) -> str:
    m, rows = data["machine"], data["rows"]
    where = ", ".join(dict.fromkeys(str(r["device"]) for r in rows if "device" in r)) or "cpu"
    device = m.get("device_name") if where != "cpu" and m.get("device_name") else m["cpu"]
    return (f"Measured {m['date'][:10]} on {where} ({device}, {m['num_threads']} threads), "
            f"torch {m['torch']}, {len(rows)} rows; data: `{source}`.")


def render(name: str, data: dict, source: str) -> str:
    """The body of block ``name`` from a results file's contents (``source``: its path, as the README shows
    it)."""
    job = importlib.import_module(f"{__package__}.{data['job']}")
    rows = data["rows"]
    if hasattr(job, "readme_table"):  # a job too long to list row by row summarises itself
        columns, table, derived = job.readme_table(rows)
    else:
        columns, table, derived = shown_columns(rows, job.COLUMNS, drop_constant=("device",)), rows, []
    parts = [measured_line(data, source), markdown_table(table, columns),
             "\n".join(f"- {line}" for line in derived + legend_lines(job.LEGEND, rows))]
    sentences = job.summary(rows) if hasattr(job, "summary") else []
    if sentences:
        parts.append(" ".join(sentences))
    return "\n\n".join(parts)


def load(name: str, results_dir: str = RESULTS_DIR, base: str = "."):
    """(contents of results file ``name``, its path relative to ``base``: the README's folder)."""
    path = os.path.join(results_dir, f"{name}.json")
    with open(path) as f:
        return json.load(f), os.path.relpath(path, base).replace(os.sep, "/")


def block(name: str, results_dir: str = RESULTS_DIR, base: str = ".") -> str:
    """The whole block, markers included, as the README in folder ``base`` must contain it."""
    data, source = load(name, results_dir, base)
    return f"<!-- bench:{name} -->\n{render(name, data, source)}\n<!-- /bench:{name} -->"


def rewrite(text: str, results_dir: str = RESULTS_DIR, base: str = ".") -> str:
    """``text`` with every bench block re-rendered from its results file."""
    return BLOCK.sub(lambda m: block(m.group("name"), results_dir, base), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posext.bench.readme", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", default="README.md", help="the Markdown file holding the blocks")
    parser.add_argument("--results", default=RESULTS_DIR, help="folder of the results files the blocks name")
    parser.add_argument("--check", action="store_true", help="compare only: exit 1 when a block is stale")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.readme):
        raise SystemExit(f"{args.readme} not found: run from the repository root or pass --readme PATH")
    with open(args.readme) as f:
        text = f.read()
    names = [m.group("name") for m in BLOCK.finditer(text)]
    if not names:
        raise SystemExit(f"{args.readme}: no <!-- bench:NAME --> blocks")
    base = os.path.dirname(os.path.abspath(args.readme))
    new = rewrite(text, args.results, base)
    stale = [m.group("name") for m in BLOCK.finditer(text)
             if m.group(0) != block(m.group("name"), args.results, base)]
    if args.check:
        for name in stale:
            print(f"{args.readme}: block {name} differs from {args.results}/{name}.json")
        if not stale:
            print(f"{args.readme}: all {len(names)} benchmark blocks match {args.results}")
        return 1 if stale else 0
    if new != text:
        with open(args.readme, "w") as f:
            f.write(new)
    print(f"{args.readme}: {len(names)} benchmark blocks, {len(stale)} rewritten "
          f"({', '.join(stale) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
