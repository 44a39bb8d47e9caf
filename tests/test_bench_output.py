"""What `posext bench` prints and draws: progress, tables with legends, distinct plots, no matplotlib."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from posext.bench import (
    checkpoint,
    common,
    factorized,
    kernels,
    model,
    plots,
    resample,
    rope,
    rope_models,
    sincos,
)
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
    """The committed CPU results of ``job`` (named after the machine that measured them)."""
    folder = os.path.join(ROOT, "benchmarks", "results")
    name = next(n for n in sorted(os.listdir(folder)) if n.startswith(f"{job}_cpu_") and n.endswith(".json"))
    with open(os.path.join(folder, name)) as f:
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


def _rope_families():
    """One small case per model family of the rope job's part 2: (family, grids, heads, head_dim)."""
    seen = {}
    for family, _, _, heads, head_dim in rope.MODEL_CASES:
        small = [(1, 4, 6), (1, 2, 2), (2, 2, 4)] if family in rope_models.QWEN else [(3, 5)]
        seen.setdefault(family, (family, small, 2, head_dim))
    return list(seen.values())


@pytest.mark.parametrize("family, grids, heads, head_dim", _rope_families(), ids=lambda v: str(v))
def test_rope_job_paths_compute_one_rotation(family, grids, heads, head_dim):
    # What part 2 times are the same q and k (and gradients) by every path, at a small size (nothing timed).
    pytest.importorskip("transformers")
    paths = rope_models.model_paths(family, grids, heads, head_dim, torch.float32)
    assert paths["model"] is not None and paths["model"].__module__ == "posext.bench.rope_models"
    q, k = paths["q"], paths["k"]
    assert not q.is_contiguous()  # views of a fused projection, as the models make them
    packed = family in rope_models.QWEN
    assert q.shape[-1] == head_dim and paths["tokens"] == (q.shape[0] if packed else q.shape[2])
    grads = (torch.randn_like(q), torch.randn_like(k))

    def run(name):
        leaves = (q.detach().requires_grad_(), k.detach().requires_grad_())
        out = paths[name](*leaves)
        return out, torch.autograd.grad(out, leaves, grads)

    (want, want_grad) = run("posext")
    for name in ("rotate", "model", "table"):
        got, got_grad = run(name)
        for a, b in zip(got + got_grad, want + want_grad):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    if family not in rope_models.QWEN:  # the class and register tokens pass unrotated
        prefix = rope_models.DINOV3_PREFIX
        assert torch.equal(want[0][:, :, :prefix], q[:, :, :prefix])


def test_rope_job_bfloat16_paths_stay_close():
    pytest.importorskip("transformers")
    for family, grids, heads, head_dim in _rope_families():
        paths = rope_models.model_paths(family, grids, heads, head_dim, torch.bfloat16)
        want = paths["posext"](paths["q"], paths["k"])
        assert want[0].dtype == torch.bfloat16
        for name in ("model", "table"):
            for a, b in zip(paths[name](paths["q"], paths["k"]), want):
                torch.testing.assert_close(a.float(), b.float(), rtol=0, atol=0.07)


@pytest.fixture
def fake_rope_timing(monkeypatch):
    """The rope job's loops over a tiny case per part, every timing replaced by a constant after a call or
    the warm-up calls (nothing is timed)."""
    def fake(fn, args, grad_outputs=None, *, wrt=(), min_time):
        fn(*args)
        return 2.0

    monkeypatch.setattr(rope, "timed_ms", fake)
    monkeypatch.setattr(rope, "blocked_seconds", lambda fn, min_run_time: 0.002)
    monkeypatch.setattr(rope, "CASES", [("tiny", 1, 2, 3, 8)])
    monkeypatch.setattr(rope, "MODEL_CASES", [("Qwen2-VL", "4x4", [(1, 4, 4)], 2, 8),
                                              ("DINOv3 ViT-L", "2x3", [(2, 3)], 2, 8)])
    return fake


def test_rope_job_rows_hold_both_parts(fake_rope_timing):
    pytest.importorskip("transformers")
    rows = rope.run(["cpu"])
    assert len(rows) == rope.plan(["cpu"])[0] == 2 * 2 * 2 + 2 * 2 * 2
    timm_rows, model_rows = rows[:8], rows[8:]
    assert all(r.get("x_model") is None and "table_ms" not in r for r in timm_rows)
    assert {r["case"] for r in model_rows} == {"Qwen2-VL 4x4", "DINOv3 ViT-L 2x3"}
    assert {r["family"] for r in model_rows} == {"Qwen2-VL", "DINOv3 ViT-L"}
    for r in model_rows:
        assert {"posext_ms", "rotate_ms", "model_ms", "table_ms", "x_model", "x_table"} <= set(r)
        assert ("copy_ms" in r) == (r["pass"] == "fwd")  # the memory floor on forward rows
        assert r["rounds"] == rope.ROUNDS and r["x_model"] == r["x_table"] == 1.0
        assert r["tokens"] == (16 if r["mode"] == "Qwen-VL" else 5 + 6)
        if r["pass"] == "fwd":
            assert r["max_diff"] < (1e-5 if r["dtype"] == "float32" else 0.07)
    table = common.format_table(rows, rope.COLUMNS)
    for header in ("vs timm", "vs model", "posext rotate ms", "vs table", "rotate / copy", "max abs diff"):
        assert header in table.split("\n")[0]
    legend = "\n".join(common.legend_lines(rope.LEGEND, rows))
    assert "apply_rotary_pos_emb_vision" in legend and "apply_rotary_emb_torch" in legend
    assert "timm axial = " in legend
    # without transformers' families only the model column empties
    assert "model = " not in "\n".join(common.legend_lines(rope.LEGEND, timm_rows))


def test_rope_job_without_transformers_keeps_its_own_baselines(fake_rope_timing, monkeypatch):
    for name in ("transformers", "transformers.models.qwen2_vl.modeling_qwen2_vl",
                 "transformers.models.dinov3_vit"):
        monkeypatch.setitem(sys.modules, name, None)
    rows = rope._model_rows("cpu", quick=False)
    assert len(rows) == 8 and all(r.get("model_ms") is None and r["x_table"] for r in rows)
    header = common.format_table(rows, rope.COLUMNS).split("\n")[0]
    assert "vs table" in header and "vs model" not in header


def test_rope_quick_runs_the_smallest_case_of_each_family():
    quick = rope._model_cases(True)
    assert [c[0] for c in quick] == list(dict.fromkeys(c[0] for c in rope.MODEL_CASES))
    assert all(case == next(c for c in rope.MODEL_CASES if c[0] == case[0]) for case in quick)


def test_rope_results_cover_every_case_of_both_parts():
    rows = _committed("rope")
    assert len(rows) == rope.plan(["cpu"])[0]
    assert {r["case"] for r in rows if r.get("x_timm")} == {c[0] for c in rope.CASES}
    model_rows = [r for r in rows if r.get("table_ms") is not None]
    assert {r["case"] for r in model_rows} == {f"{c[0]} {c[1]}" for c in rope.MODEL_CASES}
    assert all(r.get("x_model") and r["x_table"] for r in model_rows)
    passes = {(r["case"], r["dtype"], r["pass"]) for r in model_rows}
    assert len(passes) == len(model_rows) == len(rope.MODEL_CASES) * len(rope.DTYPES) * 2
    heads_dims = {(r["heads"], r["head_dim"]) for r in model_rows}
    assert {(16, 80), (16, 72), (16, 64), (32, 128)} <= heads_dims
    tokens = {r["tokens"] for r in model_rows if r["mode"] == "Qwen-VL"}
    assert {256, 1024, 4096, 8192} <= tokens
    for r in model_rows:
        if r["pass"] == "fwd":
            assert r["copy_ms"] > 0 and r["max_diff"] < (1e-4 if r["dtype"] == "float32" else 0.07)
