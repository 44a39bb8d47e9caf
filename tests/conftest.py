import os
import uuid

# Tests run in torch's deterministic mode (poison_outputs); on CUDA its matmuls then need a fixed cuBLAS
# workspace, set before the first cuBLAS handle exists.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The `backend` fixture only monkeypatches a dispatch switch, which is the same for every generated input.
settings.register_profile("posext", suppress_health_check=[HealthCheck.function_scoped_fixture],
                          deadline=None)
settings.load_profile("posext")

import posext  # noqa: E402
from posext import _backend  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=["extension", "python"])
def backend(request, monkeypatch):
    """Run a test through the compiled kernels and through the pure-PyTorch fallback."""
    if request.param == "extension" and _backend.backend() != "extension":
        pytest.skip("extension not built")
    if request.param == "python":
        monkeypatch.setattr(_backend, "use_extension", lambda device: False)
    return request.param


@pytest.fixture
def poison_outputs():
    """Deterministic mode: torch fills every at::empty result with NaN (so an element a kernel leaves
    unwritten fails the comparison), and nondeterministic kernels raise. Modules opt in with
    pytestmark.usefixtures."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.fixture
def store():
    """A fresh memory:// prefix and its fsspec file system (the memory file system is shared by the whole
    process, so each test gets its own prefix, removed after it)."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"/posext-test-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def assert_error_names(call, exc, words):
    """`call()` raises `exc` whose message contains every one of `words` (argument, rule, numbers)."""
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!s}"


def pytest_configure(config):
    """POSEXT_REQUIRE_CUDA=1 (the GPU proof kit) turns a missing GPU into an error instead of skipped
    tests."""
    if os.environ.get("POSEXT_REQUIRE_CUDA") == "1" and not HAS_CUDA:
        raise pytest.UsageError(f"POSEXT_REQUIRE_CUDA=1 but torch {torch.__version__} sees no CUDA device "
                                f"(torch.version.cuda={torch.version.cuda})")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"posext: {posext.info()}"
