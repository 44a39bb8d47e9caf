"""`posext resize` / `posext inspect` on a Hugging Face ``save_pretrained`` folder: one input, one result.

The folder's weights are planned from the shapes of all their shards at once (a table and the keys that
decide its layout may sit in different shards) and written shard by shard with ``hf_folder.resize_folder``,
together with ``config.json`` and the processor configs for the new size. ``--grid`` becomes the image size
grid x patch of ``config.json``. The stored grid (``--old-size``: non-square grids, a video table's frame
grid) is the one ``config.json`` builds, image_size // patch_size, unless given.
"""
import contextlib
import json
import os
import tempfile
import time

from . import storage, stored_folders
from .hf_config import read_geometry
from .hf_folder import CONFIG_FILE, full_view, resize_folder, state_dict_plan, weight_sets
from .inputs import entry_id
from .io import CheckpointError
from .reporting import failure_reason
from .tempfiles import staging_writes


def _geometry(path):
    with open(os.path.join(path, CONFIG_FILE)) as f:
        config = json.load(f)
    try:
        return read_geometry(config)
    except ValueError:
        return {}


def folder_arguments(path, target, options):
    """(image_size, patch_size, num_frames for the configs; plan_resize keyword arguments)."""
    geometry = _geometry(path)
    image, patch = target.get("image_size"), target.get("patch_size")
    grid = target.get("new_grid")
    if grid is not None:
        if "patch_size" not in geometry:
            raise CheckpointError(f"--grid needs the patch size, and {CONFIG_FILE} names none; pass "
                                  f"--image-size HxW instead")
        image = tuple(g * p for g, p in zip(grid, geometry["patch_size"]))
    old_size = options["old_size"]
    if old_size is None and "patch_size" in geometry:
        # the grid the config builds: it tells non-square grids and video frame grids apart
        old_size = tuple(i // p for i, p in zip(geometry["image_size"], geometry["patch_size"]))
    plan_kwargs = dict(new_grid=grid, image_size=None if grid is not None else image, patch_size=patch,
                       num_frames=target.get("num_frames"), mode=options["mode"],
                       antialias=options["antialias"], old_size=old_size,
                       num_prefix_tokens=options["num_prefix_tokens"], sincos=options["sincos"])
    return (image, patch, target.get("num_frames")), plan_kwargs


def _shapes(folder):
    shapes = {}
    for _, shards in weight_sets(folder):
        view, _ = full_view(folder, shards)
        shapes.update({k: list(v.shape) for k, v in view.items()})
    return shapes


def _rows(findings, old_shapes, new_shapes):
    return [{"wrapper": "", "old_shape": old_shapes.get(f.key), "new_shape": new_shapes.get(f.key), **f.row()}
            for f in findings]


def _scratch():
    """A local temp folder for a store folder's copy and result (removed on exit). Not named like the temp
    folders of atomic writes: the result is written inside it with one."""
    return tempfile.TemporaryDirectory(prefix="posext-folder-")


def _check_stored_target(path, output):
    """Refuse a store target that is an object, or that lies inside the input folder (or contains it)."""
    if storage.is_url(path) and storage.is_url(output):
        a, b = (entry_id(p) for p in (path, output))
        a, b = "/".join(a), "/".join(b)
        if a == b or b.startswith(a + "/") or a.startswith(b + "/"):
            raise CheckpointError(f"{output}: the output must lie outside the input folder {path} (and not "
                                  f"contain it)")
    if storage.is_url(output) and storage.exists(output) and not storage.is_folder(output):
        raise CheckpointError(f"{output} exists and is not a folder")


def resize_hf_folder(path, output, target, options):
    """Resize one HF folder into ``output`` (an existing target folder is replaced, as a file target is);
    like ``resize_file``, never raises for a bad input. A folder in a store is fetched into a local temp
    folder first, and a store target is written locally and uploaded (``stored_folders``)."""
    start = time.perf_counter()
    report = {"input": path, "output": output, "status": "ok", "reason": "", "findings": [], "removed": [],
              "bytes": 0, "seconds": 0.0}
    with contextlib.ExitStack() as stack:
        try:
            if options["in_place"]:
                raise CheckpointError("a Hugging Face folder is resized into a new folder: pass --out DIR "
                                      "(or no --out for a folder next to it), not --in-place")
            src, dst = path, output
            if storage.is_url(path) or storage.is_url(output):
                _check_stored_target(path, output)
                scratch = stack.enter_context(_scratch())
                if storage.is_url(path):
                    src = os.path.join(scratch, "in")
                    stored_folders.fetch_folder(path, src)
                if storage.is_url(output):
                    dst = os.path.join(scratch, "out")
            with staging_writes() if dst != output else contextlib.nullcontext():
                _resize_local_folder(src, dst, target, options, report)
            if report["status"] == "ok" and dst != output:
                report["bytes"] = stored_folders.upload_folder(dst, output)
        except Exception as exc:  # one bad folder never stops the batch
            report.update(status="failed", reason=failure_reason(exc))
    report["seconds"] = round(time.perf_counter() - start, 4)
    return report


def _resize_local_folder(path, output, target, options, report):
    (image, patch, frames), plan_kwargs = folder_arguments(path, target, options)
    plan_fn = state_dict_plan(**plan_kwargs)
    if options["dry_run"]:
        for _, shards in weight_sets(path):
            view, _ = full_view(path, shards)
            shapes = {k: list(v.shape) for k, v in view.items()}
            changed = [c.finding for c in plan_fn(view).changes.values()]
            report["findings"].extend(_rows(changed, shapes, {}))
        report["status"] = "dry-run"
    else:
        old_shapes = _shapes(path)
        result = resize_folder(path, output, plan_fn, image_size=image, patch_size=patch, num_frames=frames,
                               overwrite=True)
        report["findings"] = _rows(result.applied, old_shapes, _shapes(output))
        report["removed"] = list(result.dropped)
        report["bytes"] = sum(os.path.getsize(os.path.join(root, name))
                              for root, _, names in os.walk(output) for name in names)
    if not report["findings"] and report["status"] == "ok":
        report["reason"] = "no grid-dependent tensor changed; configs written for the new size"


def inspect_hf_folder(path, options):
    """Findings over all shards of each weight set of the folder (local, or fetched from its store), as
    `posext inspect` rows."""
    if storage.is_url(path):
        with _scratch() as scratch:
            stored_folders.fetch_folder(path, os.path.join(scratch, "in"))
            return inspect_hf_folder(os.path.join(scratch, "in"), options)
    from .detect import find_position_embeddings

    rows = []
    for index, shards in weight_sets(path):
        view, _ = full_view(path, shards)
        for f in find_position_embeddings(view, old_size=options.get("old_size"),
                                          num_prefix_tokens=options.get("num_prefix_tokens")):
            rows.append({"wrapper": index or shards[0], "shape": list(view[f.key].shape), **f.row()})
    return rows
