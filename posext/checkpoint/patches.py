"""Patch embeddings: the kernels that turn an image into a table's grid, read from the same checkpoint.

A ViT patch embedding is a convolution with stride = kernel, so its weight ``[C, 3, p_h, p_w]`` (video:
``[C, 3, t, p_h, p_w]``; big_vision ``.npz``: ``[p_h, p_w, 3, C]``) gives the patch size. Hybrid models put
a CNN in front of a 1 x 1 (or p x p) projection: timm's ResNet / ResNetV2 backbones have a stride-4 stem
(a stride-2 convolution and a stride-2 pool) and halve the size in every stage after the first, so their
stride is 4 * 2 ** (stages - 1).
"""
import re
from typing import Optional, Sequence

from .families import Key, StateView
from .geometry import GridRule, Step, patch_step

# Where each layout keeps the patch-embedding kernel, relative to the table's prefix.
PATCH_KERNEL_NAMES = ("patch_embed.proj.weight", "patch_embeddings.projection.weight", "patch_embedding.weight",
                      "patch_embed.weight", "conv1.weight", "patch_embed.conv.weight", "embedding/kernel",
                      "stem.proj.weight", "patch_embeddings.weight")
_STAGE = re.compile(r"\.(?:stages\.|layer)(\d+)\.")


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


def backbone_stride(d: StateView, prefix: str) -> Optional[int]:
    """The total stride of a timm ResNet / ResNetV2 hybrid backbone under ``prefix`` (None: none there)."""
    keys = [k for k in d.keys if k.startswith(prefix)]
    if not keys:
        return None
    stages = {int(m.group(1)) for k in keys for m in [_STAGE.search("." + k[len(prefix):])] if m}
    if not stages:
        return 4
    count = len(stages) if 0 in stages else max(stages)  # stages.0.. or layer1..
    return 4 * 2 ** (count - 1)


def kernel_rule(d: StateView, key: str, extra_steps: Sequence[Step] = ()) -> Optional[GridRule]:
    """The rule of a table fed by the patch-embedding kernel ``key`` (stride = kernel)."""
    size = kernel_size(d, key)
    if size is None:
        return None
    kernel, frames = size
    shape = "x".join(map(str, d.get(key).shape))
    what = f"patch embedding {key} [{shape}]: patch {kernel[0]}x{kernel[1]}"
    if frames is not None:
        what += f", tubelet {frames}"
    return GridRule((patch_step(kernel),) + tuple(extra_steps), what, patch_key=key)


def sibling_rule(d: StateView, k: Key, drop: int, names: Sequence[str] = PATCH_KERNEL_NAMES) -> Optional[GridRule]:
    """The rule from a patch-embedding kernel next to the table (the prefix of its last ``drop`` parts),
    with a hybrid backbone's stride in front when one sits beside the projection."""
    for name in names:
        key = k.sibling(drop, name)
        rule = kernel_rule(d, key)
        if rule is None:
            continue
        parts = name.split(".")
        # the backbone sits beside the projection: patch_embed.backbone.* next to patch_embed.proj.weight
        owner = key[:len(key) - len(name)] + parts[0] + "." if len(parts) >= 3 else None
        stride = backbone_stride(d, owner + "backbone.") if owner else None
        if stride is None:
            return rule
        kernel = rule.steps[0].kernel
        total = (stride * kernel[0], stride * kernel[1])
        return GridRule((patch_step(total),), f"hybrid backbone {owner}backbone (stride {stride}) then "
                                              f"{rule.source}: stride {total[0]}x{total[1]}")
    return None


def only_rule(d: StateView, names: Sequence[str] = PATCH_KERNEL_NAMES) -> Optional[GridRule]:
    """The rule of the one patch-embedding kernel in the whole state dict (None when none or several)."""
    found = [key for key in d.keys if any(key == n or key.endswith("." + n) or key.endswith("/" + n)
                                          for n in names) and kernel_size(d, key) is not None]
    return kernel_rule(d, found[0]) if len(found) == 1 else None
