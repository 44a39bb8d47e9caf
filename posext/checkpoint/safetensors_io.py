"""safetensors files read by ranges and written as a stream: memory follows the tensors that change.

Reading parses the header and nothing else; a tensor's values are read on demand with one seek + read, so
the same code reads local files and fsspec objects (ranged GETs). Writing follows save_file's layout
(``safetensors_format``). Tensors the resize did not touch are never decoded: their bytes are copied from
the source. A write may find its temp file begun (``head_start``: the untouched tensors copied while torch
was loading); where that copy foresaw this very layout, only the rest is written.
"""
from typing import Callable, Dict, Optional

import torch

from .safetensors_format import (  # noqa: F401 (FormatError and Entry are part of this module's API)
    DTYPES,
    Entry,
    FormatError,
    copy_ranges,
    fileno,
    header_bytes,
    ordered,
    read_header,
)
from .writeback import Writeback


def _torch_dtype(name: str) -> Optional[torch.dtype]:
    dtype = getattr(torch, DTYPES.get(name, ("",))[0], None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _dtype_name(dtype: torch.dtype) -> str:
    for name, (torch_name, _) in DTYPES.items():
        if getattr(torch, torch_name, None) == dtype:
            return name
    raise FormatError(f"dtype {dtype} has no safetensors name")


class Source:
    """A safetensors file opened for ranged reads: ``open()`` gives a binary file object (local or fsspec).

    ``tensors`` maps each key whose dtype torch knows to a ``meta`` tensor of its shape; ``read(key)`` reads
    that tensor's values. ``entry_of`` finds the stored Entry behind one of those meta tensors."""

    def __init__(self, open_file: Callable, size: int):
        self.open, self.size = open_file, size
        with open_file() as f:
            self.entries, self.metadata, self.header = read_header(f, size)
        self.tensors = {}
        for key, e in self.entries.items():
            dtype = _torch_dtype(e.dtype)
            if dtype is not None:  # dtypes this torch lacks cannot be position tables
                self.tensors[key] = torch.empty(e.shape, dtype=dtype, device="meta")
        self._by_id = {id(t): self.entries[k] for k, t in self.tensors.items()}
        self.passthrough = [k for k in self.entries if k not in self.tensors]

    def read(self, key: str) -> torch.Tensor:
        e = self.entries[key]
        with self.open() as f:
            f.seek(e.start)
            data = bytearray(e.end - e.start)
            view, got = memoryview(data), 0
            while got < len(data):  # fsspec and pipes may return short reads
                n = f.readinto(view[got:]) if hasattr(f, "readinto") else None
                if n is None:
                    chunk = f.read(len(data) - got)
                    n = len(chunk)
                    view[got:got + n] = chunk
                if not n:
                    raise FormatError(f"{key}: the file ended inside the tensor")
                got += n
        if not data:
            return torch.empty(e.shape, dtype=_torch_dtype(e.dtype))
        return torch.frombuffer(data, dtype=_torch_dtype(e.dtype)).reshape(e.shape)

    def entry_of(self, tensor) -> Optional[Entry]:
        return self._by_id.get(id(tensor)) if isinstance(tensor, torch.Tensor) and tensor.is_meta else None


def _layout(tensors: Dict[str, torch.Tensor], source: Optional[Source]):
    """[(key, dtype name, shape, nbytes, what)] in save_file's order; ``what`` is an Entry to copy or a
    tensor to write."""
    items = []
    for key, value in tensors.items():
        entry = source.entry_of(value) if source is not None else None
        if entry is not None:
            items.append((key, entry.dtype, entry.shape, entry.end - entry.start, entry))
        elif isinstance(value, torch.Tensor) and not value.is_meta:
            items.append((key, _dtype_name(value.dtype), tuple(value.shape),
                          value.numel() * value.element_size(), value))
        else:
            raise FormatError(f"{key}: no values to write (a shape-only tensor not from the source file)")
    if source is not None:  # tensors torch cannot hold are never in ``tensors``: they travel as bytes
        items += [(k, source.entries[k].dtype, source.entries[k].shape,
                   source.entries[k].end - source.entries[k].start, source.entries[k])
                  for k in source.passthrough if k not in tensors]
    return ordered(items)


def write(out, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]],
          source: Optional[Source] = None, staged=None) -> None:
    """Write ``tensors`` as a safetensors file to the binary file object ``out``: values from tensors, and
    for the ``meta`` tensors of ``source`` their stored bytes, copied. Adjacent copies are merged.

    ``staged`` (``head_start.HeadStart``): ``out`` is its temp file; the tensors it has copied to the very
    offsets this layout gives them are kept (it is asked only when the header it foresaw is this one), the
    rest is written over, and the file ends where this layout ends."""
    items = _layout(tensors, source)
    header = header_bytes(items, metadata)
    kept = staged.keep(header) if staged is not None else frozenset()
    out.write(header)
    pos, pending = len(header), []  # pending: [start, end] source ranges to copy from ``out``'s position
    src, writeback = None, Writeback(fileno(out))

    def flush():
        nonlocal src
        if pending:
            src = src or source.open()
            copy_ranges(src, out, pending, writeback)
            pending.clear()

    try:
        for _, _, _, nbytes, what in items:
            if isinstance(what, Entry) and (pos, what.start, what.end) in kept:
                flush()
                out.seek(pos + nbytes)
            elif isinstance(what, Entry):
                if pending and pending[-1][1] == what.start:
                    pending[-1][1] = what.end
                else:
                    pending.append([what.start, what.end])
            else:
                flush()
                _write_tensor(out, what)
            pos += nbytes
        flush()
        if staged is not None:  # a copy made for another layout may reach past this one's end
            out.truncate(pos)
    finally:
        if src is not None:
            src.close()


def _write_tensor(out, tensor: torch.Tensor) -> None:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if flat.numel():
        out.write(memoryview(flat.view(torch.uint8).numpy()))
