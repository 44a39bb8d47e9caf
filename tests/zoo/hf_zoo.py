"""Tiny Hugging Face vision models for checking ``resize_state_dict(..., image_size=(H, W))``.

Every case builds a transformers model from a small config with seeded random weights at a native
image size and again at a new size (non-square where the family's config takes ``[H, W]``, a different
square size otherwise). ``run_case`` resizes the native state dict with posext, loads it strictly into
the new-size model, runs a forward at the new size and, where transformers interpolates the table at
run time, compares the resized model with that run-time path.

Conventions: sizes are ``(H, W)`` in pixels; video cases feed ``[B, T, C, H, W]``. ``adapter`` names how
transformers resizes at run time: ``"flag"`` (``interpolate_pos_encoding=True`` in forward), ``"always"``
(the forward resizes whenever the grid differs) or ``None``; ``adapter_kw`` are the posext settings that
reproduce it. ``left_alone`` cases have no grid-sized table (NaFlex-style or factorized embeddings) and
must come back untouched.
"""

import importlib
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import torch

Size = Tuple[int, int]
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def _cls(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _img(size, square_only):
    return size[0] if square_only else list(size)


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # dotted class path
    config: Callable[[Size], object]  # image size -> config
    native: Size
    new: Size
    frames: int = 0  # video input when > 0
    square_only: bool = False  # the config takes one int image size
    adapter: Optional[str] = None  # "flag", "always" or None
    adapter_kw: dict = field(default_factory=dict)  # posext resize settings equal to the adapter
    resize_kw: dict = field(default_factory=dict)  # what a user passes besides image_size (old_size, ...)
    left_alone: bool = False
    inputs: Optional[Callable] = None  # (case, config, size, generator) -> forward kwargs
    output: str = "last_hidden_state"


def _vit_like(cfg_path, **extra):
    def build(size, square_only=False):
        return _cls(cfg_path)(image_size=_img(size, square_only), patch_size=8, **TINY, **extra)

    return build


def _square(builder):
    return lambda size: builder(size, square_only=True)


def _ns(builder):
    return lambda size: builder(size)


def _siglip2_config(size):
    return _cls("transformers.Siglip2VisionConfig")(patch_size=8, num_patches=16, **TINY)


def _siglip2_inputs(case, config, size, g):
    gh, gw = size[0] // 8, size[1] // 8
    n = gh * gw
    return dict(
        pixel_values=torch.randn(1, n, 3 * 64, generator=g),
        pixel_attention_mask=torch.ones(1, n, dtype=torch.long),
        spatial_shapes=torch.tensor([[gh, gw]]),
    )


def _pix2struct_config(size):
    return _cls("transformers.Pix2StructVisionConfig")(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        d_ff=64,
        d_kv=16,
        patch_embed_hidden_size=192,
        seq_len=64,
    )


def _pix2struct_inputs(case, config, size, g):
    gh, gw = size[0] // 8, size[1] // 8
    rows = torch.arange(gh).repeat_interleave(gw).float() + 1
    cols = torch.arange(gw).repeat(gh).float() + 1
    patches = torch.randn(gh * gw, 192, generator=g)
    return dict(flattened_patches=torch.cat([rows[:, None], cols[:, None], patches], 1)[None])


def _sam_config(size):
    return _cls("transformers.SamVisionConfig")(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        output_channels=16,
        image_size=size[0],
        patch_size=8,
        window_size=2,
        global_attn_indexes=[1],
        use_rel_pos=True,
    )


def _swin(cfg_path, **extra):
    def build(size):
        return _cls(cfg_path)(
            image_size=list(size),
            patch_size=4,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            **{"window_size": 2, **extra},
        )

    return build


def _beit(**extra):
    def build(size):
        return _cls("transformers.BeitConfig")(image_size=list(size), patch_size=8, **TINY, **extra)

    return build


def _video(cfg_path, **extra):
    def build(size):
        return _cls(cfg_path)(image_size=size[0], patch_size=8, num_frames=4, **TINY, **extra)

    return build


def _xclip_inputs(case, config, size, g):
    # the vision tower mixes frames through message tokens, so the batch holds B * num_frames images
    return dict(pixel_values=torch.randn(config.num_frames, 3, size[0], size[1], generator=g))


def _layoutlmv3_config(size):
    return _cls("transformers.LayoutLMv3Config")(
        input_size=size[0],
        patch_size=8,
        vocab_size=64,
        max_position_embeddings=40,
        max_2d_position_embeddings=64,
        coordinate_size=8,
        shape_size=8,
        **TINY,
    )


def _layoutlmv3_inputs(case, config, size, g):
    return dict(pixel_values=torch.randn(1, 3, size[0], size[1], generator=g))


def _idefics2_config(size):
    return _cls("transformers.Idefics2VisionConfig")(image_size=size[0], patch_size=8, **TINY)


def _yolos_config(size):
    # two layers so the per-layer mid position table [layers - 1, 1, 1 + N + det, D] is not empty
    return _cls("transformers.YolosConfig")(
        image_size=list(size), patch_size=8, num_detection_tokens=3, **dict(TINY, num_hidden_layers=2)
    )


BICUBIC = dict(mode="bicubic", antialias=False)
BILINEAR = dict(mode="bilinear", antialias=False)
NEAREST = dict(mode="nearest", antialias=False)

T = "transformers."
SQ = dict(square_only=True)  # the config takes one int image size (or the forward needs H == W)
FLAG_BICUBIC = dict(adapter="flag", adapter_kw=BICUBIC)


def _vit(cfg, **extra):
    return _ns(_vit_like(T + cfg, **extra))


def _vit_sq(cfg, **extra):
    return _square(_vit_like(T + cfg, **extra))


def _data2vec(size):
    return _cls(T + "Data2VecVisionConfig")(image_size=list(size), patch_size=8,
                                            use_relative_position_bias=True, **TINY)


def _dinov3(size):
    return _cls(T + "DINOv3ViTConfig")(image_size=size[0], patch_size=8, num_register_tokens=2, **TINY)


def _vivit(size):
    return _cls(T + "VivitConfig")(image_size=size[0], tubelet_size=[2, 8, 8], num_frames=4, **TINY)


def _xclip(size):
    return _vit_like(T + "XCLIPVisionConfig", num_frames=2)(size, True)


A, B = (32, 32), (32, 48)  # native size, non-square new size
S = (48, 48)  # square new size
# fmt: off
CASES = [
    Case("vit", T + "ViTModel", _vit("ViTConfig"), A, B, **FLAG_BICUBIC),
    Case("deit", T + "DeiTModel", _vit("DeiTConfig"), A, B, **FLAG_BICUBIC),
    # Dinov2 / BEiT / DPT forwards re-interpolate from an assumed-square table whenever H != W
    Case("dinov2", T + "Dinov2Model", _vit("Dinov2Config"), A, S, **SQ, adapter="always", adapter_kw=BICUBIC),
    Case("dinov2_registers", T + "Dinov2WithRegistersModel",
         _vit("Dinov2WithRegistersConfig", num_register_tokens=2), A, S, **SQ, adapter="always",
         adapter_kw=dict(mode="bicubic", antialias=True)),
    Case("dinov3_vit", T + "DINOv3ViTModel", _dinov3, A, B, left_alone=True),
    Case("clip", T + "CLIPVisionModel", _vit_sq("CLIPVisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("siglip", T + "SiglipVisionModel", _vit_sq("SiglipVisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("siglip2_naflex", T + "Siglip2VisionModel", _siglip2_config, A, B, left_alone=True,
         inputs=_siglip2_inputs),
    Case("vit_mae", T + "ViTMAEModel", _vit_sq("ViTMAEConfig", mask_ratio=0.0), A, S, **SQ, adapter="flag",
         adapter_kw=dict(BICUBIC, sincos="interpolate")),
    Case("beit_abs", T + "BeitModel", _beit(use_absolute_position_embeddings=True), A, S, **SQ,
         **FLAG_BICUBIC),
    Case("beit_rel", T + "BeitModel", _beit(use_relative_position_bias=True), A, S, **SQ, adapter="flag",
         adapter_kw=BILINEAR),
    Case("beit_shared_rel", T + "BeitModel", _beit(use_shared_relative_position_bias=True), A, S, **SQ,
         adapter="flag", adapter_kw=BILINEAR),
    Case("data2vec_vision", T + "Data2VecVisionModel", _data2vec, A, S, **SQ, adapter="flag",
         adapter_kw=BILINEAR),
    Case("owlvit", T + "OwlViTVisionModel", _vit_sq("OwlViTVisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("owlv2", T + "Owlv2VisionModel", _vit_sq("Owlv2VisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("git", T + "GitVisionModel", _vit_sq("GitVisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("idefics2_vision", T + "models.idefics2.modeling_idefics2.Idefics2VisionTransformer",
         _idefics2_config, A, S, **SQ),
    Case("sam_vision", T + "SamVisionModel", _sam_config, A, S, **SQ),
    Case("dpt", T + "DPTModel", _vit("DPTConfig"), A, S, **SQ, adapter="always", adapter_kw=BILINEAR),
    Case("timesformer", T + "TimesformerModel", _video(T + "TimesformerConfig"), A, S, frames=4, **SQ,
         adapter="always", adapter_kw=NEAREST),
    # the table holds T' x H x W rows: the frame grid (old_size) tells T' from H x W
    Case("vivit", T + "VivitModel", _vivit, A, S, frames=4, **SQ, resize_kw=dict(old_size=(4, 4))),
    Case("videomae", T + "VideoMAEModel", _video(T + "VideoMAEConfig", tubelet_size=2), A, S, frames=4, **SQ),
    Case("blip_vision", T + "BlipVisionModel", _vit_sq("BlipVisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("blip2_vision", T + "Blip2VisionModel", _vit_sq("Blip2VisionConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("instructblip_vision", T + "InstructBlipVisionModel", _vit_sq("InstructBlipVisionConfig"), A, S,
         **SQ, **FLAG_BICUBIC),
    Case("yolos", T + "YolosModel", _yolos_config, A, B, adapter="always", adapter_kw=BICUBIC),
    Case("swin", T + "SwinModel", _swin(T + "SwinConfig"), A, B),
    Case("swin_abs", T + "SwinModel", _swin(T + "SwinConfig", use_absolute_embeddings=True), A, B,
         **FLAG_BICUBIC),
    Case("swinv2", T + "Swinv2Model", _swin(T + "Swinv2Config"), A, B),
    Case("chinese_clip_vision", T + "ChineseCLIPVisionModel", _vit_sq("ChineseCLIPVisionConfig"), A, S, **SQ,
         **FLAG_BICUBIC),
    Case("altclip_vision", T + "AltCLIPVisionModel", _vit_sq("AltCLIPVisionConfig"), A, S, **SQ,
         **FLAG_BICUBIC),
    Case("xclip_vision", T + "XCLIPVisionModel", _xclip, A, S, **SQ, **FLAG_BICUBIC, inputs=_xclip_inputs),
    Case("vit_msn", T + "ViTMSNModel", _vit("ViTMSNConfig"), A, B, **FLAG_BICUBIC),
    Case("layoutlmv3_visual", T + "LayoutLMv3Model", _layoutlmv3_config, A, S, **SQ,
         inputs=_layoutlmv3_inputs),
    Case("flava_image", T + "FlavaImageModel", _vit_sq("FlavaImageConfig"), A, S, **SQ, **FLAG_BICUBIC),
    Case("pix2struct_vision", T + "Pix2StructVisionModel", _pix2struct_config, A, B, left_alone=True,
         inputs=_pix2struct_inputs),
    Case("ijepa", T + "IJepaModel", _vit("IJepaConfig"), A, B, **FLAG_BICUBIC),
]
# fmt: on
BY_NAME = {c.name: c for c in CASES}


# position-like parameters that transformers initialises to zeros: a zero table would make every resampling
# mode look equal, so they are redrawn
_REDRAW = re.compile(
    r"pos|position_bias_table|time_embed|rel_pos|cls_token|distillation|detection|register|mask"
)


def build(case: Case, size: Size, seed: int = 0):
    """The case's model for ``size`` in eval mode; weights drawn from ``seed``."""
    torch.manual_seed(seed)
    config = case.config(size)
    model = _cls(case.model)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() and p.is_floating_point() and _REDRAW.search(name) and not p.abs().max():
                # attention biases drawn large enough that resampling modes give distinguishable outputs
                p.normal_(0.0, 1.0 if "bias_table" in name or "rel_pos" in name else 0.02)
        embeddings = getattr(model, "embeddings", None)
        if hasattr(embeddings, "initialize_weights"):  # MAE: the fixed 2-D sin-cos table
            # transformers marks the module as initialised once, which would skip the table here
            embeddings.patch_embeddings.projection._is_hf_initialized = False
            embeddings.initialize_weights()
    return model, config


def inputs(case: Case, config, size: Size, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    if case.inputs is not None:
        return case.inputs(case, config, size, g)
    shape = (1, case.frames, 3) if case.frames else (1, 3)
    return dict(pixel_values=torch.randn(*shape, size[0], size[1], generator=g))


def forward(case: Case, model, kw: dict, **extra) -> torch.Tensor:
    with torch.no_grad():
        out = model(**kw, **extra)
    return getattr(out, case.output) if hasattr(out, case.output) else out[0]


def resize(case: Case, sd: dict, **kw):
    from posext.checkpoint import resize_state_dict

    return resize_state_dict(sd, image_size=case.new, **{**case.resize_kw, **kw})


def adapter_output(case: Case, model, config, size: Size):
    """The native model's output at ``size`` through transformers' own run-time resizing."""
    extra = dict(interpolate_pos_encoding=True) if case.adapter == "flag" else {}
    return forward(case, model, inputs(case, config, size), **extra, **_extra(case, size))


def _extra(case: Case, size: Size) -> dict:
    """MAE masks at random: a fixed increasing noise keeps every patch in grid order."""
    if case.name != "vit_mae":
        return {}
    return dict(noise=torch.arange(size[0] * size[1] // 64, dtype=torch.float32)[None])


def run_case(case: Case) -> dict:
    """Resize, load strictly, run a forward; the result fields are what a pass table needs."""
    res = dict(
        name=case.name,
        resized=0,
        loaded=False,
        forward=False,
        adapter_equal=None,
        identical=None,
        error="",
        seconds=0.0,
    )
    t0 = time.perf_counter()
    try:
        model, config = build(case, case.native)
        sd = model.state_dict()
        new_sd, applied = resize(case, sd, **case.adapter_kw)
        res["resized"] = len(applied)
        target, tconfig = build(case, case.new, seed=123)
        tsd = target.state_dict()
        # keys whose shape does not follow the image size must come back bit for bit
        res["identical"] = all(
            k in new_sd and torch.equal(new_sd[k], sd[k])
            for k in sd
            if k in tsd and tuple(tsd[k].shape) == tuple(sd[k].shape)
        )
        target.load_state_dict(new_sd, strict=True)
        res["loaded"] = True
        out = forward(case, target, inputs(case, tconfig, case.new), **_extra(case, case.new))
        res["forward"] = bool(torch.isfinite(out).all())
        if case.adapter is not None:
            ref = adapter_output(case, model, config, case.new)
            res["adapter_equal"] = bool(
                ref.shape == out.shape and torch.allclose(ref, out, atol=1e-5, rtol=0)
            )
    except Exception as e:  # noqa: BLE001 - the table reports the failure instead of stopping
        res["error"] = f"{type(e).__name__}: {e}"[:300]
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res
