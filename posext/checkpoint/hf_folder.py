"""Hugging Face ``save_pretrained`` folders: resized shard by shard, configs rewritten, written atomically.

A folder is ``config.json`` plus weights (``model.safetensors`` / ``pytorch_model.bin``, or an index
``model.safetensors.index.json`` / ``pytorch_model.bin.index.json`` with its shards). The output of
:func:`resize_folder` loads with ``from_pretrained`` as is: the tables are resized, ``config.json`` builds
tables of that size and the image processor feeds images of that size.

How ``config.json`` and the processor configs are rewritten is in ``hf_config.py``.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from .hf_config import NESTED_PROCESSORS, PROCESSOR_FILES, updated_config, updated_preprocessor
from .hf_layout import CONFIG_FILE, is_hf_folder, is_stale_weights, weight_sets  # noqa: F401 (the folder API)
from .io import load_checkpoint, replace_state_dicts, save_checkpoint
from .shapes import ShapeOnlyStateDict, load_shapes
from .signals import critical
from .tempfiles import TEMP_PREFIX, discard, fsync_file, fsync_folder, lock_folder, make_temp_folder


@dataclass
class FolderResult:
    """What :func:`resize_folder` wrote: ``applied`` findings (over all shards), ``findings`` of each plan,
    ``resized`` weight files, ``updated`` JSON files, ``copied`` files, ``left_out`` stale weight files, and
    ``dropped`` keys (removed from the index)."""
    dst: str
    applied: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    resized: List[str] = field(default_factory=list)
    updated: List[str] = field(default_factory=list)
    copied: List[str] = field(default_factory=list)
    left_out: List[str] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)


def full_view(src: str, shards: List[str]) -> Tuple[ShapeOnlyStateDict, Dict[str, str]]:
    """Shape-only view of every key across ``shards`` (values on demand) and key -> shard."""
    tensors, owner, readers = {}, {}, {}
    for shard in shards:
        state = load_shapes(os.path.join(src, shard)).state_dicts[""]
        read = state.read_tensor if isinstance(state, ShapeOnlyStateDict) else state.__getitem__
        readers[shard] = read
        for key, value in state.items():
            tensors[key] = value
            owner[key] = shard
    return ShapeOnlyStateDict(tensors, lambda key: readers[owner[key]](key)), owner


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")


def _resize_weight_set(src, tmp, index, shards, plan_fn, result: FolderResult) -> None:
    view, _ = full_view(src, shards)
    plan = plan_fn(view)
    result.findings.extend(getattr(plan, "findings", []))
    new_map, size_delta, count_delta = {}, 0, 0
    applied = {}
    for shard in shards:
        ckpt = load_checkpoint(os.path.join(src, shard))
        part = ckpt.state_dicts[""]
        if isinstance(part, ShapeOnlyStateDict) and not getattr(plan, "reads_shape_only", False):
            part = {key: part.read_tensor(key) for key in part}  # the protocol's full tensors
        new_part, shard_applied = plan.apply(part)
        for f in shard_applied:
            applied.setdefault(f.key, f)
        for key, value in part.items():
            if key not in new_part:
                result.dropped.append(key)
                size_delta -= _nbytes(value)
                count_delta -= value.numel()
        for key, value in new_part.items():
            old = part.get(key)
            size_delta += _nbytes(value) - (_nbytes(old) if old is not None else 0)
            count_delta += value.numel() - (old.numel() if old is not None else 0)
            new_map[key] = shard
        save_checkpoint(replace_state_dicts(ckpt, {"": new_part}), os.path.join(tmp, shard))
        result.resized.append(shard)
    result.applied.extend(applied.values())
    if index is None:
        return
    with open(os.path.join(src, index)) as f:
        idx = json.load(f)
    old_map = idx.get("weight_map", {})
    # the stored order is kept; keys a plan added go to the shard that produced them, at the end
    idx["weight_map"] = {**{k: v for k, v in old_map.items() if k in new_map},
                         **{k: v for k, v in new_map.items() if k not in old_map}}
    meta = idx.get("metadata")
    if isinstance(meta, dict):
        if isinstance(meta.get("total_size"), int):
            meta["total_size"] += size_delta
        if isinstance(meta.get("total_parameters"), int):
            meta["total_parameters"] += count_delta
    _write_json(os.path.join(tmp, index), idx)
    result.updated.append(index)


def state_dict_plan(new_grid=None, **kwargs) -> Callable:
    """``plan_fn`` for :func:`resize_folder`: :func:`posext.checkpoint.resize.plan_resize` of the view of all
    shards, with the same arguments as ``resize_state_dict``."""
    from .resize import plan_resize

    return lambda view: plan_resize(view, new_grid, **kwargs)


def _check_paths(src: str, dst: str, overwrite: bool) -> None:
    rsrc, rdst = os.path.realpath(src), os.path.realpath(dst)
    if not is_hf_folder(src):
        raise ValueError(f"{src}: not a Hugging Face folder (config.json plus model.safetensors, "
                         f"pytorch_model.bin or a complete sharded index)")
    if rdst == rsrc or rdst.startswith(rsrc + os.sep) or rsrc.startswith(rdst + os.sep):
        raise ValueError(f"{dst}: the output must lie outside the input folder {src} (and not contain it)")
    if any(part.startswith(TEMP_PREFIX) for part in rdst.split(os.sep)):
        raise ValueError(f"{dst}: inside a temp folder of atomic writes ({TEMP_PREFIX}*)")
    if os.path.lexists(dst) and not (overwrite and os.path.isdir(dst) and not os.path.islink(dst)):
        raise FileExistsError(f"{dst} exists and is not a folder" if overwrite else
                              f"{dst} exists (pass overwrite=True to replace it)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise FileNotFoundError(f"{dst}: its parent folder does not exist")


def resize_folder(src: str, dst: str, plan_fn: Callable, *, image_size=None, patch_size=None,
                  num_frames=None, overwrite: bool = False) -> FolderResult:
    """Write the resized copy of the HF folder ``src`` as the new folder ``dst``.

    The plan protocol: ``plan = plan_fn(view)`` is called once per weight set, with ``view`` a shape-only
    mapping of ALL keys across the set's shards (``meta`` tensors; ``view.read_tensor(key)`` reads one
    tensor's values). ``plan.findings`` lists what it found; ``plan.apply(part) -> (new_part, applied)`` is
    then called for each shard's full tensors (a subset of the view's keys), returning the mapping to write
    (keys left out are dropped) and the findings it acted on (objects with ``.key``). A plan whose
    ``reads_shape_only`` is true (posext's own) gets safetensors shards as shape-only mappings instead, reads
    the tensors it changes and returns the others as they came: those are copied into the new shard as bytes.

    Each shard is written in its own format (safetensors header metadata kept); an index keeps its
    ``weight_map`` less the dropped keys (keys a plan adds go to their shard) and its ``metadata.total_size``
    (and ``total_parameters``) follows the new tensors. ``config.json`` gets :func:`updated_config` and the
    processor files (``PROCESSOR_FILES``) :func:`updated_preprocessor` when ``image_size`` is given; both are
    computed first, so a refusal writes nothing. Every other file, subfolders included, is copied byte for
    byte (symlinks followed), except weight files of sets not rewritten (TF / Flax / ONNX / GGUF, stray
    ``model*.safetensors``), which would keep old-size tables and are left out (``left_out``).

    Atomic: everything is written into a ``.posext-tmp-<pid>-*`` folder beside ``dst`` and renamed into
    place once complete, so ``dst`` is absent or whole; ``src`` is only read. ``dst`` must not exist unless
    ``overwrite`` (then the old folder is moved aside, the new one renamed in, the old one removed).
    """
    _check_paths(src, dst, overwrite)
    with open(os.path.join(src, CONFIG_FILE)) as f:
        config = json.load(f)
    new_config = None
    if any(v is not None for v in (image_size, patch_size, num_frames)):
        new_config = updated_config(config, image_size=image_size, patch_size=patch_size,
                                    num_frames=num_frames)
    processors = {}
    for name in PROCESSOR_FILES:
        path = os.path.join(src, name)
        if image_size is not None and os.path.isfile(path):
            with open(path) as f:
                pp = json.load(f)
            if any(k in pp for k in ("size", "crop_size") + NESTED_PROCESSORS):
                processors[name] = updated_preprocessor(pp, image_size, num_frames=num_frames)

    parent = os.path.dirname(os.path.abspath(dst))
    result = FolderResult(dst=dst)
    tmp = lock_fd = None
    try:
        with critical():
            tmp = make_temp_folder(parent)
            lock_fd = lock_folder(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would become the output folder's mode
        sets = weight_sets(src)
        written = {CONFIG_FILE, *processors}
        for index, shards in sets:
            _resize_weight_set(src, tmp, index, shards, plan_fn, result)
            written.update(shards)
            if index is not None:
                written.add(index)
        if new_config is not None:
            _write_json(os.path.join(tmp, CONFIG_FILE), new_config)
            result.updated.append(CONFIG_FILE)
        else:
            shutil.copyfile(os.path.join(src, CONFIG_FILE), os.path.join(tmp, CONFIG_FILE))
            result.copied.append(CONFIG_FILE)
        for name, pp in processors.items():
            _write_json(os.path.join(tmp, name), pp)
            result.updated.append(name)
        _copy_rest(src, tmp, written, result)
        for root, _, files in os.walk(tmp):
            for name in files:
                fsync_file(os.path.join(root, name))
        _rename_into_place(tmp, dst, parent, overwrite)
        tmp = None
    finally:
        with critical():
            discard(tmp, lock_fd)
    return result


def _copy_rest(src: str, tmp: str, written, result: FolderResult) -> None:
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(TEMP_PREFIX))
        rel_root = os.path.relpath(root, src)
        for name in sorted(files):
            rel = name if rel_root == "." else os.path.join(rel_root, name)
            if rel in written:
                continue
            if is_stale_weights(rel):
                result.left_out.append(rel)
                continue
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(root, name), target)
            shutil.copystat(os.path.join(root, name), target)
            result.copied.append(rel)


def _rename_into_place(tmp: str, dst: str, parent: str, overwrite: bool) -> None:
    aside = None
    with critical():
        if overwrite and os.path.isdir(dst):
            aside = make_temp_folder(parent)
            os.rename(dst, os.path.join(aside, "old"))
        os.rename(tmp, dst)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    fsync_folder(parent)  # make the rename durable where the file system allows it
