"""The README's zoo pass table (``tests/zoo/report.py``): one row per zoo case, in the zoo's order, with a
summary that counts them, and the cell rules of the report. The table's cells come from a run of the zoo
(about a minute); that comparison runs only with ``POSEXT_ZOO_README=1``
(``python -m tests.zoo.report --readme README.md --check`` does the same by hand)."""
import os
import re

import pytest

from tests.zoo import report
from tests.zoo.timm_cases import TIMM_CASES, TimmCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _block():
    with open(README) as f:
        blocks = report.BLOCK.findall(f.read())
    assert len(blocks) == 1, "README.md must hold one <!-- zoo:pass-table --> block"
    return blocks[0]


def _rows(body):
    lines = [line for line in body.splitlines() if line.startswith("| ")]
    assert lines[0] == report.HEADER
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:]]


def test_one_row_per_case_in_zoo_order():
    hf_zoo = pytest.importorskip("tests.zoo.hf_zoo")
    rows = _rows(_block())
    expected = [(report.architecture("timm", c), "timm") for c in TIMM_CASES]
    expected += [(report.architecture("hf", c), "transformers") for c in hf_zoo.CASES]
    assert [(r[0], r[1]) for r in rows] == expected


def test_summary_counts_and_no_failing_row():
    hf_zoo = pytest.importorskip("tests.zoo.hf_zoo")
    body = _block()
    assert f"{len(TIMM_CASES)} timm architectures" in body
    assert f"{len(hf_zoo.CASES)} Hugging Face cases" in body
    assert "every row passes" in body
    rows = _rows(body)
    assert not [r for r in rows if r[3].startswith(("FAIL", "error")) or r[4] == "no"]
    refused = {f"`{c.name}`": c.refused for c in TIMM_CASES if c.refused}
    for r in rows:
        if r[0] in refused:
            assert r[3] == f"refused (names `{refused[r[0]]}`)"


def test_cells():
    case = TimmCase("m", (8, 8), refused="blocks.0.rel")
    err = "GeometryError: blocks.0.rel: X table (why): not resized by posext; ...\ntraceback"
    row = report.evaluate("timm", case, {"name": "m", "resized": [], "error": err})
    assert row["ok"] and row["cells"][3:] == ["refused (names `blocks.0.rel`)", "refused: X table (why)"]
    row = report.evaluate("timm", case, {"name": "m", "resized": [], "error": "GeometryError: other: ..."})
    assert not row["ok"] and row["cells"][3].startswith("FAIL")
    row = report.evaluate("timm", TimmCase("m", (8, 8)), {
        "name": "m", "resized": ["a"], "load_forward": True,
        "timm_status": "RuntimeError: size mismatch for pos_embed: copying ..."})
    assert row["ok"] and row["cells"][2:] == ["1", "ok", "adapter keeps `pos_embed` at the old size"]
    row = report.evaluate("timm", TimmCase("m", (8, 8), control=True),
                          {"name": "m", "resized": ["a"], "load_forward": True, "timm_status": "no adapter"})
    assert not row["ok"]
    row = report.evaluate("hf", TimmCase("m", (8, 8)), {"name": "m", "resized": 1, "loaded": True,
                                                        "forward": True, "adapter_equal": False})
    assert not row["ok"] and row["cells"][4] == "no"


@pytest.mark.skipif(not os.environ.get("POSEXT_ZOO_README"), reason="runs the whole zoo (about a minute); "
                                                                      "set POSEXT_ZOO_README=1")
def test_readme_table_equals_a_fresh_run():
    pytest.importorskip("timm")
    pytest.importorskip("transformers")
    rows = report.run()
    assert report.render_block(rows) == re.search(r"<!-- zoo:pass-table -->.*?<!-- /zoo:pass-table -->",
                                                  open(README).read(), re.S).group(0)
