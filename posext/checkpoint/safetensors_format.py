"""The safetensors format without torch: header parsing and writing, tensor order, byte-range copies.

The format: an 8-byte little-endian header length N, N bytes of JSON (``__metadata__`` and, per tensor,
``dtype``, ``shape`` and ``data_offsets`` relative to the end of the header), then the tensor bytes.
``safetensors.torch.save_file`` lays tensors out by descending dtype rank, then name, and writes the JSON
without spaces, padded with spaces to a multiple of 8 bytes: :func:`ordered` and :func:`header_bytes` do the
same, so a file streamed from here is byte for byte the one a load + save would give. Copies between local
files run in the kernel (``copy_file_range``) a stretch at a time, with early writeback (``writeback``);
other file objects are copied in chunks.
"""
import json
import os
import struct
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .header_shapes import DTYPES
from .writeback import Writeback

# The format bounds its header; a larger length field means a corrupt or foreign file.
MAX_HEADER = 100 * 1024 * 1024
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


def ordered(items):
    """``items`` ((key, dtype name, ...) tuples) in save_file's order: descending dtype rank, then name."""
    rank = {name: i for i, name in enumerate(DTYPE_RANK)}
    return sorted(items, key=lambda item: (-rank.get(item[1], len(rank)), item[0]))


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


def fileno(f) -> Optional[int]:
    try:
        return f.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def copy_ranges(src, out, ranges, writeback: Writeback) -> None:
    src_fd, out_fd = fileno(src), fileno(out)
    kernel = src_fd is not None and out_fd is not None and hasattr(os, "copy_file_range")
    if kernel:
        out.flush()
    for start, end in ranges:
        if kernel:
            out_pos = os.lseek(out_fd, 0, os.SEEK_CUR)
            kernel = kernel_copy(src_fd, out_fd, start, end, out_pos, writeback)
            if kernel:
                out.seek(os.lseek(out_fd, 0, os.SEEK_CUR))
                continue
        chunk_copy(src, out, start, end, writeback)


def kernel_copy(src_fd, out_fd, start, end, out_pos, writeback: Writeback) -> bool:
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


def chunk_copy(src, out, start, end, writeback: Writeback) -> None:
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
