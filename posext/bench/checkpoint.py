"""Checkpoint job: `posext resize` over N files vs plain load + save of the same files (torch pickle and
safetensors, a ViT-S/16 state dict at 224 -> 384, i.e. grid 14 -> 24). The resize should vanish next to I/O;
posext's writes are durable (temp file, fsync, rename), so plain load + save is also timed with that."""
import os
import tempfile
import time

import torch

from ..checkpoint.file_job import resize_file
from .common import installed, span

WHAT = ("posext resize of ViT-S/16 checkpoint files (grid 14 -> 24) vs plain load + save of the same files, "
        "with and without fsync")
NUM_FILES = 4
REPEATS = 3


def formats():
    """The file formats timed: torch pickles always, safetensors when it is installed (optional for
    posext)."""
    return ("torch", "safetensors") if installed("safetensors") else ("torch",)


def plan(devices, quick=False):
    return len(formats()), None  # disk-bound: no estimate worth printing before the files exist


def _state_dict():
    try:
        import timm

        return timm.create_model("vit_small_patch16_224", pretrained=False).state_dict()
    except ImportError:  # same layout by hand: ~22M parameters
        gen = torch.Generator().manual_seed(0)
        state = {"cls_token": torch.randn(1, 1, 384, generator=gen),
                 "pos_embed": torch.randn(1, 197, 384, generator=gen)}
        for i in range(12):
            state[f"blocks.{i}.mlp.fc1.weight"] = torch.randn(1536, 384, generator=gen)
            state[f"blocks.{i}.mlp.fc2.weight"] = torch.randn(384, 1536, generator=gen)
            state[f"blocks.{i}.attn.qkv.weight"] = torch.randn(1152, 384, generator=gen)
        return state


def _plain(paths, out_dir, fmt):
    for p in paths:
        dst = os.path.join(out_dir, os.path.basename(p))
        if fmt == "safetensors":
            from safetensors.torch import load_file, save_file

            save_file(load_file(p), dst)
        else:
            torch.save(torch.load(p, weights_only=True, map_location="cpu"), dst)


def _plain_durable(paths, out_dir, fmt):
    """Plain load + save with the same durability as posext: temp file, fsync, rename."""
    from ..checkpoint.io import atomic_write

    for p in paths:
        dst = os.path.join(out_dir, os.path.basename(p))
        if fmt == "safetensors":
            from safetensors.torch import load_file, save_file

            tensors = load_file(p)
            atomic_write(dst, lambda tmp: save_file(tensors, tmp))
        else:
            obj = torch.load(p, weights_only=True, map_location="cpu")
            atomic_write(dst, lambda tmp: torch.save(obj, tmp))


def _posext(paths, out_dir, fmt):
    options = dict(mode="bicubic", antialias=True, old_size=None, num_prefix_tokens=None, sincos="auto",
                   device="cpu", unsafe_pickle=False, dry_run=False, drop_optimizer=False, in_place=False)
    for p in paths:
        report = resize_file(p, os.path.join(out_dir, os.path.basename(p)), {"new_grid": (24, 24)}, options)
        if report["status"] != "ok":
            raise RuntimeError(f"benchmark resize failed: {report['reason']}")


def _write_inputs(paths, fmt, state):
    for p in paths:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(state, p)
        else:
            torch.save({"model": state}, p)


def run(devices, quick=False):
    state = _state_dict()
    num = 2 if quick else NUM_FILES
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in formats():
            ext = ".safetensors" if fmt == "safetensors" else ".pth"
            paths = [os.path.join(tmp, f"ckpt{i}{ext}") for i in range(num)]
            _write_inputs(paths, fmt, state)
            total = sum(os.path.getsize(p) for p in paths)
            row = {"device": "cpu", "format": fmt, "files": num, "mbytes": total / 2**20}
            for name, fn in (("plain", _plain), ("durable", _plain_durable), ("posext", _posext)):
                times = []
                for rep in range(1 if quick else REPEATS):
                    out = os.path.join(tmp, f"{fmt}-{name}{rep}")
                    os.makedirs(out)
                    start = time.perf_counter()
                    fn(paths, out, fmt)
                    times.append(time.perf_counter() - start)
                    for f in os.listdir(out):
                        os.unlink(os.path.join(out, f))
                row[f"{name}_s"] = sorted(times)[len(times) // 2]
            row["ratio"] = row["posext_s"] / row["plain_s"]
            row["ratio_durable"] = row["posext_s"] / row["durable_s"]
            rows.append(row)
    return rows


COLUMNS = [("format", "format", "{}"), ("files", "files", "{}"), ("mbytes", "MiB", "{:.0f}"),
           ("plain_s", "load+save s", "{:.2f}"), ("durable_s", "load+save+fsync s", "{:.2f}"),
           ("posext_s", "posext resize s", "{:.2f}"), ("ratio", "posext / load+save", "{:.2f}x"),
           ("ratio_durable", "posext / load+save+fsync", "{:.2f}x")]
LEGEND = [
    ("plain_s", "load+save s = torch.load + torch.save (safetensors: load_file + save_file) of every file"),
    ("durable_s", "load+save+fsync s = the same, written as posext writes: temp file, fsync, rename"),
    ("posext_s", ("posext resize s = posext resize of every file to a 24x24 grid: detection, resample, the "
                  "durable write")),
    ("ratio", ("posext / X = posext resize s / X s: what posext costs over that; lower is better, 1.00x = no "
               "overhead")),
    (None, f"s = median of {REPEATS} repeats (1 with --quick) over all files"),
]
TARGET_RATIO = 1.3  # posext resize should take at most this many times plain load + save


def summary(rows):
    """The README's claims: posext's overhead over plain and durable load + save, per format, vs the
    target."""
    out = []
    for r in rows:
        met = "met" if r["ratio"] <= TARGET_RATIO else "not met"
        out.append(f"{r['format']}: posext resize takes {r['ratio']:.2f}x plain load + save (target <= "
                   f"{TARGET_RATIO:g}x: {met}) and {r['ratio_durable']:.2f}x load + save with the same "
                   f"fsync; the fsync alone makes load + save {r['durable_s'] / r['plain_s']:.2f}x slower.")
    if rows:
        files = span([r["files"] for r in rows], "{}")
        out.append(f"{files} files per format, {span([r['mbytes'] for r in rows], '{:.0f}')} MiB in all.")
    return out


plot = None  # two rows: the table says it all
