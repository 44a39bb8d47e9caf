"""What `posext bench` prints and draws: progress, tables with legends, distinct plots, no matplotlib."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from posext.bench import checkpoint, common, factorized, kernels, model, plots, resample, rope, sincos
from posext.cli import NO_MATPLOTLIB, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Importing timm / open_clip takes longer than these tiny runs: the baselines are left out (as if absent).
SLOW_BASELINES = ("timm", "timm.layers", "timm.layers.pos_embed_sincos", "open_clip", "open_clip.pos_embed")
TINY = textwrap.dedent("""
    import sys
    for name in {baselines!r}:
        sys.modules[name] = None
    from posext.bench import resample, sincos
    sincos.DIMS, sincos.GRIDS = (8,), (3,)
    resample.CASES = [("tiny 2->3", (1, 1 + 2 * 2, 8), "tokens", 3)]
""")


def _committed(job):
    with open(os.path.join(ROOT, "benchmarks", "results", f"{job}_cpu_epyc2.json")) as f:
        return json.load(f)["rows"]


def test_timings_run_on_the_threads_the_results_report():
    # torch.utils.benchmark.Timer runs on one thread unless told otherwise; the results name
    # torch.get_num_threads().
    seen = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        common.median_seconds(lambda: seen.append(torch.get_num_threads()), 1e-4)
    finally:
        torch.set_num_threads(before)
    assert len(seen) > 3 and set(seen) == {2}


@pytest.fixture
def tiny_jobs(monkeypatch):
    for name in SLOW_BASELINES:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(sincos, "DIMS", (8,))
    monkeypatch.setattr(sincos, "GRIDS", (3,))
    monkeypatch.setattr(resample, "CASES", [("tiny 2->3", (1, 1 + 2 * 2, 8), "tokens", 3)])


def test_each_job_announces_itself_prints_its_legend_and_its_time(tiny_jobs, tmp_path, capsys):
    assert main(["bench", "--jobs", "sincos,resample", "--device", "cpu", "--quick",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"[1/2] sincos: {sincos.WHAT}; 1 row, timed calls alone >= " in out
    assert f"[2/2] resample: {resample.WHAT}; 8 rows, timed calls alone >= " in out
    assert "[1/2] sincos done: 1 row in " in out and "[2/2] resample done: 8 rows in " in out
    sincos_part = out.split("[1/2] sincos done")[0]
    for line in ("fallback = posext's own pure-PyTorch formula", "vs X = X ms / posext ms: higher is faster"):
        assert line in sincos_part
    assert "timm = " not in sincos_part  # no timm column here, so no timm line
    resample_part = out.split("[2/2] resample: ")[1]
    assert ("torch = split -> permute -> F.interpolate -> permute -> cat, float32 upcast for bfloat16"
            in resample_part)
    assert resample_part.index("vs torch") < resample_part.index("  torch = split")  # legend under the table
    for header in ("posext ms", "torch ms", "vs torch"):
        assert header in resample_part
    assert (tmp_path / "sincos.png").stat().st_size > 0 and (tmp_path / "resample.png").stat().st_size > 0


def test_no_matplotlib_means_one_line_and_the_tables_and_json(tmp_path):
    script = TINY.format(baselines=SLOW_BASELINES) + textwrap.dedent(f"""
        sys.modules["matplotlib"] = None
        from posext.cli import main
        sys.exit(main(["bench", "--jobs", "sincos", "--device", "cpu", "--quick",
                       "--out", {str(tmp_path)!r}]))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout.count(NO_MATPLOTLIB) == 1
    assert "posext bench: matplotlib is not installed, so no plots" in NO_MATPLOTLIB
    assert "vs fallback" in run.stdout
    assert (tmp_path / "sincos.json").exists() and not (tmp_path / "sincos.png").exists()


def test_no_safetensors_times_torch_pickles_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    assert checkpoint.formats() == ("torch",)
    assert checkpoint.plan(["cpu"])[0] == 1


def test_styles_stay_distinct_past_the_colour_cycle():
    for n_series in (3, 12, 20, 24, 45):
        styles = {(plots.style(i, n_series, b)[:2]) for i in range(n_series) for b in range(3)}
        assert len(styles) == 3 * n_series
        assert len({plots.style(i, n_series, 0)[0] for i in range(min(n_series, 20))}) == min(n_series, 20)


def _points_per_x(drawn):
    xs = [x for entry in drawn.values() for x, _ in entry["points"]]
    return len(xs), len(set(xs))


@pytest.mark.parametrize("job", [resample, rope, factorized])
def test_categorical_plots_give_every_point_its_own_x(job, tmp_path):
    drawn = job.plot(_committed(job.__name__.rsplit(".", 1)[1]), str(tmp_path / "p.png"), "t")
    total, distinct = _points_per_x(drawn)
    assert total == distinct  # no two cases, series or baselines share an x
    assert len({entry["colour"] for entry in drawn.values()}) == len({k.split(": ")[0] for k in drawn})
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_resample_plot_shows_both_baselines_and_factorized_all_series(tmp_path):
    drawn = resample.plot(_committed("resample"), str(tmp_path / "r.png"), "t")
    assert {label.rsplit(": ", 1)[1] for label in drawn} == {"vs torch", "vs timm"}
    rows = _committed("factorized")
    drawn = factorized.plot(rows, str(tmp_path / "f.png"), "t")
    assert len(drawn) == len({r["series"] for r in rows}) == 12


def test_sincos_plot_has_every_baseline_including_the_fallback(tmp_path):
    drawn = sincos.plot(_committed("sincos"), str(tmp_path / "s.png"), "t")
    assert sorted(drawn) == sorted(f"D={d}: vs {b}" for d in sincos.DIMS
                                   for b in ("timm", "numpy", "fallback"))


def test_model_plot_is_the_resize_cost_of_timm_and_posext_per_resolution(tmp_path):
    rows = _committed("model")
    drawn = model.plot(rows, str(tmp_path / "m.png"), "t")
    resize = {label: points for (panel, label), points in drawn.items() if panel.startswith("position-table")}
    assert set(resize) == {f"cpu {m}: {impl}" for m in ("ViT-B/16", "ViT-L/14")
                           for impl in ("timm", "posext")}
    vit_b = [r for r in rows if r["model"] == "ViT-B/16"]
    assert resize["cpu ViT-B/16: timm"] == [(r["image"], r["timm_resize_ms"]) for r in vit_b]
    assert resize["cpu ViT-B/16: posext"] == [(r["image"], r["posext_resize_ms"]) for r in vit_b]
    assert (tmp_path / "m.png").stat().st_size > 0


def test_kernels_plot_leaves_out_the_copy_row(tmp_path):
    rows = [{"op": "copy", "series": "cpu copy", "mbytes": 64.0},
            {"op": "resample", "series": "cpu resample fwd", "mbytes": 2.0, "x_torch": 3.0, "x_timm": 3.0},
            {"op": "rope_2d", "series": "cpu rope_2d fwd", "mbytes": 9.0, "x_timm": 5.0}]
    drawn = kernels.plot(rows, str(tmp_path / "k.png"), "t")
    assert sorted(drawn) == ["cpu resample fwd: vs timm", "cpu resample fwd: vs torch",
                             "cpu rope_2d fwd: vs timm"]
    assert (tmp_path / "k.png").stat().st_size > 0
