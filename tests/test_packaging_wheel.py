"""A wheel built from the sdist (CPU kernels only) installs and imports outside the source tree. Minutes of
compiling, so it runs only with POSEXT_TEST_WHEEL_FROM_SDIST=1 (`make check-sdist`)."""
import glob
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from .test_packaging import build_sdist, source_tree

pytestmark = pytest.mark.skipif(os.environ.get("POSEXT_TEST_WHEEL_FROM_SDIST") != "1",
                                reason="minutes of compiling: POSEXT_TEST_WHEEL_FROM_SDIST=1 "
                                       "(make check-sdist)")


def test_cpu_wheel_built_from_the_sdist_installs_and_imports(tmp_path):
    sdist, _ = build_sdist(tmp_path / "sdist", source_tree(tmp_path / "tree"))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked")
    (source,) = glob.glob(str(tmp_path / "unpacked" / "posext-*"))
    env = {**os.environ, "POSEXT_SKIP_CUDA": "1"}
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                             str(tmp_path / "wheel"), source], env=env, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "posext build: posext._C with CPU kernels only" in result.stdout
    (wheel,) = glob.glob(str(tmp_path / "wheel" / "posext-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    assert any(n.startswith("posext/_C") and n.endswith(".so") for n in names), names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(site), wheel], check=True, timeout=300)
    check = ("import json, posext; i = posext.info(); print(posext.__file__); "
             "assert i['backend'] == 'extension', i; assert not i['cuda_kernels_built'], i")
    # PYTHONPATH comes before the editable install of the source tree on sys.path
    result = subprocess.run([sys.executable, "-c", check], cwd=str(tmp_path), capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site), "POSEXT_BACKEND": "extension"},
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().startswith(str(site)), result.stdout
