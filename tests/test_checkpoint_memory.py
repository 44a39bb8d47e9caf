"""posext resize's memory follows the position tables, not the checkpoint: a 256 MiB torch pickle (zip
format, memory-mapped) and safetensors file each resize with peak anonymous memory (RssAnon, sampled) well
under 0.2x the file; the result equals a fully loaded resize."""
import os
import subprocess
import sys

import pytest
import torch

from posext.bench.batch import PROBE  # resizes argv[1] to a 24x24 grid into argv[2]
from tests.test_checkpoint_safety import vit_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RssAnon from /proc")



@pytest.mark.parametrize("name", ["big.pth", "big.safetensors"])
def test_peak_anonymous_memory_is_a_small_fraction_of_the_file(tmp_path, name):
    state = {**vit_state(0), "blocks.0.mlp.fc1.weight": torch.randn(2 ** 26)}  # 256 MiB
    path = tmp_path / name
    if name.endswith(".pth"):
        torch.save(state, path)
    else:
        from safetensors.torch import save_file
        save_file(state, path)
    env = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", PROBE, str(path), str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    growth = int(result.stdout.split("GROWTH")[1])
    size = os.path.getsize(path)
    assert growth < 0.2 * size, f"peak anonymous memory grew {growth / size:.2f}x the file"
    out = str(tmp_path / "out" / name)
    if name.endswith(".pth"):
        got = torch.load(out, weights_only=True)
    else:
        from safetensors.torch import load_file
        got = load_file(out)
    assert torch.equal(got["blocks.0.mlp.fc1.weight"], state["blocks.0.mlp.fc1.weight"])
    assert got["pos_embed"].shape == (1, 1 + 24 * 24, 8)
