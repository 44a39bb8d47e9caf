"""The README's benchmark blocks are what the jobs' code renders from the committed results files."""
import copy
import json
import os
import re
import shutil

import pytest

from posext.bench import checkpoint, common, model, readme, resample, rope, sincos

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def _job_results():
    """Stems of the results files in `posext bench`'s own format ({"job", "machine", "rows"})."""
    names = []
    for entry in sorted(os.listdir(RESULTS)):
        if entry.endswith(".json"):
            with open(os.path.join(RESULTS, entry)) as f:
                if set(json.load(f)) == {"job", "machine", "rows"}:
                    names.append(entry[:-len(".json")])
    return names


def test_every_results_file_has_one_block_in_the_readme():
    names = _job_results()
    blocks = [m.group("name") for m in readme.BLOCK.finditer(_readme())]
    assert len(names) >= 6
    assert sorted(blocks) == names


@pytest.mark.parametrize("name", _job_results())
def test_the_readme_block_is_exactly_the_rendered_results(name):
    # Editing a number in the README, or re-measuring without `python -m posext.bench.readme`, fails here.
    expected = readme.block(name, RESULTS, base=ROOT)
    assert f"`benchmarks/results/{name}.json`" in expected
    assert expected in _readme()


def test_no_number_in_the_benchmarks_section_outside_the_generated_blocks():
    section = _readme().split("## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    prose = readme.BLOCK.sub("", section)
    prose = re.sub(r"`[^`]*`", "", prose)  # commands and paths
    prose = re.sub(r"^###.*$", "", prose, flags=re.M)  # headings name the cases (ViT-S/16, 224 -> 384)
    claims = [m.group(0) for m in re.finditer(r"\d+(\.\d+)?\s?(x|ms|%|MB|MiB|s)(?!\w)", prose)]
    assert not claims, f"figures outside the generated blocks: {claims}"


@pytest.mark.parametrize("job", [resample, model, checkpoint, sincos])
def test_the_readme_table_has_the_printed_column_names(job):
    name = job.__name__.rsplit(".", 1)[1]
    rows = readme.load(f"{name}_cpu_epyc2", RESULTS)[0]["rows"]
    printed = re.split(r"\s{2,}", common.format_table(rows, job.COLUMNS).split("\n")[0].strip())
    data = {"job": name, "machine": {"date": "d", "cpu": "c", "num_threads": 1, "torch": "t"}, "rows": rows}
    header = next(line for line in readme.render(name, data, "r.json").split("\n") if line.startswith("| "))
    # The README leaves out only the device column, named once in its measurement line.
    assert [h.strip() for h in header.strip("| ").split(" | ")] == [h for h in printed if h != "device"]


def test_the_rope_readme_table_pairs_the_passes_under_the_printed_column_names():
    # One README row per case and dtype (forward / forward+backward in each timed cell), headed by the names
    # of the printed table.
    rows = readme.load("rope_cpu_xeon2", RESULTS)[0]["rows"]
    printed = re.split(r"\s{2,}", common.format_table(rows, rope.COLUMNS).split("\n")[0].strip())
    data = {"job": "rope", "machine": {"date": "d", "cpu": "c", "num_threads": 1, "torch": "t"}, "rows": rows}
    lines = [line for line in readme.render("rope", data, "r.json").split("\n") if line.startswith("| ")]
    header = [h.strip() for h in lines[0].strip("| ").split(" | ")]
    assert [h.removesuffix(rope.PAIRED) for h in header] == [
        h for h in printed if h not in ("device", "pass", "timm ms", "model ms", "table ms", "copy ms",
                                        "max abs diff")]
    assert len(lines) - 1 == len(rows) // 2
    row = next(r for r in rows if r.get("x_model") and r["pass"] == "fwd")
    bwd = next(r for r in rows if r["case"] == row["case"] and r["dtype"] == row["dtype"] and r is not row)
    assert f"| {row['x_model']:.1f}x / {bwd['x_model']:.1f}x |" in "\n".join(lines)


def test_the_rope_summary_states_what_the_rows_hold():
    base = {"device": "cpu", "mode": "Qwen-VL", "dtype": "float32", "tokens": 256, "posext_ms": 1.0,
            "rotate_ms": 0.75}
    rows = [dict(base, case="Qwen2-VL 16x16", family="Qwen2-VL", **{"pass": "fwd"}, x_model=2.5, x_table=0.8,
                 x_copy=1.5, max_diff=2e-6),
            dict(base, case="Qwen2-VL 16x16", family="Qwen2-VL", **{"pass": "fwd+bwd"}, x_model=3.5,
                 x_table=1.2),
            dict(base, case="DINOv3 ViT-L 16x16", family="DINOv3 ViT-L", mode="DINOv3", **{"pass": "fwd"},
                 x_model=7.0, x_table=2.0, x_copy=2.5, max_diff=1e-6)]
    text = " ".join(rope.summary(copy.deepcopy(rows)))
    assert "vs each model's eager RoPE path: Qwen2-VL 2.5x-3.5x; DINOv3 ViT-L 7.0x" in text
    assert ">= 3x holds in 2 of 3 rows (lowest: Qwen2-VL 16x16, float32, fwd)" in text
    assert "forward: 0.8x-2.0x (posext faster in 1 of 2 rows; lowest: Qwen2-VL 16x16, float32, fwd)" in text
    assert "forward+backward: 1.2x (posext faster in 1 of 1 rows" in text
    assert "float32 forward rotation takes 1.5x-2.5x the time of one torch.clone" in text
    assert "within float32 2.0e-06" in text
    # where the time goes in the one row below the model target: positions, then the rotation vs the floor
    assert ("The rows below that target have 256 tokens: there building the positions takes 25% of posext's "
            "time; its rotation alone 1.5x the copy floor (forward).") in text
    assert "vs timm" not in text


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    shutil.copytree(RESULTS, tmp_path / "benchmarks" / "results")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_fails_on_an_edited_readme_and_rewrite_restores_it(repo_copy, capsys):
    assert readme.main(["--check"]) == 0
    original = (repo_copy / "README.md").read_text()
    # the first ratio cell (of the resample block, the README's first) made 1.0x higher
    edited = re.sub(r"\| (\d+\.\d)x \|", lambda m: f"| {float(m.group(1)) + 1:.1f}x |", original, count=1)
    assert edited != original
    (repo_copy / "README.md").write_text(edited)
    assert readme.main(["--check"]) == 1
    assert "block resample_cpu_epyc2 differs" in capsys.readouterr().out
    from posext.cli import main

    assert main(["bench", "--readme"]) == 0  # the CLI's way to the same rewrite
    assert (repo_copy / "README.md").read_text() == original


def test_check_fails_when_the_results_change(repo_copy):
    path = repo_copy / "benchmarks" / "results" / "rope_cpu_xeon2.json"
    data = json.loads(path.read_text())
    data["rows"][0]["timm_ms"] *= 0.5
    data["rows"][0]["x_timm"] *= 0.5
    path.write_text(json.dumps(data))
    assert readme.main(["--check"]) == 1
    assert readme.main([]) == 0
    assert readme.main(["--check"]) == 0
    assert f"{data['rows'][0]['x_timm']:.1f}x" in (repo_copy / "README.md").read_text()


def test_the_summary_states_what_the_rows_hold():
    # Claims come from the rows: ViT-L rows at 7.6x and 9.9x never read as "every row >= 10x".
    base = {"device": "cpu", "dtype": "float32", "aa": False, "pass": "fwd", "posext_ms": 1.0}
    rows = [dict(base, case="ViT-L/16 256->592", torch_ms=7.6, x_torch=7.6),
            dict(base, case="ViT-L/14 518->224", torch_ms=9.9, x_torch=9.9),
            dict(base, case="ViT-B/16 224->384", torch_ms=20.0, x_torch=20.0)]
    text = " ".join(resample.summary(copy.deepcopy(rows)))
    assert "at the ViT-L cases 7.6x-9.9x" in text
    assert ">= 10x holds in 0 of 2 rows" in text
    assert "7.6x-20.0x over all 3 rows" in text


def test_a_missing_readme_is_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="README.md not found: run from the repository root"):
        readme.main(["--check"])
