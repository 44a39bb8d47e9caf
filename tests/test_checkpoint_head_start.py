"""The head start of `posext resize`: a safetensors file planned from its header before torch loads, its
untouched tensors copied meanwhile by a forked process, and a result byte for byte the one a load +
resize_state_dict + save gives, whether the foreseen layout was right or not.

The oracle is safetensors' own ``save`` of ``resize_state_dict`` on the loaded file. The plan from the header
is checked against the plan and the resized shapes of real state dicts built by timm and transformers."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from posext.checkpoint import head_start, plan_resize, resize_state_dict
from posext.checkpoint.file_job import resize_file
from posext.checkpoint.header_shapes import StoredShape
from posext.checkpoint.safetensors_format import Entry
from posext.checkpoint.safetensors_io import _dtype_name
from tests.test_checkpoint_safety import vit_state

safetensors_torch = pytest.importorskip("safetensors.torch")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = dict(mode="bicubic", antialias=True, old_size=None, num_prefix_tokens=None, sincos="auto",
               device="cpu", unsafe_pickle=False, dry_run=False, drop_optimizer=False, in_place=False)


def _stand_ins(state):
    return {k: StoredShape(_dtype_name(v.dtype), tuple(v.shape)) for k, v in state.items()}


def _state_with_filler(seed=0):
    gen = torch.Generator().manual_seed(seed)
    state = vit_state(seed, grid=6, dim=16)
    state.update({f"blocks.{i}.mlp.fc1.weight": torch.randn(64, 48, generator=gen) for i in range(6)})
    state["blocks.0.norm.weight"] = torch.randn(48, generator=gen).half()
    state["blocks.0.steps"] = torch.arange(5)
    return state


def _expected(src, grid):
    resized, _ = resize_state_dict(safetensors_torch.load_file(src), grid)
    return safetensors_torch.save(resized, metadata={"format": "pt"})


def _run_command(*args):
    """`python -m posext.cli` in a fresh interpreter: torch is not loaded when the command starts."""
    result = subprocess.run([sys.executable, "-m", "posext.cli", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_command_plans_and_copies_before_torch_loads(tmp_path):
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(_state_with_filler(), src, metadata={"format": "pt"})
    (tmp_path / "out").mkdir()
    probe = (
        "import sys\n"
        "sys.argv[0] = 'posext'\n"  # as the console script starts
        "from posext.checkpoint import commands, head_start\n"
        f"target = dict(new_grid=(9, 7), image_size=None, patch_size=None, num_frames=None)\n"
        f"head = head_start.begin({str(src)!r}, {str(tmp_path / 'out' / 'm.safetensors')!r}, target, "
        f"{OPTIONS!r})\n"
        "assert head is not None and head.pid is not None\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "kept = head.keep(head.header)\n"
        "assert len(kept) == len(head.copies) > 0, kept\n"
        "head.close()\n"
        "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.stdout.strip() == "ok", result.stdout + result.stderr
    assert os.listdir(tmp_path / "out") == []  # closed without a write: the temp folder is gone


def test_command_with_a_head_start_equals_load_resize_save(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name, seed in (("a", 0), ("b", 1)):  # the first file gets the head start, the second does not
        safetensors_torch.save_file(_state_with_filler(seed), src / f"{name}.safetensors",
                                    metadata={"format": "pt"})
    _run_command("resize", str(src / "a.safetensors"), str(src / "b.safetensors"), "--grid", "9x7",
                 "--out", str(tmp_path / "out"))
    for name in ("a.safetensors", "b.safetensors"):
        assert (tmp_path / "out" / name).read_bytes() == _expected(src / name, (9, 7))
    assert sorted(os.listdir(tmp_path / "out")) == ["a.safetensors", "b.safetensors"]


def test_in_place_with_a_head_start_replaces_the_input_with_the_resized_file(tmp_path):
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(_state_with_filler(), src, metadata={"format": "pt"})
    expected = _expected(src, (9, 7))
    result = _run_command("resize", str(src), "--grid", "9x7", "--in-place")
    assert "summary: 1 ok" in result.stdout
    assert src.read_bytes() == expected
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_a_layout_the_header_could_not_foresee_still_gives_the_right_bytes(tmp_path):
    """HF's position_ids are rebuilt only when their values are an arange: the header cannot tell, so the
    foreseen layout keeps their old shape, the write finds another header and copies everything itself."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8)
    torch.manual_seed(0)
    state = transformers.ViTModel(config).state_dict()
    state["embeddings.position_ids"] = torch.arange(17).unsqueeze(0)
    src = tmp_path / "hf.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, src, metadata={"format": "pt"})
    _run_command("resize", str(src), "--grid", "6", "--out", str(tmp_path / "out"))
    assert (tmp_path / "out" / "hf.safetensors").read_bytes() == _expected(src, 6)


@pytest.mark.parametrize("foreseen", [True, False], ids=["foreseen", "other-layout"])
def test_the_write_keeps_the_copy_only_for_the_foreseen_header(tmp_path, foreseen):
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(_state_with_filler(), src, metadata={"format": "pt"})
    out = tmp_path / "out" / "m.safetensors"
    out.parent.mkdir()
    target = dict(new_grid=(9, 7), image_size=None, patch_size=None, num_frames=None)
    head = head_start.begin(str(src), str(out), target, OPTIONS)
    assert head is not None
    kept = []
    real_keep = head.keep
    if not foreseen:
        head.header = b"another layout"
    head.keep = lambda header: kept.append(real_keep(header)) or kept[-1]
    try:
        report = resize_file(str(src), str(out), target, OPTIONS, head=head)
    finally:
        head.close()
    assert report["status"] == "ok", report
    assert len(kept[0]) == (len(head.copies) if foreseen else 0)
    assert out.read_bytes() == _expected(src, (9, 7))
    assert os.listdir(out.parent) == ["m.safetensors"]


def test_closing_before_the_write_leaves_nothing_and_reaps_the_copier(tmp_path):
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(_state_with_filler(), src, metadata={"format": "pt"})
    (tmp_path / "out").mkdir()
    target = dict(new_grid=(9, 7), image_size=None, patch_size=None, num_frames=None)
    head = head_start.begin(str(src), str(tmp_path / "out" / "m.safetensors"), target, OPTIONS)
    pid = head.pid
    head.close()
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left behind


@pytest.mark.parametrize("case", ["dry-run", "same-file", "pickle", "no-table", "already-sized"])
def test_no_head_start_where_there_is_nothing_to_copy_ahead(tmp_path, case):
    state = _state_with_filler()
    src = tmp_path / ("m.pth" if case == "pickle" else "m.safetensors")
    if case == "no-table":
        state = {k: v for k, v in state.items() if k.startswith("blocks.")}
    if case == "pickle":
        torch.save(state, src)
    else:
        safetensors_torch.save_file(state, src)
    target = dict(new_grid=(6, 6) if case == "already-sized" else (9, 7), image_size=None, patch_size=None,
                  num_frames=None)
    out = src if case == "same-file" else tmp_path / "out" / src.name
    out.parent.mkdir(exist_ok=True)
    options = {**OPTIONS, "dry_run": case == "dry-run"}
    assert head_start.begin(str(src), str(out), target, options) is None
    assert not [p for p in os.listdir(out.parent) if p != src.name]


def _zoo_states():
    timm = pytest.importorskip("timm")
    from tests.zoo.timm_cases import TIMM_CASES
    from tests.zoo.timm_zoo import build

    for case in TIMM_CASES[:24]:
        if case.skip:
            continue
        model = build(case.name, case.kwargs, case.native)
        yield case.id, model.state_dict(), dict(image_size=tuple(case.new))
    del timm


def test_the_header_plan_and_its_shapes_match_the_real_ones_across_the_timm_zoo():
    """For each model: the plan made from stored shapes finds what the plan made from tensors finds, and the
    result shape foreseen for every change is the shape resize_state_dict gives."""
    foreseen = 0
    for name, state, target in _zoo_states():
        state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        try:
            real = plan_resize(state, **target)
        except ValueError:
            continue
        planned = plan_resize(_stand_ins(state), **target)
        assert {k: (c.finding.action, c.new) for k, c in planned.changes.items()} == \
            {k: (c.finding.action, c.new) for k, c in real.changes.items()}, name
        stored = {k: Entry(_dtype_name(v.dtype), tuple(v.shape), 0, 0) for k, v in state.items()}
        shapes = head_start._result_shapes(stored, planned)
        if shapes is None:
            continue
        resized, _ = resize_state_dict(state, **target)
        assert shapes == {k: tuple(v.shape) for k, v in resized.items()}, name
        foreseen += 1
    assert foreseen >= 12  # the plain ViT families at least


def _python(code):
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_import_posext_as_a_library_registers_the_ops_at_once():
    _python("import posext\nimport torch\nassert 'torch' in __import__('sys').modules\n"
            "assert torch.ops.posext.resample is not None and callable(posext.resample)\nprint('ok')")


def test_the_command_imports_torch_only_when_a_name_needs_it():
    _python("import sys\nsys.argv[0] = 'posext'\n"
            "import posext, posext.cli, posext.checkpoint.commands, posext.checkpoint.head_start\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
            "import posext.resample\n"  # the submodule named like the function
            "posext.load()\n"
            "assert 'torch' in sys.modules and posext.resample.__name__ == 'resample'\n"
            "assert callable(posext.resample) and posext.sincos_2d(8, 2).shape == (4, 8)\nprint('ok')")


def _processes_naming(text):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals and /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_while_torch_loads_leaves_nothing(tmp_path, signum):
    """The head start has made its temp folder and forked its copier; the command is still importing torch
    when the signal comes: exit 128 + signal, no temp folder, no target, no copier left running."""
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(_state_with_filler(), src)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "posext.cli", "resize", str(src), "--grid", "9x7", "--out",
                             str(out)], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not os.listdir(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert os.listdir(out) == []
    assert _processes_naming(str(out)) == []

