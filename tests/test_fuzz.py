"""The fuzz campaign over every public function and raw op (tests/fuzz_cases.py, tests/fuzz_harness.py):
seeded, each case in a worker process with a timeout, so a crash or a hang is a finding, not the end of the
run.

POSEXT_FUZZ_CASES (default 2000) and POSEXT_FUZZ_SEED (default 0) widen or move the campaign.
"""
import os

import pytest

from posext import _backend
from tests import fuzz_harness
from tests.fuzz_cases import case as make_case

CASES = int(os.environ.get("POSEXT_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("POSEXT_FUZZ_SEED", "0"))


@pytest.mark.skipif(_backend.backend() != "extension", reason="extension not built: nothing to compare")
def test_no_case_crashes_hangs_or_misbehaves():
    problems = fuzz_harness.run(SEED, CASES, workers=2, timeout=60.0)
    report = "\n".join(f"case {i}: {p}\n    {make_case(SEED, i)}" for i, p in sorted(problems.items())[:25])
    assert not problems, f"{len(problems)} of {CASES} cases misbehaved (seed {SEED}):\n{report}"


def test_the_harness_catches_a_crash_and_a_hang():
    """A worker killed by a signal and one that stalls are findings, and the run goes on after them."""
    probes = {0: "os.kill(os.getpid(), 11)", 1: "time.sleep(600)", 2: "pass"}
    problems = fuzz_harness.run(0, 4, workers=1, timeout=10.0, probes=probes)
    assert problems[0].startswith("worker died") and "signal 11" in problems[0], problems
    assert problems[1].startswith("hang"), problems
    assert 2 not in problems and 3 not in problems, problems
