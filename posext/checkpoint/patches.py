"""Patch embeddings: the kernels that turn an image into a table's grid, read from the same checkpoint.

A ViT patch embedding is a convolution with stride = kernel, so its weight ``[C, 3, p_h, p_w]`` (video:
``[C, 3, t, p_h, p_w]``; big_vision ``.npz``: ``[p_h, p_w, 3, C]``) gives the patch size. The one exception
is the overlapping 7 x 7 embedding of Hiera / MViT / PVT-style models: stride 4, padding 3.

Hybrid models put a CNN in front of the projection (``<embed>.backbone.*``); its stride follows from which
CNN it is, told by its keys:

* ResNetV2 (``stem.conv`` or a bare ``conv``) and ResNet (``conv1`` + ``layer<i>``): a stride-4 stem
  (a stride-2 convolution and a stride-2 pool), then every stage after the first halves the size;
* HF BiT (``bit.embedder.convolution``, ``bit.encoder.stages.<i>``): the same;
* ViTamin (``stem.conv1`` + ``stages.<i>`` + ``pool.proj``): a stride-2 stem, stride-2 stages and a
  stride-2 pooling projection.
"""
import re
from typing import Optional, Sequence, Tuple

from .families import Key, StateView
from .geometry import GridRule, Step, patch_step

# Where each layout keeps the patch-embedding kernel, relative to the table's prefix.
PATCH_KERNEL_NAMES = ("patch_embed.proj.weight", "patch_embeddings.projection.weight",
                      "patch_embedding.weight", "patch_embed.projection.weight", "conv1.weight",
                      "embedding/kernel")
# The names trusted when the kernel is not beside the table (``conv1`` is too common a name for that).
LONE_KERNEL_NAMES = tuple(n for n in PATCH_KERNEL_NAMES if n != "conv1.weight")
OVERLAPPING_STEM = Step((7, 7), (4, 4), (3, 3))


def kernel_size(d: StateView, key: str):
    """(kernel (kh, kw), frames t or None) of a patch-embedding weight, None when it is not a conv kernel."""
    t = d.get(key)
    if t is None:
        return None
    if key.endswith("/kernel") and t.dim() == 4:  # flax HWIO
        return (int(t.shape[0]), int(t.shape[1])), None
    if t.dim() == 4:
        return (int(t.shape[2]), int(t.shape[3])), None
    if t.dim() == 5:
        return (int(t.shape[3]), int(t.shape[4])), int(t.shape[2])
    return None


def _stage_count(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys for m in [re.search(pattern, k)] if m}
    return len(found) if not found or 0 in found else max(found)  # stages.0.. or layer1..


def backbone_stride(d: StateView, prefix: str) -> Optional[Tuple[int, str]]:
    """(total stride, which CNN) of a hybrid backbone under ``prefix``; None when there is none or it is
    not one of the CNNs above."""
    keys = [k[len(prefix):] for k in d.keys if k.startswith(prefix)]
    if not keys:
        return None
    has = set(keys).__contains__
    if has("stem.conv1.weight") and has("pool.proj.weight"):
        return 2 * 2 ** _stage_count(keys, r"^stages\.(\d+)\.") * 2, "ViTamin conv stem"
    if has("stem.conv.weight") or has("conv.weight"):
        n = _stage_count(keys, r"^stages\.(\d+)\.")
        return 4 * 2 ** max(n - 1, 0), f"ResNetV2 backbone ({n} stages)" if n else "ResNetV2 stem"
    if has("bit.embedder.convolution.weight"):
        n = _stage_count(keys, r"^bit\.encoder\.stages\.(\d+)\.")
        return 4 * 2 ** max(n - 1, 0), f"BiT backbone ({n} stages)"
    if any(k.startswith("conv1.") for k in keys):
        n = _stage_count(keys, r"^layer(\d+)\.")
        return 4 * 2 ** max(n - 1, 0), f"ResNet backbone ({n} stages)"
    return None


def kernel_rule(d: StateView, key: str) -> Optional[GridRule]:
    """The rule of a table fed by the patch-embedding kernel ``key`` (stride = kernel; 7 x 7: stride 4)."""
    size = kernel_size(d, key)
    if size is None:
        return None
    kernel, frames = size
    shape = "x".join(map(str, d.get(key).shape))
    what = f"patch embedding {key} [{shape}]"
    if kernel == (7, 7):
        return GridRule((OVERLAPPING_STEM,), f"{what}: overlapping 7x7 patches, stride 4, padding 3")
    what += f": patch {kernel[0]}x{kernel[1]}" + (f", tubelet {frames}" if frames is not None else "")
    return GridRule((patch_step(kernel),), what, patch_key=key)


def sibling_rule(d: StateView, k: Key, drop: int,
                 names: Sequence[str] = PATCH_KERNEL_NAMES) -> Optional[GridRule]:
    """The rule from a patch-embedding kernel next to the table (the prefix of its last ``drop`` parts),
    with a hybrid backbone's stride in front when one sits beside the projection (or instead of it)."""
    for name in names:
        key = k.sibling(drop, name)
        parts = name.split(".")
        # the backbone sits beside the projection: patch_embed.backbone.* next to patch_embed.proj.weight
        owner = key[:len(key) - len(name)] + parts[0] + "." if len(parts) >= 3 else None
        backbone = backbone_stride(d, owner + "backbone.") if owner else None
        rule = kernel_rule(d, key)
        if rule is None and backbone is None:
            continue
        if backbone is None:
            return rule
        stride, cnn = backbone
        kernel = rule.steps[0].kernel if rule is not None else (1, 1)
        total = (stride * kernel[0], stride * kernel[1])
        then = f" then {rule.source}" if rule is not None else ""
        return GridRule((patch_step(total),), f"hybrid: {cnn} {owner}backbone (stride {stride}){then}: "
                                              f"stride {total[0]}x{total[1]}")
    return None


def only_rule(d: StateView, names: Sequence[str] = LONE_KERNEL_NAMES) -> Optional[GridRule]:
    """The rule of the one patch-embedding kernel in the whole state dict (None when none or several)."""
    found = [key for key in d.keys if any(key == n or key.endswith("." + n) or key.endswith("/" + n)
                                          for n in names) and kernel_size(d, key) is not None]
    return kernel_rule(d, found[0]) if len(found) == 1 else None
