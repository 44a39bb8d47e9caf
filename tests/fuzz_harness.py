"""Crash-isolated runner of the fuzz cases of tests/fuzz_cases.py: worker processes (memory-capped), a
per-case timeout, one verdict per case.

    python -m tests.fuzz_harness run --seed 0 --cases 2000 [--workers 2] [--timeout 30]
    python -m tests.fuzz_harness show --seed 0 --case 17          # the case as code, and its verdict

Verdicts. A public function: the extension and the pure-PyTorch fallback (each on fresh inputs, outputs
poisoned with NaN by torch's deterministic mode) both return equal results and gradients (where inputs hold
NaN or inf: equal wherever both are finite), or both raise the same ValueError/TypeError with the same
message, which names the argument the case made wrong. A raw op:
returns the same bits with and without poisoned outputs, or raises RuntimeError/TypeError/ValueError (no
internal assert), and never accepts tensors on two devices. Any case: no signal death, no hang.
"""
import argparse
import contextlib
import json
import os
import resource
import select
import subprocess
import sys
import time

import torch

from posext import _backend
from tests.fuzz_cases import case as make_case

CLEAN_PUBLIC = (ValueError, TypeError)
CLEAN_RAW = (RuntimeError, TypeError, ValueError, NotImplementedError)
TOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 4e-3}
MEMORY_CAP = 6 << 30


@contextlib.contextmanager
def _backend_forced(name):
    use = _backend.use_extension
    if name == "python":
        _backend.use_extension = lambda device: False
    try:
        yield
    finally:
        _backend.use_extension = use


@contextlib.contextmanager
def _poisoned(on=True):
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(on)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


def attempt(case, backend="extension", poison=True):
    """-> ("ok", outputs, gradients, inputs_finite) or ("error", exception type, message)."""
    args, kwargs = case.build()
    floats = [t for t in _tensors((args, kwargs)) if t.is_floating_point() and t.device.type != "meta"]
    finite = all(bool(t.isfinite().all()) for t in floats)
    # results are as precise as the least precise input they were computed from
    precision = max((TOL.get(t.dtype, 0.0) for t in floats), default=0.0)
    grad_ctx = torch.no_grad() if case.no_grad else contextlib.nullcontext()
    with _backend_forced(backend), _poisoned(poison), grad_ctx:
        try:
            out = case.fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the verdict judges it
            return "error", type(exc), str(exc)
        outs = _tensors(out)
        leaves = [t for t in _tensors((args, kwargs)) if t.requires_grad]
        grads = None
        tracked = [o for o in outs if o.requires_grad]
        if leaves and tracked and not case.no_grad:
            gen = torch.Generator().manual_seed(7)
            loss = sum((o.double() * torch.randn(o.shape, generator=gen, dtype=torch.float64)).sum()
                       for o in tracked)
            try:
                grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            except Exception as exc:  # noqa: BLE001
                return "error", type(exc), f"backward: {exc}"
    return "ok", [o.detach() for o in outs], grads, (finite, precision)


def _same(a, b, what, inputs=(True, 0.0)):
    finite_inputs, input_tol = inputs
    if (a is None) != (b is None):
        return f"{what}: one side is None"
    if a is None:
        return None
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return f"{what}: {tuple(a.shape)} {a.dtype} {a.device} vs {tuple(b.shape)} {b.dtype} {b.device}"
    if a.device.type == "meta" or not a.is_floating_point():
        return None if a.device.type == "meta" or torch.equal(a, b) else f"{what}: values differ"
    x, y = a.double(), b.double()
    if not finite_inputs:
        # NaN and inf propagate by IEEE rules that the backends need not share: finite places
        both = x.isfinite() & y.isfinite()
        x, y = x[both], y[both]
    if not torch.equal(x.isnan(), y.isnan()):
        return f"{what}: NaN in {int(x.isnan().sum())} vs {int(y.isnan().sum())} places"
    finite = x.isfinite() & y.isfinite()
    if not torch.equal(x[~finite].nan_to_num(), y[~finite].nan_to_num()):
        return f"{what}: infinities differ"
    tol = max(TOL.get(a.dtype, 1e-9), input_tol)
    diff = (x[finite] - y[finite]).abs()
    if diff.numel() and bool((diff > tol + tol * y[finite].abs()).any()):
        return f"{what}: max difference {diff.max().item():.3g} (tolerance {tol})"
    return None


def _bits_equal(a, b):
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.device.type == "meta":
        return True
    if a.is_floating_point() and a.numel():
        view = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
        return torch.equal(a.contiguous().view(view), b.contiguous().view(view))
    return torch.equal(a, b)


def _error_problem(kind, exc_type, message, case, clean):
    if not issubclass(exc_type, clean):
        return f"{kind} raised {exc_type.__name__}, not one of {[c.__name__ for c in clean]}: {message[:200]}"
    if "INTERNAL ASSERT" in message or not message.strip():
        return f"{kind} raised an internal or empty error: {message[:200]}"
    if case.mutated and not case.raw and case.mutated not in message:
        return f"{kind} error does not name `{case.mutated}`: {exc_type.__name__}: {message[:200]}"
    return None


def verdict(case):
    """None when the case behaves, else a one-line problem."""
    if case.raw:
        return raw_verdict(case)
    ext, fb = attempt(case, "extension"), attempt(case, "python")
    if ext[0] != fb[0]:
        said = [f"{r[1].__name__}: {r[2][:150]}" if r[0] == "error" else "a result" for r in (ext, fb)]
        return f"backends disagree: extension gave {said[0]}; fallback gave {said[1]}"
    if ext[0] == "error":
        if ext[1] is not fb[1] or ext[2] != fb[2]:
            return (f"backends refuse differently: {ext[1].__name__}: {ext[2][:150]} | "
                    f"{fb[1].__name__}: {fb[2][:150]}")
        return _error_problem("both backends", ext[1], ext[2], case, CLEAN_PUBLIC)
    if len(ext[1]) != len(fb[1]):
        return f"{len(ext[1])} outputs vs {len(fb[1])}"
    for i, (a, b) in enumerate(zip(ext[1], fb[1])):
        problem = _same(a, b, f"output {i}", ext[3])
        if problem:
            return f"extension vs fallback, {problem}"
    for i, (a, b) in enumerate(zip(ext[2] or (), fb[2] or ())):
        problem = _same(a, b, f"gradient {i}", ext[3])
        if problem:
            return f"extension vs fallback, {problem}"
    return None


def raw_verdict(case):
    first, second = attempt(case, poison=True), attempt(case, poison=False)
    if first[0] != second[0]:
        return "raised with poisoned outputs only, or without only"
    if first[0] == "error":
        return _error_problem("raw op", first[1], first[2], case, CLEAN_RAW)
    args, kwargs = case.build()
    devices = {t.device.type for t in _tensors((args, kwargs))}
    if len(devices) > 1:
        return f"accepted tensors on {sorted(devices)}"
    for i, (a, b) in enumerate(zip(first[1], second[1])):
        if not _bits_equal(a, b):
            return f"output {i} depends on uninitialised memory or is not deterministic"
    return None


def worker(seed, start, stop):
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    torch.set_num_threads(1)
    # index -> a statement run instead (tests)
    probes = json.loads(os.environ.get("POSEXT_FUZZ_PROBES", "{}"))
    for i in range(start, stop):
        print(f"start {i}", flush=True)
        try:
            if str(i) in probes:
                exec(probes[str(i)], {"os": os, "time": time})
                problem = None
            else:
                problem = verdict(make_case(seed, i))
        except Exception as exc:  # noqa: BLE001 - a harness error is a finding too
            problem = f"harness: {type(exc).__name__}: {exc}"
        print("done " + json.dumps([i, problem]), flush=True)


def run(seed, cases, workers=2, timeout=30.0, probes=None):
    """-> {case index: problem} over `cases` cases, in `workers` processes. `probes` ({index: statement})
    replace cases by statements, to show that crashes and hangs are caught."""
    chunks = [(seed, w * cases // workers, (w + 1) * cases // workers) for w in range(workers)]
    problems = {}
    pending = [c for c in chunks if c[1] < c[2]]
    running = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "POSEXT_FUZZ_PROBES": json.dumps(probes or {})}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while pending or running:
        while pending and len(running) < workers:
            s, a, b = pending.pop()
            proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz_harness", "worker", str(s), str(a),
                                     str(b)], cwd=root, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
            running[proc] = {"stop": b, "since": time.monotonic(), "current": None, "buffer": b""}
        for proc, state in list(running.items()):
            ready, _, _ = select.select([proc.stdout], [], [], 0.05)
            chunk = os.read(proc.stdout.fileno(), 1 << 16) if ready else b""
            *lines, state["buffer"] = (state["buffer"] + chunk).split(b"\n")
            for line in (raw.decode() for raw in lines):
                if line.startswith("start "):
                    state["current"], state["since"] = int(line.split()[1]), time.monotonic()
                elif line.startswith("done "):
                    index, problem = json.loads(line[5:])
                    if problem:
                        problems[index] = problem
                    state["current"] = None
            if ready and chunk == b"":  # the worker ended
                code = proc.wait()
                del running[proc]
                if state["current"] is not None:
                    problems[state["current"]] = (f"worker died (exit {code}, "
                                                  f"signal {-code if code < 0 else 0})")
                    if state["current"] + 1 < state["stop"]:
                        pending.append((seed, state["current"] + 1, state["stop"]))
            elif state["current"] is not None and time.monotonic() - state["since"] > timeout:
                proc.kill()
                proc.wait()
                del running[proc]
                problems[state["current"]] = f"hang: no verdict after {timeout:.0f} s"
                if state["current"] + 1 < state["stop"]:
                    pending.append((seed, state["current"] + 1, state["stop"]))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("worker")
    p.add_argument("seed", type=int)
    p.add_argument("start", type=int)
    p.add_argument("stop", type=int)
    p = sub.add_parser("run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30.0)
    p = sub.add_parser("show")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker(args.seed, args.start, args.stop)
    elif args.command == "show":
        c = make_case(args.seed, args.case)
        print(c)
        print("verdict:", verdict(c) or "ok")
    else:
        problems = run(args.seed, args.cases, args.workers, args.timeout)
        for index, problem in sorted(problems.items()):
            print(f"case {index}: {problem}\n    {make_case(args.seed, index)}")
        print(f"{len(problems)} of {args.cases} cases misbehaved")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
