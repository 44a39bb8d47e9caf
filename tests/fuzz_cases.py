"""Random calls of every public function and every raw op, for the crash-isolated fuzz test (test_fuzz.py).

A case is rebuilt from (seed, index) alone, so a failure names what to rerun
(``python -m tests.fuzz_harness show --seed S --case I`` prints it as code). Each public case is a plausible
call, then, half of the time, one argument made wrong (`mutated`: the error must name that argument). Raw-op
cases take the raw arguments of such a call and push one of them to an extreme or a wrong type.

Tensors are described by a short spec string and made from their own seed, so the extension and the fallback
each get fresh, identical inputs (in-place ops must not see each other's writes).
"""
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

import posext

FLOATS = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
NOT_FLOATS = [torch.int64, torch.int32, torch.bool, torch.complex64, torch.uint8]
LAYOUTS = ["contig", "contig", "contig", "cstride", "tstride", "transposed", "expand", "offset", "overlap"]
BAD_INTS = [0, -1, -7, 2**31, 2**40, 2**62, 2**63 - 1, 1.5, float("nan"), True, "3", None, [2], (2, 2, 2)]
BAD_FLOATS = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e308, 1e-308, "1.0", None, [1.0]]
BAD_FLAGS = [float("nan"), 1, 0, 2, "yes", None, 1.0]


@dataclass
class TensorSpec:
    """A reproducible tensor: made by build() from its own seed, as the spec string says."""
    shape: tuple
    dtype: Any = torch.float32
    layout: str = "contig"
    device: str = "cpu"
    values: str = "randn"
    seed: int = 0
    grad: bool = False

    def build(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        shape = tuple(self.shape)
        if self.layout == "expand" and len(shape) >= 1 and shape[0] > 1:
            t = self._values((1,) + shape[1:], gen).expand(*shape)
        elif self.layout == "cstride" and shape:
            t = self._values(shape[:-1] + (2 * shape[-1],), gen)[..., ::2]
        elif self.layout == "tstride" and len(shape) >= 2:
            t = self._values(shape[:-2] + (2 * shape[-2], shape[-1]), gen)[..., ::2, :]
        elif self.layout == "transposed" and len(shape) >= 2:
            t = self._values(shape[:-2] + (shape[-1], shape[-2]), gen).transpose(-1, -2)
        elif self.layout == "offset":
            t = self._values((1 + math.prod(shape),), gen)[1:].view(shape)
        elif self.layout == "overlap" and len(shape) >= 2 and shape[-1] > 1 and shape[-2] > 1:
            base = self._values((math.prod(shape),), gen)  # rows overlap: row stride half a row
            strides = list(torch.empty(shape).stride())
            strides[-2] = max(1, shape[-1] // 2)
            t = base.as_strided(shape, strides)
        else:
            t = self._values(shape, gen)
        if self.device != "cpu":
            t = t.to(self.device)
        return t.requires_grad_() if self.grad and t.is_floating_point() else t

    def _values(self, shape, gen):
        if self.dtype in (torch.bool, torch.uint8, torch.int32, torch.int64):
            return torch.randint(0, 5, shape, generator=gen).to(self.dtype)
        t = torch.randn(shape, generator=gen, dtype=torch.float64)
        if self.values == "special" and t.numel():
            flat = t.view(-1)
            flat[torch.randint(0, flat.numel(), (max(1, flat.numel() // 7),), generator=gen)] = float("nan")
            flat[0] = float("inf")
        return t.to(self.dtype)

    def __repr__(self):
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("layout", "device", "values", "grad")
                        if getattr(self, k) != TensorSpec.__dataclass_fields__[k].default)
        return f"T({self.shape}, {str(self.dtype).replace('torch.', '')}{extra}, seed={self.seed})"


@dataclass
class GeneratorSpec:
    """A torch.Generator made fresh for each call, so both backends draw the same numbers."""
    seed: int

    def build(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)


@dataclass
class Case:
    """fn(*args, **kwargs) with TensorSpecs built fresh per call; `raw`: a torch.ops.posext op (no
    fallback)."""
    name: str
    fn: Callable
    args: List[Any]
    kwargs: Dict[str, Any] = field(default_factory=dict)
    mutated: Optional[str] = None  # the argument made wrong; an error must name it
    raw: bool = False
    no_grad: bool = False  # in-place calls run under torch.no_grad()

    def build(self):
        def make(v):
            if isinstance(v, (TensorSpec, GeneratorSpec)):
                return v.build()
            if isinstance(v, (list, tuple)) and any(isinstance(x, TensorSpec) for x in v):
                return type(v)(make(x) for x in v)
            return v
        return [make(a) for a in self.args], {k: make(v) for k, v in self.kwargs.items()}

    def __repr__(self):
        args = ", ".join([repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()])
        return f"{self.name}({args})" + (f"  # mutated: {self.mutated}" if self.mutated else "")


class Gen:
    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.seeds = 0

    def t(self, shape, dtype=None, layout=None, **kw) -> TensorSpec:
        self.seeds += 1
        dtype = dtype if dtype is not None else self.r.choice(FLOATS)
        values = "special" if self.r.random() < 0.05 else "randn"
        return TensorSpec(tuple(shape), dtype, layout or self.r.choice(LAYOUTS), values=values,
                          seed=self.r.randrange(2**31) + self.seeds, **kw)

    def size(self, lo=1, hi=9):
        return self.r.randint(lo, hi)

    def pick(self, seq):
        return self.r.choice(seq)

    def maybe(self, p=0.5):
        return self.r.random() < p


def _mutate(g: Gen, case: Case, choices: Dict[str, List[Any]]) -> Case:
    """Make one argument of `case` wrong: a keyword (or a positional argument by its index)."""
    name = g.pick(sorted(choices))
    value = g.pick(choices[name])
    target, key = name.split("@") if "@" in name else (name, None)
    if key is not None:
        case.args[int(key)] = value
    else:
        case.kwargs[target] = value
    case.mutated = target
    return case


def resample_case(g: Gen, fused: bool = False) -> Case:
    layout = g.pick(["tokens", "tokens", "unbatched", "nhwc"])
    b, p, h, w, c = g.size(0, 3), g.pick([0, 1, 1, 2, 5]), g.size(), g.size(), g.size(1, 12)
    mode = g.pick(["bicubic", "bilinear", "nearest"])
    aa = mode != "nearest" and g.maybe()
    kwargs = dict(mode=mode, antialias=aa)
    if mode != "nearest" and g.maybe(0.3):
        kwargs["align_corners"] = g.pick([True, False, None])
    grad = g.maybe(0.3)
    dtype = torch.float64 if grad else None
    if layout == "nhwc":
        p = 0
        pe = g.t((b if not fused else g.pick([1, b]), h, w, c), dtype, grad=grad)
    else:
        n = p + h * w
        pe = g.t((b, n, c) if layout == "tokens" else (n, c), dtype, grad=grad)
        if h != w or g.maybe(0.3):
            kwargs["old_size"] = (h, w) if h != w or g.maybe() else h
        if p != 1 or g.maybe(0.3):
            kwargs["num_prefix_tokens"] = p
    if g.maybe(0.25):
        sf = (round(g.r.uniform(0.3, 3.0), 3), round(g.r.uniform(0.3, 3.0), 3))
        kwargs["scale_factor"] = sf if g.maybe() else sf[0]
        pair = sf if isinstance(kwargs["scale_factor"], tuple) else (sf[0], sf[0])
        new = (math.floor(h * pair[0]), math.floor(w * pair[1]))
        args = [pe]
        if min(new) < 1:
            kwargs["scale_factor"], new = None, (1, 1)
            args = [pe, (1, 1)]
    else:
        new = (g.size(1, 12), g.size(1, 12))
        args = [pe, new if new[0] != new[1] or g.maybe() else new[0]]
    if fused:
        xb = pe.shape[0] if layout != "unbatched" else g.size(1, 3)
        if layout == "nhwc":
            xb = b
        x_shape = (xb, new[0], new[1], c) if layout == "nhwc" else (xb, p + new[0] * new[1], c)
        x = g.t(x_shape, pe.dtype if g.maybe(0.9) else None, grad=grad)
        args = [x] + args
        if layout == "nhwc" and g.maybe(0.5) and len(args) > 2:
            args = args[:2]  # new size taken from x
    case = Case("posext.add_pos_embed" if fused else "posext.resample",
                posext.add_pos_embed if fused else posext.resample, args, kwargs)
    if g.maybe():
        table = 1 if fused else 0
        choices = {
            f"pos_embed@{table}": [g.t((3,)), g.t((1, 2, 3, 4, 5)), g.t((1, 7, 4)),
                                   g.t(pe.shape, g.pick(NOT_FLOATS)), [1.0, 2.0],
                                   g.t(pe.shape, layout="contig", device="meta")],
            "old_size": [0, -2, (3, 0), (2, 3, 4), 2.5, "4", (h + 1, w), (2**32, 2**32), True],
            "num_prefix_tokens": [-1, 99, 1.5, True, "1", 2**63 - 1] + ([1] if layout == "nhwc" else []),
            "mode": ["area", 2, None, "BICUBIC"],
            "antialias": BAD_FLAGS + ([True] if mode == "nearest" else []),
            "align_corners": [float("nan"), 2, "no"] + ([True] if mode == "nearest" else []),
            "scale_factor": [0.0, -1.0, float("nan"), float("inf"), 1e308, 1e-308, (1.0,), "2",
                             (1.0, 2.0, 3.0)],
        }
        if len(args) > 1 + table:
            choices[f"new_size@{1 + table}"] = [0, -3, (3,), (2, 2, 2), 2.5, "4", (2**32, 2**32), 2**40, None]
        if fused:
            choices["x@0"] = [g.t((1, 3, 4)), g.t((2, 5)), g.t(x_shape, g.pick(NOT_FLOATS)), 3.0,
                              g.t(x_shape, layout="contig", device="meta")]
        case = _mutate(g, case, choices)
        new_arg = case.args[1 + table] if len(case.args) > 1 + table else None
        if (case.mutated == "new_size" and new_arg is not None and "scale_factor" not in kwargs
                and g.maybe(0.2)):
            case.kwargs["scale_factor"] = 2.0  # both given
    return case


def sincos_2d_case(g: Gen) -> Case:
    conv = g.pick(sorted(posext.CONVENTIONS))
    dim = 4 * g.size(2 if conv == "big_vision" else 1, 16)
    grid = (g.size(1, 12), g.size(1, 12))
    kwargs = dict(convention=conv, num_prefix_tokens=g.pick([0, 0, 1, 3]), dtype=g.pick(FLOATS))
    if g.maybe(0.3):
        kwargs["temperature"] = g.pick([10000.0, 100.0, 1.5])
    if g.maybe(0.2):
        kwargs["out"] = g.t((kwargs["num_prefix_tokens"] + grid[0] * grid[1], dim), kwargs.pop("dtype"),
                            layout=g.pick(["contig", "offset"]))
    case = Case("posext.sincos_2d", posext.sincos_2d,
                [dim, grid if grid[0] != grid[1] or g.maybe() else grid[0]], kwargs)
    if g.maybe():
        case = _mutate(g, case, {
            "embed_dim@0": [0, -4, 6, 8.0, True, "16", 2**62, None],
            "grid_size@1": [0, (3, -1), (2**32, 2**32), "4", 2.5, (1, 2, 3), None, (70000, 70000)],
            "convention": ["vit", 3, None],
            "temperature": BAD_FLOATS,
            "num_prefix_tokens": [-1, 1.5, 2**62, "1", None],
            "dtype": NOT_FLOATS + ["float32", None],
            "out": [g.t((3, dim)), g.t((1 + grid[0] * grid[1], dim), g.pick(NOT_FLOATS)), "out",
                    g.t((dim, kwargs.get("num_prefix_tokens", 0) + grid[0] * grid[1]), layout="transposed")],
        })
    return case


def sincos_1d_case(g: Gen) -> Case:
    dim = 2 * g.size(1, 40)
    m = g.pick([0, 1, 5, 37])
    pdtype = g.pick([torch.float32, torch.float64, torch.int64, torch.int32, torch.float16])
    positions = g.t((m,), pdtype, layout=g.pick(["contig", "cstride", "offset"])) if g.maybe(0.85) else \
        [g.r.uniform(-50, 50) for _ in range(m)]
    kwargs = {}
    if g.maybe(0.4):
        kwargs["dtype"] = g.pick(FLOATS)
    if g.maybe(0.3):
        kwargs["temperature"] = g.pick([10000.0, 7.0])
    case = Case("posext.sincos_1d", posext.sincos_1d, [dim, positions], kwargs)
    if g.maybe():
        case = _mutate(g, case, {
            "embed_dim@0": [0, -2, 5, 4.0, True, 2**62, None],
            "positions@1": [g.t((2, 3)), g.t((4,), torch.bool), g.t((4,), torch.complex64), "abc",
                            [[1.0, 2.0]], 3.0],
            "temperature": BAD_FLOATS,
            "dtype": NOT_FLOATS + ["float32"],
            "out": [g.t((m + 1, dim)), g.t((m, dim), torch.int64), 7],
        })
    return case


def rope_case(g: Gen) -> Case:
    b, heads, p, h, w = g.size(0, 3), g.size(1, 4), g.pick([0, 1, 1, 3]), g.size(1, 6), g.size(1, 6)
    d = 2 * g.size(1, 8)
    layout = g.pick(["bhnd", "bnhd"])
    n = p + h * w
    shape = (b, heads, n, d) if layout == "bhnd" else (b, n, heads, d)
    inplace = g.maybe(0.2)
    grad = not inplace and g.maybe(0.3)
    dtype = torch.float64 if grad else g.pick(FLOATS)
    q, k = g.t(shape, dtype, grad=grad), g.t(shape, dtype, grad=grad)
    if inplace:
        q.layout = k.layout = g.pick(["contig", "cstride", "tstride"])
    positions = (h, w) if g.maybe() else g.t((h * w, 2), g.pick([torch.float32, torch.float64, torch.int64]),
                                             layout="contig")
    freqs = g.t((2, g.pick([1, heads]), d // 2),
                torch.float64 if grad else g.pick([torch.float32, torch.float64]), layout="contig", grad=grad)
    kwargs = dict(num_prefix_tokens=p, layout=layout, pair_layout=g.pick(["interleaved", "half"]))
    if inplace:
        kwargs["inplace"] = True
    case = Case("posext.apply_rope_2d", posext.apply_rope_2d, [q, k, positions, freqs], kwargs,
                no_grad=inplace)
    if g.maybe():
        case = _mutate(g, case, {
            "q@0": [g.t(shape[:3]), g.t(shape[:3] + (d + 1,)), g.t(shape, g.pick(NOT_FLOATS)), 1.0],
            "k@1": [g.t(shape[:3] + (d + 2,)),
                    g.t(shape, torch.float64 if dtype != torch.float64 else torch.float32)],
            "positions@2": [g.t((h * w + 1, 2)), g.t((h * w, 3)), g.t((h * w, 2), torch.bool), (h + 1, w), 0,
                            "4"],
            "freqs@3": [g.t((2, heads + 1, d // 2)), g.t((3, 1, d // 2)), g.t((2, 1, d)),
                        g.t((2, 1, d // 2), torch.int64), None],
            "num_prefix_tokens": [-1, n + 1, 1.5, "1", None, 2**62],
            "layout": ["nhwd", 0, None],
            "pair_layout": ["rotate", 1, None],
            "inplace": [float("nan"), 1, "yes"],
        })
    return case


def factorized_case(g: Gen) -> Case:
    combine = g.pick(["sum", "concat", "2d"])
    ly, lx, c = g.size(1, 9), g.size(1, 9), g.size(2, 12)
    grad = g.maybe(0.3)
    dtype = torch.float64 if grad else g.pick(FLOATS)
    if combine == "2d":
        ty, tx = g.t((ly, lx, c), dtype, grad=grad), None
    else:
        cy = c if combine == "sum" else g.size(1, c - 1)
        ty = g.t((ly, cy), dtype, grad=grad)
        tx = g.t((lx, c if combine == "sum" else c - cy), dtype, grad=grad)
    p = g.pick([0, 0, 1, 2])
    kind = g.pick(["grid_size", "grid_sizes", "coords"])
    if kind == "grid_size":
        value = (g.size(1, ly), g.size(1, lx))
        x = g.t((g.size(0, 3), p + value[0] * value[1], c), dtype, grad=grad)
    elif kind == "grid_sizes":
        value = [(g.size(1, ly), g.size(1, lx)) for _ in range(g.size(1, 3))]
        x = g.t((sum(p + a * bb for a, bb in value), c), dtype, grad=grad)
    else:
        m = g.size(0, 12)
        value = g.t((m, 2), g.pick([torch.float32, torch.float64]), layout="contig")  # mapped into [0, 1]
        x = g.t((g.size(0, 3), p + m, c), dtype, grad=grad)
    kwargs = {kind: value, "num_prefix_tokens": p}
    if combine != "2d":
        kwargs["combine"] = combine
    case = Case("posext.factorized_pos_embed", _factorized_unit_coords, [x, ty, tx], kwargs)
    if g.maybe():
        case = _mutate(g, case, {
            "x@0": [g.t((5,)), g.t(x.shape, g.pick(NOT_FLOATS)), g.t(x.shape, layout="contig", device="meta"),
                    2.0],
            "table_y@1": [g.t((ly,)),
                          g.t(ty.shape, torch.float64 if dtype != torch.float64 else torch.float32), None],
            "table_x@2": [g.t((lx, c + 3)), g.t((lx,))],
            kind: [0, (0, 2), (ly + 1, lx), [], [(1, 1), 0], "2", g.t((3, 3)), g.t((2, 2), torch.int64)],
            "num_prefix_tokens": [-1, 1.5, "1", 2**62],
            "combine": ["mean", 1, None],
        })
    return case


def _factorized_unit_coords(x, table_y, table_x=None, **kwargs):
    """factorized_pos_embed with any `coords` tensor mapped into [0, 1] (random normals are not
    coordinates)."""
    coords = kwargs.get("coords")
    if isinstance(coords, torch.Tensor) and coords.is_floating_point() and coords.dim() == 2:
        kwargs["coords"] = torch.sigmoid(coords)
    return posext.factorized_pos_embed(x, table_y, table_x, **kwargs)


def freqs_case(g: Gen) -> Case:
    which = g.pick(["axial", "mixed", "positions"])
    if which == "axial":
        case = Case("posext.rope_axial_freqs", posext.rope_axial_freqs, [4 * g.size(1, 8)],
                    dict(theta=g.pick([100.0, 10000.0])))
        choices = {"head_dim@0": [0, 6, -4, 4.5, "8"], "theta": BAD_FLOATS, "scale": BAD_FLOATS,
                   "dtype": NOT_FLOATS}
    elif which == "mixed":
        case = Case("posext.rope_mixed_freqs", posext.rope_mixed_freqs, [4 * g.size(1, 8), g.size(1, 4)],
                    dict(generator=GeneratorSpec(g.r.randrange(1000))))
        choices = {"head_dim@0": [0, 6, 4.5], "num_heads@1": [0, -1, 2.5, "2"], "theta": BAD_FLOATS}
    else:
        case = Case("posext.rope_positions_2d", posext.rope_positions_2d, [(g.size(), g.size())],
                    dict(mode=g.pick(["index", "normalized"])))
        choices = {"grid_size@0": [0, (2, -1), "3", (2**32, 2**32)], "mode": ["grid", None],
                   "ref_grid_size": [(0, 2), "x"], "dtype": NOT_FLOATS}
    return _mutate(g, case, choices) if g.maybe() else case


PUBLIC = [(resample_case, 3), (lambda g: resample_case(g, fused=True), 2), (sincos_2d_case, 2),
          (sincos_1d_case, 1), (rope_case, 3), (factorized_case, 3), (freqs_case, 1)]


def raw_case(g: Gen) -> Case:
    """A raw op called with the arguments a public call would pass it, one of them pushed out of range."""
    op, args = g.pick(RAW_BUILDERS)(g)
    i = g.r.randrange(len(args))
    if isinstance(args[i], TensorSpec):
        spec = args[i]
        args[i] = g.pick([g.t(spec.shape[:-1] or (1,)), g.t(spec.shape, g.pick(NOT_FLOATS)),
                          g.t(tuple(s + 1 for s in spec.shape)),
                          g.t(spec.shape, layout="contig", device="meta"),
                          g.t((0,) + tuple(spec.shape[1:])), g.t(spec.shape, layout="expand")])
    elif isinstance(args[i], bool):
        args[i] = not args[i]
    elif isinstance(args[i], int):
        args[i] = g.pick([-1, 0, 2**31, 2**62, -(2**62), args[i] + 1, 2**63 - 1])
    elif isinstance(args[i], float):
        args[i] = g.pick([float("nan"), float("inf"), 1e308, 1e-308, -1.0, 0.0])
    return Case(f"torch.ops.posext.{op}", getattr(torch.ops.posext, op), args, raw=True, mutated=f"arg {i}")


def _raw_resample(g):
    b, p, h, w, nh, nw, c = g.size(0, 2), g.pick([0, 1]), g.size(), g.size(), g.size(), g.size(), g.size(1, 9)
    mode, aa = g.pick([(0, False), (1, False), (1, True), (2, False), (2, True)])
    op = g.pick(["resample", "resample_backward", "resample_add"])
    scale = (0.0, 0.0)
    if op == "resample_backward":
        head = [g.t((b, p + nh * nw, c))]
    elif op == "resample_add":
        head = [g.t((b, p + nh * nw, c), torch.float32), g.t((1, p + h * w, c), torch.float32)]
    else:
        head = [g.t((b, p + h * w, c))]
    return op, head + [h, w, nh, nw, p, mode, aa, False, *scale]


def _raw_rope(g):
    b, heads, p, h, w, d = (g.size(0, 2), g.size(1, 3), g.pick([0, 1]), g.size(1, 4), g.size(1, 4),
                            2 * g.size(1, 4))
    shape = (b, heads, p + h * w, d)
    op = g.pick(["rope_2d", "rope_2d_", "rope_2d_freqs_backward"])
    qk = [g.t(shape, torch.float32, layout="contig"), g.t(shape, torch.float32, layout="contig")]
    tail = [g.t((h * w, 2), torch.float32, layout="contig"),
            g.t((2, 1, d // 2), torch.float32, layout="contig"), p, 0, g.pick([0, 1])]
    if op == "rope_2d_freqs_backward":
        qk = [g.t(shape, torch.float32, layout="contig") for _ in range(2)] + qk
    return op, qk + tail


def _raw_factorized(g):
    s, c, ly, lx = g.size(1, 12), g.size(2, 8), g.size(1, 6), g.size(1, 6)
    op = g.pick(["factorized_add", "factorized_table_grads"])
    pos = TensorSpec((s, 2), torch.float32, "contig", values="randn", seed=g.r.randrange(2**31))
    head = [g.t((g.size(0, 2), s, c), torch.float32), pos, g.t((ly, c), torch.float32),
            g.t((lx, c), torch.float32), 0]
    return op, head + ([True, True] if op == "factorized_table_grads" else [])


def _raw_sincos(g):
    dim, h, w = 4 * g.size(1, 8), g.size(1, 9), g.size(1, 9)
    if g.maybe():
        return "sincos_2d", [dim, h, w, g.pick([0, 1]), 10000.0, [0, 1, 2, 3], 0, torch.float32,
                             torch.device("cpu")]
    return "sincos_1d", [g.t((g.size(0, 9),), torch.float32, layout="contig"), dim, 10000.0, torch.float32]


RAW_BUILDERS = [_raw_resample, _raw_resample, _raw_rope, _raw_factorized, _raw_sincos]


def case(seed: int, index: int) -> Case:
    g = Gen(seed * 1_000_003 + index)
    if g.maybe(0.25):
        return raw_case(g)
    builders = [b for b, weight in PUBLIC for _ in range(weight)]
    return g.pick(builders)(g)
