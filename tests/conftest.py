import pytest
import torch
from hypothesis import HealthCheck, settings

# The `backend` fixture only monkeypatches a dispatch switch, which is the same for every generated input.
settings.register_profile("posext", suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
settings.load_profile("posext")

import posext

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


def pytest_report_header(config):
    return f"posext: {posext.info()}"
