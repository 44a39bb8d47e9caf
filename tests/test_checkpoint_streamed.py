"""Streamed safetensors: the writer lays files out exactly as safetensors' own ``save`` does, a resize copies
untouched tensors as bytes and equals load + resize_state_dict + save_file byte for byte, malformed headers
fail with a clear reason, and the in-kernel copy, the chunked copy and the early writeback (done or refused)
give the same bytes."""
import io
import json
import os
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posext.checkpoint import resize_state_dict, safetensors_format, safetensors_io, writeback
from posext.cli import main
from tests.test_checkpoint_safety import snapshot, vit_state

safetensors_torch = pytest.importorskip("safetensors.torch")

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2]
NAMES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=6)


def _tensor(dtype, shape, seed):
    gen = torch.Generator().manual_seed(seed)
    nbytes = int(torch.Size(shape).numel()) * torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen)
    return raw.view(dtype).reshape(shape) if raw.numel() else torch.empty(shape, dtype=dtype)


tensor_dicts = st.dictionaries(
    NAMES, st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 3), max_size=3), st.integers(0, 99)),
    min_size=1, max_size=6).map(lambda d: {k: _tensor(dt, shape, seed) for k, (dt, shape, seed) in d.items()})
metadata = st.one_of(st.none(), st.dictionaries(NAMES, st.text(max_size=8), max_size=1))


@settings(max_examples=150, deadline=None)
@given(tensors=tensor_dicts, meta=metadata)
def test_writer_matches_safetensors_save_byte_for_byte(tensors, meta):
    out = io.BytesIO()
    out.write(b"\xaa" * 7)  # poison: the writer starts where the stream is
    out.seek(0)
    safetensors_io.write(out, tensors, meta)
    assert out.getvalue() == safetensors_torch.save(tensors, metadata=meta)


def test_metadata_of_several_keys_is_kept_in_the_stored_order():
    # safetensors' own save orders metadata by a hash map (it varies between runs); posext keeps the source's
    meta = {"z": "1", "a": "2", "format": "pt"}
    out = io.BytesIO()
    safetensors_io.write(out, {"w": torch.ones(2)}, meta)
    (n,) = struct.unpack("<Q", out.getvalue()[:8])
    header = json.loads(out.getvalue()[8:8 + n])
    assert list(header["__metadata__"]) == ["z", "a", "format"]
    assert safetensors_torch.load(out.getvalue())["w"].tolist() == [1.0, 1.0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=tensor_dicts, meta=metadata, grid=st.integers(1, 7))
def test_streamed_resize_equals_load_resize_save(tmp_path_factory, extra, meta, grid):
    tmp = tmp_path_factory.mktemp("streamed")
    state = {**{f"blocks.{k}": v for k, v in extra.items()}, **vit_state(3, grid=4, dim=8)}
    src, out = tmp / "m.safetensors", tmp / "out"
    safetensors_torch.save_file(state, src, metadata=meta)
    before = snapshot(tmp)
    assert main(["resize", str(src), "--grid", str(grid), "--out", str(out)]) == 0
    expected, _ = resize_state_dict(safetensors_torch.load_file(src), grid)
    if grid == 4:  # nothing to change: skipped, nothing written
        assert not os.listdir(out)
    else:
        assert (out / "m.safetensors").read_bytes() == safetensors_torch.save(expected, metadata=meta)
    after = snapshot(tmp)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before


def _header_file(path, header: dict, data=b""):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("case, reason", [
    ("short", "shorter than its 8-byte header length"),
    ("huge", "header length"),
    ("notjson", "not JSON"),
    ("offsets", "data_offsets"),
    ("entry", "not a tensor entry"),
])
def test_malformed_safetensors_fail_that_file_with_the_reason(tmp_path, capsys, case, reason):
    path = tmp_path / "bad.safetensors"
    if case == "short":
        path.write_bytes(b"\x01\x02")
    elif case == "huge":
        path.write_bytes(struct.pack("<Q", 2 ** 40) + b"{}")
    elif case == "notjson":
        path.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    elif case == "offsets":  # a truncated file: the tensor runs past its end
        _header_file(path, {"pos_embed": {"dtype": "F32", "shape": [1, 17, 8], "data_offsets": [0, 544]}},
                     b"\0" * 100)
    else:
        _header_file(path, {"pos_embed": {"dtype": "F32"}})
    before = snapshot(tmp_path)
    assert main(["resize", str(path), "--grid", "6", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert reason in err and "Traceback" not in err
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("out")} == before
    assert not os.listdir(tmp_path / "out")


def test_kernel_copy_and_chunked_copy_give_the_same_bytes(tmp_path, monkeypatch):
    state = {**vit_state(1), "blocks.0.w": torch.randn(300, 77), "blocks.1.w": torch.randn(5).half()}
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(state, src)
    assert main(["resize", str(src), "--grid", "5", "--out", str(tmp_path / "kernel")]) == 0
    monkeypatch.delattr(os, "copy_file_range", raising=False)
    monkeypatch.setattr(safetensors_format, "COPY_CHUNK", 1000)  # many short chunks
    assert main(["resize", str(src), "--grid", "5", "--out", str(tmp_path / "chunks")]) == 0
    kernel, chunks = (tmp_path / d / "m.safetensors" for d in ("kernel", "chunks"))
    assert kernel.read_bytes() == chunks.read_bytes()
    expected, _ = resize_state_dict(safetensors_torch.load_file(src), 5)
    assert kernel.read_bytes() == safetensors_torch.save(expected)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "chunks"])
@pytest.mark.parametrize("refuse", [False, True], ids=["done", "refused"])
def test_early_writeback_covers_the_file_in_order_and_never_changes_bytes(tmp_path, monkeypatch, kernel,
                                                                           refuse):
    state = {**vit_state(1), "blocks.0.w": torch.randn(300, 77), "blocks.1.w": torch.randn(5000)}
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(state, src)
    calls = []
    real = writeback._CALL

    def record(fd, start, length, flags):
        calls.append((start, start + length, flags))
        if refuse:
            return -1
        return real(fd, start, length, flags) if real is not None else 0

    monkeypatch.setattr(writeback, "_CALL", record)
    monkeypatch.setattr(writeback, "STRETCH", 4096)
    if not kernel:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
        monkeypatch.setattr(safetensors_format, "COPY_CHUNK", 1000)
    assert main(["resize", str(src), "--grid", "5", "--out", str(tmp_path / "out")]) == 0
    expected, _ = resize_state_dict(safetensors_torch.load_file(src), 5)
    assert (tmp_path / "out" / "m.safetensors").read_bytes() == safetensors_torch.save(expected)
    if refuse:  # the first refusal turns the tracker off
        assert len(calls) == 1
        return
    started = [(a, b) for a, b, f in calls if f == writeback._WRITE]
    waited = [(a, b) for a, b, f in calls if f != writeback._WRITE]
    assert len(started) >= 10 and all(b - a >= 4096 for a, b in started)
    assert all(a1 == b0 for (_, b0), (a1, _) in zip(started, started[1:]))  # no gaps, no overlaps
    assert waited == started[:len(waited)] and len(waited) == len(started) - 1


def test_untouched_tensors_are_never_decoded(tmp_path, monkeypatch):
    """Only the tensors the resize changes (and the few the detector looks at) are read as values."""
    state = {**vit_state(2), **{f"blocks.{i}.w": torch.randn(64, 64) for i in range(8)}}
    src = tmp_path / "m.safetensors"
    safetensors_torch.save_file(state, src)
    read = []
    real_read = safetensors_io.Source.read
    monkeypatch.setattr(safetensors_io.Source, "read",
                        lambda self, key: read.append(key) or real_read(self, key))
    assert main(["resize", str(src), "--grid", "6", "--out", str(tmp_path / "out")]) == 0
    assert set(read) <= {"pos_embed", "cls_token", "patch_embed.proj.weight"} and "pos_embed" in read
