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


@pytest.mark.parametrize("job", [resample, rope, model, checkpoint, sincos])
def test_the_readme_table_has_the_printed_column_names(job):
    name = job.__name__.rsplit(".", 1)[1]
    rows = readme.load(f"{name}_cpu_epyc2", RESULTS)[0]["rows"]
    printed = re.split(r"\s{2,}", common.format_table(rows, job.COLUMNS).split("\n")[0].strip())
    data = {"job": name, "machine": {"date": "d", "cpu": "c", "num_threads": 1, "torch": "t"}, "rows": rows}
    header = next(line for line in readme.render(name, data, "r.json").split("\n") if line.startswith("| "))
    # The README leaves out only the device column, named once in its measurement line.
    assert [h.strip() for h in header.strip("| ").split(" | ")] == [h for h in printed if h != "device"]


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
    path = repo_copy / "benchmarks" / "results" / "rope_cpu_epyc2.json"
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
