"""Batch job: `posext resize` as whole commands (start-up included) over many small checkpoints, through
`--workers 2` and `--cluster local:2` (dask LocalCluster), and over one big file (safetensors, then a torch
zip pickle) against `cp` + fsync of the same file, with posext's peak anonymous memory (RssAnon, sampled
every 2 ms) as a fraction of the file. Big-file size: POSEXT_BENCH_BIG_GB (default 3; --quick: 0.25).
Last, a sharded Hugging Face ViT-B/16 folder resized from a store to a store (fsspec memory://, in one
process: the store adds no network time, so the difference is posext's own) against the same folder on
local disk."""
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import torch

from .common import installed, span

WHAT = ("posext resize as whole commands: many small files via --workers 2 vs --cluster local:2, one big "
        "file vs cp + fsync, with peak anonymous memory")
NUM_FILES = 200
REPEATS = 3
TENSOR_BYTES = 64 * 2**20  # the big file's filler tensors
TARGET_RATIO = 1.3  # posext resize of a big safetensors file: at most this many times cp + fsync
TARGET_ANON = 0.2  # peak anonymous memory growth: at most this fraction of the file
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROBE = textwrap.dedent("""
    import sys, threading, time
    from posext.cli import main
    import posext.checkpoint.commands, posext.checkpoint.resize  # imports outside the measurement

    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    base, peak, done = anon(), [0], []
    def sample():
        while not done:
            peak[0] = max(peak[0], anon())
            time.sleep(0.002)
    thread = threading.Thread(target=sample)
    thread.start()
    code = main(["resize", sys.argv[1], "--grid", "24", "--out", sys.argv[2]])
    done.append(1)
    thread.join()
    print("GROWTH", peak[0] - base)
    sys.exit(code)
""")


STORE_PROBE = textwrap.dedent("""
    import os, sys, time
    import fsspec
    from posext.cli import main
    import posext.checkpoint.folder_jobs, posext.checkpoint.resize  # imports outside the measurement
    src, tmp, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fs = fsspec.filesystem("memory")
    fs.put(src, "/bench/zoo/vit", recursive=True)
    sides = (("store", "memory://bench/zoo/vit", "memory://bench/out"),
             ("local", src, os.path.join(tmp, "out")))
    for rep in range(repeats + 1):  # the first round warms the page cache and is not counted
        for side, inp, out in sides:
            start = time.perf_counter()
            if main(["resize", inp, "--grid", "24", "--out", out]) != 0:
                sys.exit(1)
            if rep:
                print("TIME", side, time.perf_counter() - start)
    local = os.path.join(tmp, "out", "vit")
    for name in sorted(os.listdir(local)):
        if fs.cat(f"/bench/out/vit/{name}") != open(os.path.join(local, name), "rb").read():
            sys.exit(f"the store's {name} differs from the local result")
""")


def big_formats():
    return ("safetensors", "torch") if installed("safetensors") else ("torch",)


def store_folder_runs():
    """Whether the HF-folder-through-a-store row can run (it builds the folder with transformers)."""
    return installed("transformers") and installed("fsspec")


def plan(devices, quick=False):
    return 1 + len(big_formats()) + store_folder_runs(), None  # disk-bound: no estimate beforehand


def _big_gb(quick):
    return 0.25 if quick else float(os.environ.get("POSEXT_BENCH_BIG_GB", "3"))


def _vit_state(gen, extra_weights=4):
    """A timm-like ViT-Ti/16 head of a state dict (grid 14, 192 wide)."""
    state = {"cls_token": torch.randn(1, 1, 192, generator=gen),
             "pos_embed": torch.randn(1, 197, 192, generator=gen),
             "patch_embed.proj.weight": torch.randn(192, 3, 16, 16, generator=gen)}
    for i in range(extra_weights):
        state[f"blocks.{i}.attn.proj.weight"] = torch.randn(192, 192, generator=gen)
    return state


def _save(state, path):
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save(state, path)


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}


def _timed(cmd):
    """Seconds of one whole command; raises with its output when it fails."""
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({result.returncode}): {' '.join(cmd)}\n"
                           f"{result.stdout}{result.stderr}")
    return elapsed


def _resize_cmd(inputs, out, *extra):
    return [sys.executable, "-m", "posext.cli", "resize", *inputs, "--grid", "24", "--out", out, *extra]


def _clear(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.sync()  # writeback of what was deleted or written must not spill into the next timing


def _median(times):
    return sorted(times)[len(times) // 2]


def _same_trees(a, b):
    """Raise unless folders ``a`` and ``b`` hold the same files, byte for byte."""
    def files(top):
        return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)

    names_a, names_b = files(a), files(b)
    if names_a != names_b:
        odd = sorted(set(names_a) ^ set(names_b))
        raise RuntimeError(f"--workers and --cluster wrote different files: {odd}")
    differ = [n for n in names_a if not filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False)]
    if differ:
        raise RuntimeError(f"--workers and --cluster outputs differ in {len(differ)} files, e.g. "
                           f"{differ[:3]}")
    return len(names_a)


def _files_row(tmp, quick):
    num = 40 if quick else NUM_FILES
    src = os.path.join(tmp, "many")
    os.makedirs(src)
    gen = torch.Generator().manual_seed(0)
    exts = (".safetensors", ".pth") if installed("safetensors") else (".pth",)
    for i in range(num):
        _save(_vit_state(gen), os.path.join(src, f"ckpt{i:03d}{exts[i % len(exts)]}"))
    total = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src))
    row = {"device": "cpu", "kind": "files", "format": "+".join(e[1:] for e in exts), "files": num,
           "mbytes": total / 2**20}
    sides = {"workers_s": ("--workers", "2")}
    if installed("distributed"):
        sides["cluster_s"] = ("--cluster", "local:2")
    times = {key: [] for key in sides}
    for rep in range(1 if quick else REPEATS):
        outs = {}
        for key, extra in sides.items():
            outs[key] = os.path.join(tmp, f"out-{key}")
            times[key].append(_timed(_resize_cmd([src], outs[key], *extra)))
        if rep == 0 and "cluster_s" in outs:
            _same_trees(outs["workers_s"], outs["cluster_s"])
        for out in outs.values():
            _clear(out)
    row.update({key: _median(t) for key, t in times.items()})
    if "cluster_s" in row:
        row["ratio"] = row["cluster_s"] / row["workers_s"]
    _clear(src)
    return row


def _big_state(size):
    gen = torch.Generator().manual_seed(1)
    state = _vit_state(gen, extra_weights=0)
    count = max(1, round((size - sum(t.nbytes for t in state.values())) / TENSOR_BYTES))
    for i in range(count):
        state[f"blocks.{i}.mlp.fc1.weight"] = torch.randn(TENSOR_BYTES // 4 // 1024, 1024, generator=gen)
    return state


def _peak_anon(path, out):
    result = subprocess.run([sys.executable, "-c", PROBE, path, out], capture_output=True, text=True,
                            env=_env())
    if result.returncode != 0:
        raise RuntimeError(f"memory probe failed: {result.stdout}{result.stderr}")
    return int(result.stdout.split("GROWTH")[1])


def _big_rows(tmp, quick):
    size = int(_big_gb(quick) * 2**30)
    state = _big_state(size)
    rows = []
    for fmt in big_formats():
        path = os.path.join(tmp, "big.safetensors" if fmt == "safetensors" else "big.pth")
        _save(state, path)
        nbytes = os.path.getsize(path)
        copy, out = os.path.join(tmp, "copy" + os.path.splitext(path)[1]), os.path.join(tmp, "out-big")
        with open(path, "rb") as f:  # both sides read a page-cached input
            while f.read(2**24):
                pass
        cp_times, posext_times, torch_times = [], [], []
        for _ in range(1 if quick else REPEATS):
            cp_times.append(_timed(["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", path, copy]))
            _clear(copy)
            posext_times.append(_timed(_resize_cmd([path], out)))
            _clear(out)
            # torch's import alone: what the command overlaps with the copy of a safetensors file
            torch_times.append(_timed([sys.executable, "-c", "import torch"]))
        growth = _peak_anon(path, out)
        _clear(out)
        _clear(path)
        row = {"device": "cpu", "kind": "big file", "format": fmt, "files": 1, "mbytes": nbytes / 2**20,
               "cp_s": _median(cp_times), "posext_s": _median(posext_times),
               "torch_s": _median(torch_times), "anon": growth / nbytes}
        row["ratio"] = row["posext_s"] / row["cp_s"]
        if fmt == "safetensors":
            row["target"] = TARGET_RATIO
        rows.append(row)
    return rows


def _store_folder_row(tmp, quick):
    import transformers

    transformers.utils.logging.disable_progress_bar()
    src = os.path.join(tmp, "vit")
    width = dict(hidden_size=192, num_attention_heads=3, intermediate_size=768) if quick else {}
    torch.manual_seed(0)
    model = transformers.ViTModel(transformers.ViTConfig(image_size=224, patch_size=16, **width))
    model.save_pretrained(src, max_shard_size="10MB" if quick else "100MB")
    transformers.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(src)
    nbytes = sum(os.path.getsize(os.path.join(src, n)) for n in os.listdir(src))
    result = subprocess.run([sys.executable, "-c", STORE_PROBE, src, tmp, str(1 if quick else REPEATS)],
                            capture_output=True, text=True, env=_env())
    if result.returncode != 0:
        raise RuntimeError(f"store probe failed: {result.stdout}{result.stderr}")
    times = {"store": [], "local": []}
    for line in result.stdout.splitlines():
        if line.startswith("TIME "):
            _, side, seconds = line.split()
            times[side].append(float(seconds))
    _clear(src)
    _clear(os.path.join(tmp, "out"))
    row = {"device": "cpu", "kind": "hf folder", "format": "safetensors shards", "files": 1,
           "mbytes": nbytes / 2**20, "posext_s": _median(times["store"]), "local_s": _median(times["local"])}
    row["ratio"] = row["posext_s"] / row["local_s"]
    return row


def run(devices, quick=False):
    with tempfile.TemporaryDirectory(prefix="posext-bench-batch-") as tmp:  # under /tmp: its disk
        rows = [_files_row(tmp, quick)] + _big_rows(tmp, quick)
        if store_folder_runs():
            rows.append(_store_folder_row(tmp, quick))
        return rows


COLUMNS = [("kind", "kind", "{}"), ("format", "format", "{}"), ("files", "files", "{}"),
           ("mbytes", "MiB", "{:.0f}"), ("workers_s", "--workers 2 s", "{:.2f}"),
           ("cluster_s", "--cluster local:2 s", "{:.2f}"), ("cp_s", "cp+fsync s", "{:.2f}"),
           ("posext_s", "posext resize s", "{:.2f}"), ("local_s", "local folder s", "{:.2f}"),
           ("ratio", "ratio", "{:.2f}x"),
           ("target", "ratio target", "<= {:g}x"), ("torch_s", "import torch s", "{:.2f}"),
           ("anon", "peak anon / file", "{:.4f}x")]
LEGEND = [
    (None, "every time is a whole command (python -m posext.cli resize ... --grid 24 --out DIR): start-up "
           "counts for both sides"),
    (("workers_s", "cluster_s"), (f"files rows: {NUM_FILES} small ViT-Ti/16-like checkpoints (40 with "
                                  "--quick), alternately safetensors and torch pickles, through --workers 2 "
                                  "or a dask LocalCluster of 2 processes; ratio = cluster s / workers s, "
                                  "outputs checked byte-identical")),
    ("cp_s", ("big file rows: one file of a ViT head plus 64 MiB float32 tensors; cp+fsync s = cp of it and "
              "sync of the copy; ratio = posext resize s / cp+fsync s, lower is better")),
    ("torch_s", ("import torch s = python -c 'import torch' alone; a safetensors file is planned from its "
                 "header and copied while torch loads, a torch pickle needs torch to be read")),
    ("anon", (f"peak anon / file = peak RssAnon growth of the resize (sampled every 2 ms) / file size; "
              f"target <= {TARGET_ANON:g}x")),
    ("local_s", ("hf folder row: a sharded HF ViT-B/16 folder (ViT-Ti width with --quick), timed inside one "
                 "process (start-up excluded): posext resize s = memory:// store to memory:// store, local "
                 "folder s = the same folder from and to local disk; ratio = store / local; results checked "
                 "byte-identical")),
    (None, f"s = median of {REPEATS} repeats (1 with --quick); outputs deleted and synced between repeats"),
]


def summary(rows):
    """Per row: the ratio (and memory fraction) vs its target."""
    out = []
    for r in rows:
        if r["kind"] == "hf folder":
            out.append(f"HF folder ({r['mbytes']:.0f} MiB) from a memory:// store to one: {r['ratio']:.2f}x "
                       f"the same folder on local disk ({r['posext_s']:.2f} s vs {r['local_s']:.2f} s; no "
                       f"target), byte-identical.")
            continue
        if r["kind"] == "files":
            if r.get("ratio") is None:
                out.append(f"{r['files']} files: --workers 2 takes {r['workers_s']:.2f} s; no "
                           f"dask.distributed, so no --cluster run.")
                continue
            out.append(f"{r['files']} files: --cluster local:2 takes {r['ratio']:.2f}x --workers 2 "
                       f"({r['cluster_s']:.2f} s vs {r['workers_s']:.2f} s; no target), outputs "
                       f"byte-identical.")
            continue
        time_part = (f"{r['ratio']:.2f}x cp + fsync (target <= {r['target']:g}x: "
                     f"{'met' if r['ratio'] <= r['target'] else 'not met'})" if r.get("target") is not None
                     else f"{r['ratio']:.2f}x cp + fsync (no time target)")
        if r.get("torch_s") is not None:
            overlap = "overlapped with the copy" if r["format"] == "safetensors" else "before the copy"
            time_part += f"; the import of torch alone takes {r['torch_s']:.2f} s, {overlap}"
        mem = "met" if r["anon"] <= TARGET_ANON else "not met"
        out.append(f"big {r['format']} file ({r['mbytes']:.0f} MiB): posext resize takes {time_part}; peak "
                   f"anonymous memory {r['anon']:.4f}x the file ({r['anon'] * r['mbytes']:.1f} MiB; target "
                   f"<= {TARGET_ANON:g}x: {mem}).")
    big = [r["mbytes"] for r in rows if r["kind"] == "big file"]
    if big:
        out.append(f"Big files of {span(big, '{:.0f}')} MiB.")
    return out


plot = None  # three rows: the table says it all
