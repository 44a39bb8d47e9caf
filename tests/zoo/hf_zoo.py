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
            window_size=2,
            **extra,
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

CASES = [
    Case(
        "vit",
        "transformers.ViTModel",
        _ns(_vit_like("transformers.ViTConfig")),
        (32, 32),
        (32, 48),
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "deit",
        "transformers.DeiTModel",
        _ns(_vit_like("transformers.DeiTConfig")),
        (32, 32),
        (32, 48),
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "dinov2",
        "transformers.Dinov2Model",
        _ns(_vit_like("transformers.Dinov2Config")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="always",
        adapter_kw=BICUBIC,
    ),
    Case(
        "dinov2_registers",
        "transformers.Dinov2WithRegistersModel",
        _ns(_vit_like("transformers.Dinov2WithRegistersConfig", num_register_tokens=2)),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="always",
        adapter_kw=dict(mode="bicubic", antialias=True),
    ),
    Case(
        "dinov3_vit",
        "transformers.DINOv3ViTModel",
        lambda s: _cls("transformers.DINOv3ViTConfig")(
            image_size=s[0], patch_size=8, num_register_tokens=2, **TINY
        ),
        (32, 32),
        (32, 48),
        left_alone=True,
        output="last_hidden_state",
    ),
    Case(
        "clip",
        "transformers.CLIPVisionModel",
        _square(_vit_like("transformers.CLIPVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "siglip",
        "transformers.SiglipVisionModel",
        _square(_vit_like("transformers.SiglipVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "siglip2_naflex",
        "transformers.Siglip2VisionModel",
        _siglip2_config,
        (32, 32),
        (32, 48),
        left_alone=True,
        inputs=_siglip2_inputs,
    ),
    Case(
        "vit_mae",
        "transformers.ViTMAEModel",
        _square(_vit_like("transformers.ViTMAEConfig", mask_ratio=0.0)),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=dict(BICUBIC, sincos="interpolate"),
    ),
    Case(
        "beit_abs",
        "transformers.BeitModel",
        _beit(use_absolute_position_embeddings=True),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "beit_rel",
        "transformers.BeitModel",
        _beit(use_relative_position_bias=True),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BILINEAR,
    ),
    Case(
        "beit_shared_rel",
        "transformers.BeitModel",
        _beit(use_shared_relative_position_bias=True),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BILINEAR,
    ),
    Case(
        "data2vec_vision",
        "transformers.Data2VecVisionModel",
        lambda s: _cls("transformers.Data2VecVisionConfig")(
            image_size=list(s), patch_size=8, use_relative_position_bias=True, **TINY
        ),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BILINEAR,
    ),
    Case(
        "owlvit",
        "transformers.OwlViTVisionModel",
        _square(_vit_like("transformers.OwlViTVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "owlv2",
        "transformers.Owlv2VisionModel",
        _square(_vit_like("transformers.Owlv2VisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "git",
        "transformers.GitVisionModel",
        _square(_vit_like("transformers.GitVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "idefics2_vision",
        "transformers.models.idefics2.modeling_idefics2.Idefics2VisionTransformer",
        _idefics2_config,
        (32, 32),
        (48, 48),
        square_only=True,
    ),
    Case(
        "sam_vision",
        "transformers.SamVisionModel",
        _sam_config,
        (32, 32),
        (48, 48),
        square_only=True,
        output="last_hidden_state",
    ),
    Case(
        "dpt",
        "transformers.DPTModel",
        _ns(_vit_like("transformers.DPTConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="always",
        adapter_kw=BILINEAR,
    ),
    Case(
        "timesformer",
        "transformers.TimesformerModel",
        _video("transformers.TimesformerConfig"),
        (32, 32),
        (48, 48),
        frames=4,
        square_only=True,
        adapter="always",
        adapter_kw=NEAREST,
    ),
    Case(
        "vivit",
        "transformers.VivitModel",
        lambda s: _cls("transformers.VivitConfig")(
            image_size=s[0], tubelet_size=[2, 8, 8], num_frames=4, **TINY
        ),
        (32, 32),
        (48, 48),
        frames=4,
        square_only=True,
    ),
    Case(
        "videomae",
        "transformers.VideoMAEModel",
        _video("transformers.VideoMAEConfig", tubelet_size=2),
        (32, 32),
        (48, 48),
        frames=4,
        square_only=True,
    ),
    Case(
        "blip_vision",
        "transformers.BlipVisionModel",
        _square(_vit_like("transformers.BlipVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "blip2_vision",
        "transformers.Blip2VisionModel",
        _square(_vit_like("transformers.Blip2VisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "instructblip_vision",
        "transformers.InstructBlipVisionModel",
        _square(_vit_like("transformers.InstructBlipVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "yolos",
        "transformers.YolosModel",
        _yolos_config,
        (32, 32),
        (32, 48),
        adapter="always",
        adapter_kw=BICUBIC,
    ),
    Case("swin", "transformers.SwinModel", _swin("transformers.SwinConfig"), (32, 32), (32, 48)),
    Case(
        "swin_abs",
        "transformers.SwinModel",
        _swin("transformers.SwinConfig", use_absolute_embeddings=True),
        (32, 32),
        (32, 48),
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case("swinv2", "transformers.Swinv2Model", _swin("transformers.Swinv2Config"), (32, 32), (32, 48)),
    Case(
        "chinese_clip_vision",
        "transformers.ChineseCLIPVisionModel",
        _square(_vit_like("transformers.ChineseCLIPVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "altclip_vision",
        "transformers.AltCLIPVisionModel",
        _square(_vit_like("transformers.AltCLIPVisionConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "xclip_vision",
        "transformers.XCLIPVisionModel",
        lambda s: _vit_like("transformers.XCLIPVisionConfig", num_frames=2)(s, True),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
        inputs=_xclip_inputs,
    ),
    Case(
        "vit_msn",
        "transformers.ViTMSNModel",
        _ns(_vit_like("transformers.ViTMSNConfig")),
        (32, 32),
        (32, 48),
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "layoutlmv3_visual",
        "transformers.LayoutLMv3Model",
        _layoutlmv3_config,
        (32, 32),
        (48, 48),
        square_only=True,
        inputs=_layoutlmv3_inputs,
    ),
    Case(
        "flava_image",
        "transformers.FlavaImageModel",
        _square(_vit_like("transformers.FlavaImageConfig")),
        (32, 32),
        (48, 48),
        square_only=True,
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
    Case(
        "pix2struct_vision",
        "transformers.Pix2StructVisionModel",
        _pix2struct_config,
        (32, 32),
        (32, 48),
        left_alone=True,
        inputs=_pix2struct_inputs,
    ),
    Case(
        "ijepa",
        "transformers.IJepaModel",
        _ns(_vit_like("transformers.IJepaConfig")),
        (32, 32),
        (32, 48),
        adapter="flag",
        adapter_kw=BICUBIC,
    ),
]
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

    return resize_state_dict(sd, image_size=case.new, **kw)


def adapter_output(case: Case, model, config, size: Size):
    """The native model's output at ``size`` through transformers' own run-time resizing."""
    kw = inputs(case, config, size)
    extra = dict(interpolate_pos_encoding=True) if case.adapter == "flag" else {}
    if case.name == "vit_mae":
        extra["noise"] = torch.arange(size[0] * size[1] // 64, dtype=torch.float32)[None]
    return forward(case, model, kw, **extra)


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
        res["identical"] = all(
            new_sd[k] is sd[k] or torch.equal(new_sd[k], sd[k])
            for k in sd
            if k in tsd
            and tuple(tsd[k].shape) == tuple(sd[k].shape)
            and k in new_sd
            and k not in {f.key for f in applied}
        )
        target.load_state_dict(new_sd, strict=True)
        res["loaded"] = True
        kw = inputs(case, tconfig, case.new)
        extra = {}
        if case.name == "vit_mae":
            extra["noise"] = torch.arange(case.new[0] * case.new[1] // 64, dtype=torch.float32)[None]
        out = forward(case, target, kw, **extra)
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
