"""Calls every posext kernel on the shapes that break index math and checks every result: the program that
scripts/gpu_check.sh runs under each compute-sanitizer tool.

Shapes: 1x1 grids, C = 1, 3, 129 and 300 (more channels than a block has threads), empty batches, channel-
and token-strided inputs, outputs written at an offset, batches and grids that reach the CUDA launch-grid
limits, every dtype and mode, forward and backward, variable-resolution batches packed and padded. On
"cuda" each result is compared with the CPU kernels; on "cpu" (the kit's dry run) with the pure-PyTorch
fallback. --poison fills fresh tensors with NaN (torch's deterministic mode), so an element a kernel never
writes fails the comparison; initcheck runs without it, so that such an element is an uninitialised read
instead.

    python scripts/kernel_driver.py --device cuda [--poison] [--json summary.json]

Prints one line per op; exits 1 if any check failed.
"""
import argparse
import collections
import json
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import posext  # noqa: E402
from posext import _backend  # noqa: E402

TOL = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 1e-2}
COMBOS = [("bicubic", False, False), ("bicubic", True, False), ("bicubic", False, True),
          ("bilinear", False, False), ("bilinear", True, False), ("bilinear", False, True),
          ("nearest", False, False)]


class Driver:
    def __init__(self, device: str):
        self.device = torch.device(device)
        self.calls = collections.Counter()
        self.failures = []
        self.gen = torch.Generator().manual_seed(0)

    def randn(self, *shape, dtype=torch.float32, stride_c=1, stride_t=1):
        """A device tensor [..., T, C]; stride_c / stride_t > 1 give it channel / token strides."""
        *lead, t, c = shape
        base = torch.randn(*lead, t * stride_t, c * stride_c, generator=self.gen, dtype=torch.float64)
        base = base.to(dtype=dtype, device=self.device)
        return base[..., ::stride_t, ::stride_c]

    def _reference(self, fn, args):
        """fn on CPU copies of the arguments: the CPU kernels, or on a CPU device the PyTorch fallback."""
        if self.device.type == "cuda":
            return fn(*args, device="cpu")
        use = _backend.use_extension
        _backend.use_extension = lambda device: False
        try:
            return fn(*args, device="cpu")
        finally:
            _backend.use_extension = use

    def check(self, op, label, fn, *args, wrt=(), dtype=torch.float32):
        """fn(*args, device=...) on the device vs the reference; with `wrt`, also the gradients w.r.t. those
        argument positions (random output gradient)."""
        self.calls[op] += 1
        try:
            got, want = self._run(fn, args, wrt, self.device.type), self._run(fn, args, wrt, "reference")
            if len(got) != len(want):
                raise AssertionError(f"{len(got)} results vs {len(want)}")
            for i, (g, w) in enumerate(zip(got, want)):
                if g.shape != w.shape:
                    raise AssertionError(f"result {i}: shape {tuple(g.shape)} vs {tuple(w.shape)}")
                g = g.detach().cpu()
                if g.is_floating_point() and g.isnan().any():
                    raise AssertionError(f"result {i}: {int(g.isnan().sum())} unwritten (NaN) elements")
                tol = TOL[dtype]
                torch.testing.assert_close(g.double(), w.detach().double(), rtol=tol, atol=tol,
                                           msg=lambda m: f"result {i}: {m}")
        except Exception as exc:  # noqa: BLE001 - every failure is reported, the run goes on
            text = f"{op} [{label}]: {type(exc).__name__}: {exc}"
            self.failures.append(" | ".join(line.strip() for line in text.splitlines()[:4])[:500])
            traceback.print_exc(limit=3)

    def _run(self, fn, args, wrt, where):
        gen = torch.Generator().manual_seed(1)
        if where == "reference":
            args = [a.detach().cpu() if isinstance(a, torch.Tensor) else a for a in args]
        leaves = [args[i].detach().clone().requires_grad_() if where == "reference" else
                  args[i].detach().requires_grad_() for i in wrt]
        call_args = list(args)
        for i, leaf in zip(wrt, leaves):
            call_args[i] = leaf
        run = (lambda: self._reference(fn, call_args)) if where == "reference" else (
            lambda: fn(*call_args, device=self.device))
        with torch.set_grad_enabled(bool(wrt)):
            out = run()
            outs = list(out) if isinstance(out, (tuple, list)) else [out]
            if wrt:
                grads = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outs]
                dev = outs[0].device
                outs += list(torch.autograd.grad(outs, leaves, [g.to(dev) for g in grads], allow_unused=True))
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # an asynchronous fault shows at the call that caused it
        return [o if o is not None else torch.zeros(0) for o in outs]

    def expect_error(self, op, label, fn, exc_type, words):
        """A refusal: a clean Python exception naming `words`, after which the device still works."""
        self.calls[op] += 1
        try:
            fn()
            self.failures.append(f"{op} [{label}]: no {exc_type.__name__} raised")
        except exc_type as exc:
            if not all(w in str(exc) for w in words):
                self.failures.append(f"{op} [{label}]: message {str(exc)[:200]!r} lacks {words}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            assert torch.ones(4, device=self.device).sum().item() == 4.0  # no sticky error left behind


def sincos(d: Driver):
    for conv in sorted(posext.CONVENTIONS):
        for dim, grid, prefix in [(8, (1, 1), 0), (12, (1, 7), 1), (132, (13, 3), 5), (1024, (1, 1), 1)]:
            for dtype in (torch.float32, torch.bfloat16) if dim == 132 else (torch.float32,):
                d.check("sincos_2d", f"{conv} D={dim} {grid} P={prefix} {dtype}",
                        lambda device, c=conv, g=grid, p=prefix, dt=dtype, n=dim: posext.sincos_2d(
                            n, g, convention=c, num_prefix_tokens=p, dtype=dt, device=device), dtype=dtype)
    for grid in [(1, 70000), (300, 2)]:  # more grid lines than one launch grid holds
        d.check("sincos_2d", f"D=4 {grid}", lambda device, g=grid: posext.sincos_2d(4, g, num_prefix_tokens=1,
                                                                                   device=device))

    def into_slice(device):  # out= writes into a parameter-like slice at an offset
        buf = torch.full((2, 1 + 5 * 6, 64), float("nan"), device=device)
        posext.sincos_2d(64, (5, 6), num_prefix_tokens=1, out=buf[1])
        return buf[1]

    d.check("sincos_2d", "out= slice", into_slice)
    for conv, dim in [("vjepa", 8), ("vjepa", 136), ("vjepa_uniform", 1), ("vjepa_uniform", 130),
                      ("cogvideox", 16), ("cogvideox", 144), ("videomae", 3), ("videomae", 129)]:
        for grid, prefix in [((1, 1, 1), 0), ((3, 1, 7), 5), ((2, 13, 3), 1)]:
            for dtype in (torch.float32, torch.bfloat16) if dim > 128 else (torch.float32,):
                d.check("sincos_3d", f"{conv} D={dim} {grid} P={prefix} {dtype}",
                        lambda device, c=conv, g=grid, p=prefix, dt=dtype, n=dim: posext.sincos_3d(
                            n, g, convention=c, num_prefix_tokens=p, dtype=dt, device=device), dtype=dtype)
    # more grid lines than one launch grid holds (w, flat index), a line longer than one chunk (t)
    for conv, dim, grid in [("vjepa", 8, (1, 1, 70000)), ("videomae", 2, (2, 7, 5001)),
                            ("vjepa", 8, (2, 300, 300))]:
        d.check("sincos_3d", f"{conv} D={dim} {grid}", lambda device, c=conv, n=dim, g=grid: posext.sincos_3d(
            n, g, convention=c, num_prefix_tokens=1, device=device))
    for m, dim, pdtype, stride in [(0, 6, torch.float32, 1), (1, 2, torch.float64, 1),
                                   (37, 130, torch.int64, 2), (2_200_000, 2, torch.float32, 1)]:
        pos = ((torch.rand(m * stride, generator=d.gen, dtype=torch.float64) * 300).to(pdtype)
               .to(d.device)[::stride])
        for dtype in (torch.float32, torch.bfloat16):
            d.check("sincos_1d", f"M={m} D={dim} {pdtype} stride {stride} {dtype}",
                    lambda p, device, n=dim, dt=dtype: posext.sincos_1d(n, p.to(device), dtype=dt), pos,
                    dtype=dtype)


def resample(d: Driver):
    shapes = [  # batch, prefix, old (h, w), new (h, w), C, channel stride, token stride
        (2, 1, (1, 1), (3, 5), 3, 1, 1), (1, 5, (5, 3), (1, 1), 1, 1, 1), (3, 0, (13, 7), (29, 3), 129, 2, 1),
        (0, 1, (4, 4), (6, 6), 8, 1, 1), (1, 1, (14, 14), (24, 24), 300, 1, 2),
        (4000, 1, (2, 2), (3, 3), 3, 1, 1)]
    for mode, aa, ac in COMBOS:
        for b, p, old, new, c, sc, st in shapes:
            x = d.randn(b, p + old[0] * old[1], c, stride_c=sc, stride_t=st)
            kw = dict(old_size=old, num_prefix_tokens=p, mode=mode, antialias=aa, align_corners=ac)
            d.check("resample", f"{mode} aa={aa} ac={ac} B={b} P={p} {old}->{new} C={c} strides c{sc} t{st}",
                    lambda x, device, n=new, kw=kw: posext.resample(x, n, **kw), x, wrt=(0,))
        for dtype in (torch.float64, torch.bfloat16, torch.float16):
            x = d.randn(2, 1 + 6 * 5, 33, dtype=dtype)
            d.check("resample", f"{mode} aa={aa} ac={ac} {dtype}", lambda x, device, m=mode, a=aa, c=ac:
                    posext.resample(x, (4, 9), old_size=(6, 5), mode=m, antialias=a, align_corners=c),
                    x, wrt=(0,), dtype=dtype)
        nhwc = d.randn(1, 9, 5, 3)
        d.check("resample", f"{mode} aa={aa} NHWC", lambda x, device, m=mode, a=aa, c=ac:
                posext.resample(x, (4, 7), mode=m, antialias=a, align_corners=c), nhwc, wrt=(0,))
        d.check("resample", f"{mode} aa={aa} scale_factor", lambda x, device, m=mode, a=aa, c=ac:
                posext.resample(x, scale_factor=(1.7, 0.6), old_size=(13, 7), mode=m, antialias=a,
                                align_corners=c), d.randn(2, 1 + 13 * 7, 5), wrt=(0,))
        x, pe = d.randn(3, 1 + 2 * 3, 129), d.randn(1, 1 + 4 * 4, 129)
        d.check("add_pos_embed", f"{mode} aa={aa} shared table", lambda x, pe, device, m=mode, a=aa, c=ac:
                posext.add_pos_embed(x, pe, (2, 3), mode=m, antialias=a, align_corners=c), x, pe, wrt=(0, 1))
        x, pe = d.randn(2, 9, 1, stride_t=2), d.randn(2, 4 * 5, 1)
        d.check("add_pos_embed", f"{mode} aa={aa} per-entry table C=1",
                lambda x, pe, device, m=mode, a=aa, c=ac:
                posext.add_pos_embed(x, pe, (3, 3), old_size=(4, 5), num_prefix_tokens=0, mode=m, antialias=a,
                                     align_corners=c), x, pe, wrt=(0, 1))
    x, pe = d.randn(0, 1 + 3 * 3, 4), d.randn(1, 1 + 2 * 2, 4)
    d.check("add_pos_embed", "empty batch", lambda x, pe, device: posext.add_pos_embed(x, pe, 3), x, pe,
            wrt=(0, 1))
    for dtype in (torch.bfloat16, torch.float16):
        x, pe = d.randn(2, 1 + 5 * 5, 70, dtype=dtype), d.randn(1, 1 + 3 * 3, 70, dtype=dtype)
        d.check("add_pos_embed", f"{dtype}",
                lambda x, pe, device: posext.add_pos_embed(x, pe, 5, antialias=True), x, pe, wrt=(0, 1),
                dtype=dtype)
    if d.device.type == "cuda":  # a window too wide for the CUDA kernel's shared memory: refused up front
        wide = d.randn(1, 1 * 20000, 2)
        d.expect_error("resample", "20000 -> 1 antialias", lambda: posext.resample(
            wide, (1, 1), old_size=(1, 20000), num_prefix_tokens=0, antialias=True), RuntimeError,
            ["shared memory"])


def rope(d: Driver):
    cases = [  # batch, heads, prefix, grid (h, w), head_dim, layout, per-head freqs
        (0, 2, 1, (2, 3), 8, "bhnd", False), (1, 1, 0, (1, 1), 2, "bhnd", False),
        (3, 3, 5, (4, 5), 6, "bnhd", True), (2, 4, 1, (6, 7), 16, "bnhd", False),
        (262_150, 1, 1, (1, 1), 4, "bhnd", False)]
    for b, h, p, grid, hd, layout, per_head in cases:
        n = p + grid[0] * grid[1]
        for pairs in ("interleaved", "half"):
            for dtype in ((torch.float32, torch.bfloat16, torch.float16, torch.float64) if b == 2
                          else (torch.float32,)):
                shape = (b, h, n, hd) if layout == "bhnd" else (b, n, h, hd)
                qkv = d.randn(*shape[:-1], 3 * hd, dtype=dtype)  # q, k: channel slices of a fused projection
                q, k = qkv[..., :hd], qkv[..., hd:2 * hd]
                freqs = d.randn(2, h if per_head else 1, hd // 2)
                label = f"B={b} H={h} P={p} {grid} D={hd} {layout} {pairs} per_head={per_head} {dtype}"
                kw = dict(num_prefix_tokens=p, layout=layout, pair_layout=pairs)
                d.check("rope_2d", label, lambda q, k, f, device, g=grid, kw=kw:
                        posext.apply_rope_2d(q, k, g, f.to(device), **kw), q, k, freqs, wrt=(0, 1, 2),
                        dtype=dtype)

                def inplace(q, k, f, device, g=grid, kw=kw):
                    q, k = q.clone(), k.clone()
                    with torch.no_grad():
                        return posext.apply_rope_2d(q, k, g, f.to(device), inplace=True, **kw)

                d.check("rope_2d", label + " inplace", inplace, q, k, freqs, dtype=dtype)


def factorized(d: Driver):
    for combine in ("sum", "concat", "2d"):
        for b, p, c, kind in [(2, 1, 3, "grid_size"), (0, 0, 8, "grid_size"), (1, 2, 129, "grid_sizes"),
                              (3, 0, 300, "coords"), (1, 0, 1, "grid_size")]:
            if combine == "concat" and c < 2:
                continue
            for dtype in ((torch.float32, torch.bfloat16, torch.float16, torch.float64) if c == 3
                          else (torch.float32,)):
                if combine == "2d":
                    ty, tx = d.randn(9, 7, c, dtype=dtype), None
                else:
                    cy = c if combine == "sum" else c // 2
                    ty, tx = (d.randn(9, cy, dtype=dtype),
                              d.randn(7, c if combine == "sum" else c - cy, dtype=dtype))
                if kind == "grid_size":
                    value, tokens = (5, 4), p + 20
                elif kind == "grid_sizes":
                    value, tokens = [(5, 4), (1, 1), (9, 7)], 3 * p + 20 + 1 + 63
                else:
                    value, tokens = torch.rand(11, 2, generator=d.gen, dtype=torch.float64), p + 11
                x = (d.randn(tokens, c, dtype=dtype) if kind == "grid_sizes"
                     else d.randn(b, tokens, c, dtype=dtype))
                kw = (dict(num_prefix_tokens=p) if combine == "2d"
                      else dict(num_prefix_tokens=p, combine=combine))

                def fn(x, ty, tx, device, kind=kind, value=value, kw=kw):
                    v = value.to(device) if isinstance(value, torch.Tensor) else value
                    return posext.factorized_pos_embed(x, ty, tx, **{kind: v}, **kw)

                args, wrt = (x, ty, tx), (0, 1) if tx is None else (0, 1, 2)
                d.check("factorized", f"{combine} {kind} B={b} P={p} C={c} {dtype}", fn, *args, wrt=wrt,
                        dtype=dtype)


def varlen(d: Driver):
    # (table (h, w), prefix, C, [(t, h, w) per image], merge): 1x1 tables and images, t > 1, C = 1 and 300,
    # images up- and downsampled each way (every CPU evaluation order), no images at all
    cases = [((1, 1), 0, 3, [(1, 1, 1), (2, 3, 5)], 1),
             ((8, 24), 1, 300, [(1, 32, 6), (2, 4, 48), (1, 8, 48)], 2),
             ((5, 7), 2, 1, [(1, 9, 4), (3, 2, 2), (1, 1, 8)], 1), ((4, 4), 0, 8, [], 1)]
    for mode, aa, ac in COMBOS:
        for old, p, c, sizes, m in cases:
            table = d.randn(p + old[0] * old[1], c)
            longest = max([t * h * w for t, h, w in sizes], default=0)
            kw = dict(old_size=old, num_prefix_tokens=p, mode=mode, antialias=aa, align_corners=ac,
                      merge_size=m)
            for length in (None, longest + 3):
                def fn(table, device, sizes=sizes, kw=kw, length=length):  # padded: sizes stay on the device
                    grid = torch.tensor(sizes, dtype=torch.int64, device=device).reshape(-1, 3)
                    return posext.resample_varlen(table, grid if length is not None else sizes,
                                                  max_length=length, **kw)
                d.check("resample_varlen", f"{mode} aa={aa} ac={ac} {old} P={p} C={c} {sizes} m={m} "
                        f"L={length}", fn, table, wrt=(0,))
        x, table = d.randn(2, 40, 129, stride_t=2), d.randn(1 + 6 * 6, 129)
        d.check("add_pos_embed_varlen", f"{mode} aa={aa} ac={ac} padded, strided x",
                lambda x, table, device, mo=mode, a=aa, c=ac: posext.add_pos_embed_varlen(
                    x, table, [(2, 4, 4), (1, 6, 2)], num_prefix_tokens=1, mode=mo, antialias=a,
                    align_corners=c, merge_size=2), x, table, wrt=(0, 1))
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        table = d.randn(16 * 16, 70, dtype=dtype)
        d.check("resample_varlen", f"{dtype}", lambda table, device: posext.resample_varlen(
            table, [(1, 12, 48), (1, 48, 12)], mode="bilinear", antialias=True, max_length=576), table,
            wrt=(0,), dtype=dtype)


OPS = {"sincos": sincos, "resample": resample, "rope": rope, "factorized": factorized, "varlen": varlen}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--poison", action="store_true",
                        help="NaN-fill fresh tensors (torch deterministic mode)")
    parser.add_argument("--ops", default=",".join(OPS), help=f"comma-separated, from {list(OPS)}")
    parser.add_argument("--json", help="write {calls, failures} here")
    args = parser.parse_args(argv)
    if args.poison:
        torch.use_deterministic_algorithms(True)
    driver = Driver(args.device)
    for name in args.ops.split(","):
        OPS[name](driver)
    for op, n in sorted(driver.calls.items()):
        bad = sum(f.startswith(f"{op} [") for f in driver.failures)
        print(f"kernel_driver {args.device}: {op}: {n} checks, {bad} failed")
    for failure in driver.failures:
        print("FAILED", failure)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "poison": args.poison, "calls": dict(driver.calls),
                       "failures": driver.failures}, f, indent=1)
    return 1 if driver.failures else 0


if __name__ == "__main__":
    sys.exit(main())
