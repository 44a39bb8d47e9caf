"""Backend selection: extension vs pure-PyTorch fallback, one warning, and posext.info()."""
import os
import subprocess
import sys

import pytest
import torch

import posext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    full_env = {**os.environ, **env, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", code], cwd=ROOT,
                          env=full_env, capture_output=True, text=True, timeout=300)


def test_info_reports_backend_and_versions():
    info = posext.info()
    assert info["backend"] == posext.backend() in ("extension", "python")
    assert info["torch"] == torch.__version__
    assert isinstance(info["cuda_kernels_built"], bool)


def test_extension_present_when_required():
    """CI sets POSEXT_REQUIRE_EXTENSION=1 (with CUDA kernels) so a broken build cannot pass as 'fallback'."""
    if os.environ.get("POSEXT_REQUIRE_EXTENSION") != "1":
        pytest.skip("POSEXT_REQUIRE_EXTENSION not set")
    info = posext.info()
    assert info["backend"] == "extension", info["extension_load_error"]
    if os.environ.get("POSEXT_REQUIRE_CUDA_KERNELS") == "1":
        assert info["cuda_kernels_built"]


def test_forced_python_backend():
    result = run_python("import posext, torch; print(posext.backend()); print(posext.sincos_2d(8, 2).shape)",
                        POSEXT_BACKEND="python")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["python", "torch.Size([4, 8])"]
    assert "RuntimeWarning" not in result.stderr  # asked for, so no warning


def test_missing_extension_warns_once_and_falls_back():
    code = ("import sys; sys.modules['posext._C'] = None\n"
            "import posext, torch\n"
            "a = posext.sincos_2d(8, 3); b = posext.sincos_2d(8, 3); c = posext.sincos_1d(4, [1.0])\n"
            "print(posext.backend(), tuple(a.shape), tuple(c.shape))")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "python (9, 8) (1, 4)"
    assert result.stderr.count("compiled extension unavailable") == 1, result.stderr


def test_bad_backend_name_is_rejected():
    result = run_python("import posext", POSEXT_BACKEND="fast")
    assert result.returncode != 0 and "POSEXT_BACKEND" in result.stderr
