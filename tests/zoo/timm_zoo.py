"""Harness of the timm zoo: build a case's model at two image sizes, resize the native checkpoint with
posext and check it against the model built at the new size (and against timm's own adapter).

Contract of :func:`run_case` (used by ``tests/test_zoo_timm.py`` and ``tests/zoo/report.py``):
returns a :class:`ZooResult` with the findings posext applied, the keys whose tensors changed, whether
the resized dict loads with ``strict=True`` into the model built at the new size and a forward there is
finite, the keys that differ from timm's ``checkpoint_filter_fn`` output (max abs diff > ``ATOL``) when
that adapter exists and itself loads strictly, and the keys whose shape did not change but whose tensor
is not bit-identical to the input. Errors are captured as text, never raised.
"""
import sys
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import timm
import torch

try:
    from .timm_cases import TIMM_CASES
except ImportError:  # imported as a top-level module by the scan script
    from timm_cases import TIMM_CASES

ZOO_CASES = TIMM_CASES

ATOL = 1e-5


def build(name: str, kwargs: Dict, size: Optional[Tuple[int, int]], seed: int = 0):
    """The model with random (seeded) weights; ``size`` None = its default input size, else ``img_size``."""
    torch.manual_seed(seed)
    kw = dict(kwargs)
    if size is not None:
        kw["img_size"] = tuple(size)
    try:
        model = timm.create_model(name, pretrained=False, **kw).eval()
        model.zoo_fixed_size = False
    except TypeError as e:
        # Some families take no image size: their state dict does not depend on it.
        if "img_size" not in str(e):
            raise
        kw.pop("img_size")
        model = timm.create_model(name, pretrained=False, **kw).eval()
        model.zoo_fixed_size = True
    if size is None or model.zoo_fixed_size and size == model.pretrained_cfg.get("input_size", ())[-2:]:
        size = tuple(model.pretrained_cfg.get("input_size", (3, 224, 224))[-2:])
    model.zoo_image_size = tuple(size)
    return model


def forward_ok(model, size) -> object:
    """True if a forward at ``size`` runs and every output is finite, else the reason as text."""
    torch.manual_seed(1)
    x = torch.randn(1, 3, *size)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return f"{type(e).__name__}: {str(e)[:200]}"
    outs = out if isinstance(out, (tuple, list)) else (out.values() if isinstance(out, dict) else [out])
    if not all(torch.isfinite(o).all() for o in outs if torch.is_tensor(o)):
        return "non-finite output"
    return True


def patch_convs(model, limit: int = 3) -> List[Dict]:
    """The first strided convolutions (the stem / patch embedding): key, kernel, stride."""
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)) and max(mod.stride) > 1:
            found.append({"key": f"{name}.weight", "kernel": list(mod.kernel_size),
                          "stride": list(mod.stride), "shape": list(mod.weight.shape)})
            if len(found) >= limit:
                break
    return found


def one_line(err, limit: int = 400) -> str:
    """An exception message on one line, without torch's "Error(s) in loading ..." preamble."""
    text = " ".join(str(err).split())
    if text.startswith("Error(s) in loading state_dict"):
        text = text.split(":", 1)[-1].strip()
    return text[:limit]


def filter_fn_of(model):
    """timm's checkpoint adapter of the model's module (``checkpoint_filter_fn``), or None."""
    mod = sys.modules[type(model).__module__]
    fn = getattr(mod, "checkpoint_filter_fn", None)
    if fn is None:
        names = [n for n in dir(mod) if n.endswith("filter_fn") and callable(getattr(mod, n))]
        fn = getattr(mod, names[0]) if names else None
    return fn


def timm_adapted(old_sd, new_model):
    """timm's adapter output and None, or (None, reason) when there is none or it does not load strictly."""
    fn = filter_fn_of(new_model)
    if fn is None:
        return None, "no adapter"
    try:
        out = fn({k: v.clone() for k, v in old_sd.items()}, new_model)
        new_model.load_state_dict(out, strict=True)
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {one_line(e)}"
    return out, None


@dataclass
class ZooResult:
    name: str
    applied: List = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    error: Optional[str] = None
    load_forward: Optional[object] = None
    timm_status: str = "no adapter"
    timm_diff: Dict[str, float] = field(default_factory=dict)
    not_identical: List[str] = field(default_factory=list)

    @property
    def equal_to_timm(self) -> str:
        if self.timm_status != "ok":
            return "no adapter" if self.timm_status == "no adapter" else "adapter fails"
        return "yes" if not self.timm_diff else "no"

    equal_to_reference = equal_to_timm


def compare(new_sd, ref_sd) -> Dict[str, float]:
    """Keys whose tensors differ from ``ref_sd`` by more than ATOL (inf when shape or presence differs)."""
    diff = {}
    for k in set(new_sd) | set(ref_sd):
        a, b = new_sd.get(k), ref_sd.get(k)
        if a is None or b is None or a.shape != b.shape:
            diff[k] = float("inf")
            continue
        if a.is_floating_point() or b.is_floating_point():
            d = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        else:
            d = 0.0 if torch.equal(a, b) else float("inf")
        if d > ATOL:
            diff[k] = d
    return diff


def resize_with_posext(sd, size, patch_size=None):
    from posext.checkpoint import resize_state_dict

    kw = {"image_size": tuple(size)}
    if patch_size is not None:
        kw["patch_size"] = tuple(patch_size)
    return resize_state_dict(sd, **kw)


def run_case(case, new_model=None) -> ZooResult:
    """Resize the native checkpoint of ``case`` to ``case.new`` and check it (see the module docstring)."""
    res = ZooResult(case.name)
    try:
        old = build(case.name, case.kwargs, case.native)
        sd = old.state_dict()
        new = new_model if new_model is not None else build(case.name, case.kwargs, case.new)
        new_sd, applied = resize_with_posext(sd, case.new)
        res.applied = list(applied)
        res.resized = [k for k in new_sd if k not in sd or new_sd[k] is not sd[k]]
        res.not_identical = [k for k in sd if k in new_sd and new_sd[k].shape == sd[k].shape
                             and not torch.equal(new_sd[k], sd[k])]
        ref, status = timm_adapted(sd, new)
        res.timm_status = "ok" if ref is not None else status
        if ref is not None:
            res.timm_diff = compare(new_sd, ref)
        try:
            new.load_state_dict(new_sd, strict=True)
            res.load_forward = forward_ok(new, case.new)
        except Exception as e:  # noqa: BLE001
            res.load_forward = f"{type(e).__name__}: {one_line(e)}"
    except Exception as e:  # noqa: BLE001
        res.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    return res
