"""One file of `posext resize`: load, plan, resample, write; every failure becomes the file's report.

Runs the same in the command's own process, in ``--workers`` processes and as a ``--cluster`` task. A
local file or a URL (``storage``): safetensors are read by ranges and streamed back out (``safetensors_io``);
torch pickles are memory-mapped (a URL's object is downloaded into a local temp folder first). Memory thus
follows the position tables, not the checkpoint.
"""
import contextlib
import os
import time
import warnings

import torch

from .io import (
    CheckpointError,
    drop_grid_dependent_optimizer_state,
    file_format,
    load_checkpoint,
    replace_state_dicts,
    save_checkpoint,
)
from .reporting import empty_report, failure_reason
from .storage import is_folder, is_url, local_copy

# The resized tables of one file may use at most this share of physical memory: the resampling holds the new
# table and an intermediate about as large.
MEMORY_SHARE = 0.5


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(state, plan) -> None:
    """Refuse a file whose resized tables would not fit (MEMORY_SHARE of physical memory) before
    resampling."""
    memory = _physical_memory()
    if not memory:
        return
    need, largest = 0, None
    for key, change in plan.changes.items():
        f, t = change.finding, state.get(key)
        if f.action not in ("resample", "regenerate_sincos", "resample_video") or t is None:
            continue
        cells = 1
        for n in change.new:
            cells *= n
        rows = cells + (0 if f.layout in ("nhwc", "nchw") else f.num_prefix_tokens + f.num_suffix_tokens)
        channels = t.shape[1] if f.layout == "nchw" else t.shape[-1]
        nbytes = rows * channels * t.element_size()
        need += nbytes
        largest = largest if largest and largest[1] >= nbytes else (key, nbytes, change.new)
    if need > MEMORY_SHARE * memory:
        size = "x".join(map(str, largest[2]))
        raise CheckpointError(f"the resized tables need {need / 2 ** 30:.1f} GiB ({largest[0]}: "
                              f"{largest[1] / 2 ** 30:.1f} GiB at grid {size}), more than half "
                              f"of this machine's {memory / 2 ** 30:.1f} GiB of memory")


def resize_file(path, output, target, options, head=None):
    """Resize one file (or Hugging Face folder); never raises for a bad input: returns its report (status
    ok / skipped / failed). ``head``: the head start of this file's target (``head_start``), if any."""
    if os.path.isdir(path) or is_url(path) and is_folder(path):
        from .folder_jobs import resize_hf_folder

        return resize_hf_folder(path, output, target, options)
    from .resize import plan_resize

    start = time.perf_counter()
    report = empty_report(path, output)
    stack = contextlib.ExitStack()
    try:
        if not options["in_place"] and os.path.abspath(output) == os.path.abspath(path):
            raise CheckpointError("the output would overwrite the input; pass --in-place to allow that")
        local = path
        if is_url(path) and file_format(path) != "safetensors":  # pickles and .npz need a local file
            local = stack.enter_context(local_copy(path))
        ckpt = load_checkpoint(local, unsafe_pickle=options["unsafe_pickle"])
        device = torch.device(options["device"])
        new_states, old_shapes, found = {}, set(), 0
        for wrapper, state in ckpt.state_dicts.items():
            plan = plan_resize(state, **target, mode=options["mode"], antialias=options["antialias"],
                               old_size=options["old_size"], num_prefix_tokens=options["num_prefix_tokens"],
                               sincos=options["sincos"])
            check_memory(state, plan)
            found += sum(f.action != "skip" for f in plan.findings)
            keys = set(plan.changes)
            staged = {k: (_value(state, k).to(device) if k in keys else v) for k, v in state.items()}
            resized, applied = plan.apply(staged)
            new_states[wrapper] = {k: (v.cpu() if k in keys and isinstance(v, torch.Tensor) else v)
                                   for k, v in resized.items()}
            for f in applied:
                old_shapes.add(tuple(state[f.key].shape))
                new_shape = list(resized[f.key].shape) if f.key in resized else None
                report["findings"].append({"wrapper": wrapper, "old_shape": list(state[f.key].shape),
                                           "new_shape": new_shape, **f.row()})
        if not report["findings"]:
            report.update(status="skipped", reason="no position embedding found" if not found else
                          "nothing to change: every grid-dependent tensor already has its new size")
            return report
        new = replace_state_dicts(ckpt, new_states)
        report["removed"] = drop_grid_dependent_optimizer_state(new.container, old_shapes,
                                                                drop_all=options["drop_optimizer"])
        if report["removed"] and not options["drop_optimizer"]:  # asked-for removal needs no warning
            warnings.warn(f"{path}: dropped grid-shaped optimizer state {report['removed']}", RuntimeWarning)
        if options["dry_run"]:
            report["status"] = "dry-run"
        else:
            report["bytes"] = save_checkpoint(new, output, head)
    except Exception as exc:  # one bad file never stops the batch
        report.update(status="failed", reason=failure_reason(exc))
    finally:
        stack.close()
        report["seconds"] = round(time.perf_counter() - start, 4)
    return report


def _value(state, key):
    """The tensor at ``key``, read from the file when ``state`` holds only its shape."""
    value = state[key]
    return state.read_tensor(key) if value.is_meta and hasattr(state, "read_tensor") else value
