"""Device-side timing for the kernel benchmark: per-call time with inputs rotated out of the cache, the copy
bandwidth that bounds a memory-bound op, and kernel launches per call.

CUDA: a call's device time comes from replaying a CUDA graph that holds one call per input set (so launch
gaps and Python dispatch drop out), timed with CUDA events; its eager time from a plain loop of calls,
synchronised once at the end (what a Python caller waits for, dispatch included). CPU: both are wall-clock
times of a loop over the input sets. Every figure is the median over repeats.
"""
import math
import statistics
import time

import torch

# Enough input sets that one pass over them moves this many times the last-level cache.
CACHE_MULTIPLE = 4
MAX_SETS = 128
MAX_ROTATION_BYTES = 4 << 30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cache_bytes(device: torch.device) -> int:
    """Last-level cache the rotation must defeat: the GPU's L2, or a generous CPU L3 guess."""
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 50 << 20)
    return 64 << 20


def rotation_sets(bytes_per_call: int, device: torch.device) -> int:
    """How many distinct input sets a timing loop cycles through (>= 2)."""
    want = math.ceil(CACHE_MULTIPLE * cache_bytes(device) / max(bytes_per_call, 1))
    fit = max(2, MAX_ROTATION_BYTES // max(bytes_per_call, 1))
    return int(max(2, min(want, MAX_SETS, fit)))


def _event_seconds(run, repeats: int):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def _wall_seconds(run, repeats: int, device: torch.device):
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def eager_seconds(fn, sets, device: torch.device, repeats: int) -> float:
    """Median wall time per call of a loop of ``fn(*s)`` over the input sets (one sync at the end)."""
    def loop():
        for s in sets:
            fn(*s)

    loop()  # warm-up: lazy init, allocator growth, first touch
    return _wall_seconds(loop, repeats, device) / len(sets)


def graph_seconds(fn, sets, device: torch.device, repeats: int) -> float:
    """Median device time per call: one CUDA graph holding a call per input set, timed over replays.
    Raises if a call cannot be captured (it syncs with the host, say)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graph asks
        for s in sets[:2]:
            fn(*s)
    torch.cuda.current_stream(device).wait_stream(side)
    sync(device)
    graph = torch.cuda.CUDAGraph()
    keep = []  # every call's result stays alive, so no two calls share output memory
    with torch.cuda.graph(graph):
        for s in sets:
            keep.append(fn(*s))
    graph.replay()
    sync(device)
    seconds = _event_seconds(graph.replay, repeats) / len(sets)
    del graph, keep
    return seconds


def device_seconds(fn, sets, device: torch.device, repeats: int):
    """-> (seconds per call, how it was timed: 'graph', 'events' when capture failed, or 'wall' on CPU)."""
    if device.type != "cuda":
        return eager_seconds(fn, sets, device, repeats), "wall"
    try:
        return graph_seconds(fn, sets, device, repeats), "graph"
    except Exception:  # not capturable: time the eager loop on the device's clock instead
        torch.cuda.synchronize(device)

        def loop():
            for s in sets:
                fn(*s)

        loop()
        return _event_seconds(loop, repeats) / len(sets), "events"


def launches_per_call(fn, args, device: torch.device, calls: int = 3):
    """Kernels and memory copies/sets the device runs per call of ``fn(*args)`` (torch.profiler), or None on
    CPU. Also None when the profiler saw no device activity at all (no CUPTI), so 0 is never reported
    falsely."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    fn(*args)
    sync(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn(*args)
        sync(device)
    kernels = copies = 0
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if event.name.startswith(("Memcpy", "Memset")):
            copies += 1
        else:
            kernels += 1
    if kernels == copies == 0:
        return None
    return {"kernels": kernels / calls, "copies": copies / calls}


def copy_bandwidth(device: torch.device, nbytes: int, repeats: int = 10) -> float:
    """Bytes per second (read + written) of a device-to-device copy of ``nbytes`` of random data."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    dst.copy_(src)
    run = lambda: dst.copy_(src)  # noqa: E731
    seconds = _event_seconds(run, repeats) if device.type == "cuda" else _wall_seconds(run, repeats, device)
    return 2.0 * src.numel() * src.element_size() / seconds


def tensor_bytes(*values) -> int:
    """Bytes of every tensor in ``values`` (nested tuples/lists allowed): what an op must read or write
    once."""
    total = 0
    for v in values:
        if isinstance(v, torch.Tensor):
            total += v.numel() * v.element_size()
        elif isinstance(v, (tuple, list)):
            total += tensor_bytes(*v)
    return total
