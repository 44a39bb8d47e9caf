"""safetensors files read by ranges and written as a stream: memory follows the tensors that change.

The format: an 8-byte little-endian header length N, N bytes of JSON (``__metadata__`` and, per tensor,
``dtype``, ``shape`` and ``data_offsets`` relative to the end of the header), then the tensor bytes.

Reading parses the header and nothing else; a tensor's values are read on demand with one seek + read, so
the same code reads local files and fsspec objects (ranged GETs). Writing lays the tensors out exactly as
``safetensors.torch.save_file`` does (descending dtype rank, then name; JSON without spaces, padded with
spaces to a multiple of 8 bytes), so a streamed result is byte for byte the file a load + resize + save
would give. Tensors the resize did not touch are never decoded: their bytes are copied from the source
(in-kernel ``copy_file_range`` between local files, fixed-size chunks otherwise); a local target's
write-out starts stretch by stretch during the copy (see ``writeback``), so the final fsync finds little
left to do.
"""
import json
import os
import struct
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from posext.checkpoint.writeback import Writeback

# The format bounds its header; a larger length field means a corrupt or foreign file.
MAX_HEADER = 100 * 1024 * 1024
# name -> (torch dtype name, bytes per element); dtypes this torch lacks are still copied as bytes
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
          "U8": ("uint8", 1), "BOOL": ("bool", 1), "U16": ("uint16", 2), "U32": ("uint32", 4),
          "U64": ("uint64", 8), "C64": ("complex64", 8), "F8_E4M3": ("float8_e4m3fn", 1),
          "F8_E5M2": ("float8_e5m2", 1), "F8_E8M0": ("float8_e8m0fnu", 1),
          "F8_E4M3FNUZ": ("float8_e4m3fnuz", 1), "F8_E5M2FNUZ": ("float8_e5m2fnuz", 1)}
# safetensors orders tensors by its Dtype enum, highest first: this is that enum's order.
DTYPE_RANK = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
              "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
COPY_CHUNK = 16 * 2 ** 20


class FormatError(ValueError):
    """Not a well-formed safetensors file; the message says what is wrong."""


@dataclass(frozen=True)
class Entry:
    """One stored tensor: its dtype name, shape and absolute byte range in the file."""
    dtype: str
    shape: Tuple[int, ...]
    start: int
    end: int


def _torch_dtype(name: str) -> Optional[torch.dtype]:
    dtype = getattr(torch, DTYPES.get(name, ("",))[0], None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _dtype_name(dtype: torch.dtype) -> str:
    for name, (torch_name, _) in DTYPES.items():
        if getattr(torch, torch_name, None) == dtype:
            return name
    raise FormatError(f"dtype {dtype} has no safetensors name")


def read_header(f, size: int) -> Tuple[Dict[str, Entry], Optional[Dict[str, str]], bytes]:
    """(key -> Entry in header order, ``__metadata__``, the raw header bytes) of the file object ``f`` of
    ``size`` bytes; FormatError for a malformed header or tensors out of bounds."""
    f.seek(0)
    raw = f.read(8)
    if len(raw) != 8:
        raise FormatError("shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", raw)
    if length > MAX_HEADER or 8 + length > size:
        raise FormatError(f"header length {length} is over the format's {MAX_HEADER} bytes or past the end "
                          f"of the {size}-byte file")
    text = f.read(length)
    try:
        header = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FormatError("the header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    entries, base = {}, 8 + length
    for key, item in header.items():
        try:
            dtype, (begin, end) = item["dtype"], item["data_offsets"]
            shape = tuple(int(s) for s in item["shape"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{key}: not a tensor entry (dtype, shape, data_offsets)") from None
        numel = 1
        for s in shape:
            numel *= s
        width = DTYPES.get(dtype, (None, None))[1]
        if not 0 <= begin <= end or base + end > size or (width is not None and end - begin != numel * width):
            raise FormatError(f"{key}: data_offsets {[begin, end]} do not hold a {dtype} tensor of shape "
                              f"{list(shape)} inside the file")
        entries[key] = Entry(dtype, shape, base + begin, base + end)
    return entries, metadata, raw + text


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
    rank = {name: i for i, name in enumerate(DTYPE_RANK)}
    items.sort(key=lambda item: (-rank.get(item[1], len(rank)), item[0]))
    return items


def header_bytes(items, metadata: Optional[Dict[str, str]]) -> bytes:
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for key, dtype, shape, nbytes, _ in items:
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write(out, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]],
          source: Optional[Source] = None) -> None:
    """Write ``tensors`` as a safetensors file to the binary file object ``out``: values from tensors, and
    for the ``meta`` tensors of ``source`` their stored bytes, copied. Adjacent copies are merged."""
    items = _layout(tensors, source)
    out.write(header_bytes(items, metadata))
    pending: List[List[int]] = []  # [start, end] source ranges still to copy, in order
    src, writeback = None, Writeback(_fileno(out))
    try:
        for _, _, _, _, what in items:
            if isinstance(what, Entry):
                if pending and pending[-1][1] == what.start:
                    pending[-1][1] = what.end
                else:
                    pending.append([what.start, what.end])
                continue
            if pending:
                src = src or source.open()
                _copy_ranges(src, out, pending, writeback)
                pending = []
            _write_tensor(out, what)
        if pending:
            src = src or source.open()
            _copy_ranges(src, out, pending, writeback)
    finally:
        if src is not None:
            src.close()


def _write_tensor(out, tensor: torch.Tensor) -> None:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if flat.numel():
        out.write(memoryview(flat.view(torch.uint8).numpy()))


def _fileno(f) -> Optional[int]:
    try:
        return f.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _copy_ranges(src, out, ranges, writeback: Writeback) -> None:
    src_fd, out_fd = _fileno(src), _fileno(out)
    kernel = src_fd is not None and out_fd is not None and hasattr(os, "copy_file_range")
    if kernel:
        out.flush()
    for start, end in ranges:
        if kernel:
            out_pos = os.lseek(out_fd, 0, os.SEEK_CUR)
            kernel = _kernel_copy(src_fd, out_fd, start, end, out_pos, writeback)
            if kernel:
                out.seek(os.lseek(out_fd, 0, os.SEEK_CUR))
                continue
        _chunk_copy(src, out, start, end, writeback)


def _kernel_copy(src_fd, out_fd, start, end, out_pos, writeback: Writeback) -> bool:
    """copy_file_range from ``src_fd`` [start, end) to ``out_fd`` at ``out_pos``, a stretch at a time;
    False (nothing written) where the file systems do not support it."""
    done = 0
    while start + done < end:
        try:
            n = os.copy_file_range(src_fd, out_fd, min(end - start - done, writeback.stretch), start + done,
                                   out_pos + done)
        except OSError:
            if done:
                raise
            return False
        if n == 0:
            raise FormatError("the source file ended inside a tensor")
        done += n
        writeback.advance(out_pos + done)
    os.lseek(out_fd, out_pos + done, os.SEEK_SET)
    return True


def _chunk_copy(src, out, start, end, writeback: Writeback) -> None:
    src.seek(start)
    left = end - start
    while left:
        chunk = src.read(min(COPY_CHUNK, left))
        if not chunk:
            raise FormatError("the source file ended inside a tensor")
        out.write(chunk)
        left -= len(chunk)
        if writeback.fd is not None:  # a remote source into a local file: the disk works meanwhile
            out.flush()
            writeback.advance(out.tell())
