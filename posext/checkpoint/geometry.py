"""Target geometry: how a table's new grid follows from the requested image size, patch size or grid.

A table's grid is what an image of H x W pixels becomes after the layers in front of it. Those layers are
written as a :class:`GridRule`: a chain of convolution-like steps (kernel, stride, padding per axis), read
from the patch-embedding kernel stored in the same checkpoint (a ViT patch embedding is one step with
stride = kernel), a hybrid backbone's total stride, or a family's own rule (PiT's overlapping patches,
LeViT's stride-2 stages, MaxViT windows of image / 32). The new grid of every table is then its own rule
applied to the new image size: models with several branches or stages need no grid per table.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from .. import _sizes
from .grid import ArgumentMention, GridArgumentError

Pair = Tuple[int, int]


@dataclass(frozen=True)
class Step:
    """One convolution-like layer: out = (in * scale + 2 * padding - kernel) // stride + 1, per axis (H, W).
    A ``scale`` other than 1 resizes the image first (CrossViT's smaller branch images), rounding down."""

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    scale: float = 1.0

    def apply(self, size: Pair) -> Pair:
        return tuple((int(s * self.scale) + 2 * p - k) // st + 1
                     for s, k, st, p in zip(size, self.kernel, self.stride, self.padding))


def patch_step(p: Pair) -> Step:
    return Step(tuple(p), tuple(p))


@dataclass(frozen=True)
class GridRule:
    """Image size -> grid of one table. ``steps[0]`` is the patch embedding when ``patch_key`` names it:
    a new patch size replaces that step (and resizes that kernel); ``source`` says where the rule came
    from, for reports."""

    steps: Tuple[Step, ...]
    source: str
    patch_key: Optional[str] = None
    square_from_min: bool = False  # the grid is square, from the image's smaller side (EfficientViT-MSRA)
    cap: Optional[int] = None      # the grid is at most cap x cap (a window no larger than its feature map)

    def grid(self, image: Pair, patch: Optional[Pair] = None) -> Pair:
        steps = self.steps
        if patch is not None and self.patch_key is not None:
            steps = (patch_step(patch),) + steps[1:]
        size = (min(image),) * 2 if self.square_from_min else tuple(image)
        for step in steps:
            size = step.apply(size)
        return tuple(min(s, self.cap) for s in size) if self.cap is not None else size


@dataclass(frozen=True)
class Target:
    """What the user asked for: a patch grid, or an image size (and optionally a new patch size), and
    optionally a new frame count for video tables."""

    grid: Optional[Pair] = None
    image_size: Optional[Pair] = None  # with a grid: the image that grid stands for (set by the plan)
    patch_size: Optional[Pair] = None
    num_frames: Optional[int] = None

    @staticmethod
    def of(new_grid=None, image_size=None, patch_size=None, num_frames=None) -> "Target":
        grid = _sizes.grid_pair("new_grid", new_grid) if new_grid is not None else None
        image = _sizes.grid_pair("image_size", image_size) if image_size is not None else None
        patch = _sizes.grid_pair("patch_size", patch_size) if patch_size is not None else None
        frames = _sizes.positive_int("num_frames", num_frames) if num_frames is not None else None
        if grid is not None and image is not None:
            raise ValueError(f"pass new_grid or image_size, not both (got new_grid={grid}, "
                             f"image_size={image})")
        if grid is not None and patch is not None:
            raise ValueError(f"patch_size={patch} needs image_size (the image size the new patch grid "
                             f"covers), not new_grid={grid}")
        if grid is None and image is None and patch is None and frames is None:
            raise ValueError("nothing to resize to: pass new_grid, image_size, patch_size or num_frames")
        return Target(grid, image, patch, frames)


class GeometryError(GridArgumentError):
    """A tensor's new size cannot be decided from the target; the message names the key and the argument
    that settles it (``error.render("cli")`` spells the command-line flags)."""


def arg(name: str, value=None) -> ArgumentMention:
    return ArgumentMention(name, value)


def image_of(rule: Optional[GridRule], old_grid: Pair) -> Optional[Pair]:
    """The image size a table was built for, when its rule is a plain patch grid (used to keep the image
    size when only the patch size changes)."""
    if rule is None or len(rule.steps) != 1 or rule.steps[0].scale != 1.0 or rule.cap or rule.square_from_min:
        return None
    step = rule.steps[0]
    if step.kernel != step.stride or step.padding != (0, 0):
        return None
    return tuple(g * s for g, s in zip(old_grid, step.stride))


def new_grid(key: str, rule: Optional[GridRule], old_grid: Pair, target: Target) -> Pair:
    """The grid a table of ``old_grid`` (rule ``rule``) has under ``target``. A grid target carries the image
    size it stands for when the model's patch grid is plain: tables with a rule follow that image."""
    if target.grid is not None and (rule is None or target.image_size is None):
        return target.grid
    image, patch = target.image_size, target.patch_size
    if image is None and patch is None:
        return tuple(old_grid)  # only frames change
    if rule is None:
        if patch is not None and image is not None:
            return _checks_grid(key, tuple(i // p for i, p in zip(image, patch)), image, patch)
        raise GeometryError(f"{key}: no patch-embedding kernel tells the patch size of this "
                            f"{old_grid[0]}x{old_grid[1]} grid; pass ", arg("patch_size"), " with ",
                            arg("image_size"), ", or ", arg("new_grid"), key=key)
    if patch is not None and rule.patch_key is None:
        raise GeometryError(f"{key}: its grid does not come from a patch-embedding kernel ({rule.source}), "
                            f"so ",
                            arg("patch_size", patch), " cannot change it; keep the patch size and pass ",
                            arg("image_size"), " alone", key=key)
    if image is None:
        image = image_of(rule, old_grid)
        if image is None:
            raise GeometryError(f"{key}: ", arg("patch_size", patch), f" alone needs a plain patch grid "
                                f"({rule.source}); pass ", arg("image_size"), " as well", key=key)
    return _checks_grid(key, rule.grid(image, patch), image, patch)


def _checks_grid(key: str, grid: Pair, image: Pair, patch: Optional[Pair]) -> Pair:
    if min(grid) < 1:
        raise GeometryError(f"{key}: ", arg("image_size", image),
                            *((" with ", arg("patch_size", patch)) if patch else ()),
                            f" leaves an empty grid {grid[0]}x{grid[1]}", key=key)
    return grid
