"""The timm architectures of the zoo: one small variant per timm module with a grid-dependent tensor.

Each case names a timm model, the keyword arguments that keep it small (fewer blocks, never fewer
grid-dependent tables than the family has kinds of), the image size its checkpoint is built at
(``native``; ``None`` = the model's default input size) and the new image size ``new`` = ``(H, W)`` the
checkpoint is resized to. ``new`` is non-square unless the architecture only accepts square inputs
(``square_only=True``). ``refused`` names a key posext must refuse to resize (its size is not decided
by posext's rules), with an error naming that key. ``control=True`` marks families whose state dict
has no grid-dependent tensor (position information from convolutions or computed at run time): the resize
must leave them alone.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class TimmCase:
    name: str
    new: Tuple[int, int]
    kwargs: Dict = field(default_factory=dict)
    native: Optional[Tuple[int, int]] = None
    square_only: bool = False
    control: bool = False
    skip: str = ""
    note: str = ""
    refused: str = ""
    label: str = ""  # a second case of the same architecture

    @property
    def id(self) -> str:
        return f"{self.name}-{self.label}" if self.label else self.name


D2 = {"depth": 2}

TIMM_CASES = [
    # --- plain ViT family (vision_transformer / deit) ---
    TimmCase("test_vit", (96, 128)),
    TimmCase("vit_tiny_patch16_224", (192, 256)),
    TimmCase("deit_tiny_distilled_patch16_224", (192, 256), note="cls + dist prefix tokens"),
    TimmCase("deit3_small_patch16_224", (192, 256), D2, note="no_embed_class: pos_embed has no prefix rows"),
    TimmCase("vit_little_patch16_reg4_gap_256", (192, 320), D2, note="4 register tokens, no pos for them"),
    TimmCase("vit_small_patch14_dinov2", (224, 294), D2, note="native 518"),
    TimmCase("vit_small_patch14_reg4_dinov2", (224, 294), D2),
    TimmCase("vit_base_patch16_siglip_224", (192, 256), D2, note="no class token, MAP head"),
    TimmCase("flexivit_small", (192, 256), D2, note="native 240"),
    TimmCase("vit_tiny_r_s16_p8_224", (192, 256), note="hybrid: ResNet stem, grid at stride 32"),
    TimmCase("vit_relpos_small_patch16_224", (192, 256), D2, note="MLP log-relative bias, no table"),
    TimmCase("vit_relpos_base_patch16_plus_240", (192, 256), D2),
    TimmCase("vit_srelpos_small_patch16_224", (192, 256), D2),
    # --- EVA / RoPE ViTs (eva) ---
    TimmCase("eva02_tiny_patch14_224", (196, 280), D2, note="abs pos_embed + RoPE buffers"),
    TimmCase("vit_small_patch16_rope_224", (192, 256), D2),
    TimmCase("vit_small_patch16_rope_ape_224", (192, 256), D2),
    TimmCase("vit_small_patch16_rope_mixed_224", (192, 256), D2, note="learned RoPE frequencies"),
    TimmCase("vit_pe_core_tiny_patch16_384", (256, 320), D2),
    # --- BEiT ---
    TimmCase("beit_base_patch16_224", (192, 256), D2, note="per-block relative_position_bias_table"),
    TimmCase("beit3_base_patch16_224", (192, 256), D2),
    # --- windowed / hierarchical ---
    TimmCase("swin_tiny_patch4_window7_224", (224, 448), {"depths": (1, 1, 1, 1)}),
    TimmCase("swin_tiny_patch4_window7_224", (64, 96), {"depths": (1, 1, 1, 1)}, label="small",
             note="the last stages' windows shrink to their feature maps (2x3, 1x1)"),
    TimmCase("swin_s3_tiny_224", (224, 448), {"depths": (1, 1, 1, 1)}),
    TimmCase("swinv2_tiny_window8_256", (256, 512), {"depths": (1, 1, 1, 1)}),
    TimmCase("swinv2_cr_tiny_224", (224, 448), {"depths": (1, 1, 1, 1)}),
    TimmCase("maxvit_pico_rw_256", (256, 320), {"depths": (1, 1, 1, 1)}, note="window = image / 32"),
    TimmCase("maxvit_rmlp_pico_rw_256", (256, 320), {"depths": (1, 1, 1, 1)}),
    TimmCase("coatnet_pico_rw_224", (192, 256), {"depths": (1, 1, 1, 1)}),
    TimmCase("test_maxvit", (128, 160)),
    TimmCase("gcvit_xxtiny", (192, 256), note="window = image / 32"),
    TimmCase("samvit_base_patch16", (256, 320), {"depth": 2, "global_attn_indexes": (1,), "img_size": 256},
             native=(256, 256), note="native 1024 upstream; built at 256"),
    TimmCase("levit_128s", (192, 256)),
    TimmCase("levit_conv_128s", (192, 256)),
    TimmCase("efficientformer_l1", (192, 256),
             skip="attention resolution fixed at 7: runs at 224 only"),
    TimmCase("efficientformerv2_s0", (192, 256)),
    TimmCase("tiny_vit_5m_224", (192, 256)),
    TimmCase("efficientvit_m0", (192, 256)),
    TimmCase("pit_ti_224", (192, 256), note="conv-layout pos_embed, conv stride 8 kernel 16"),
    TimmCase("crossvit_tiny_240", (360, 360), square_only=True, note="two branches, patch 12 and 16"),
    TimmCase("tnt_s_patch16_224", (192, 256), {"depth": 2}),
    TimmCase("nest_tiny", (160, 160), square_only=True, note="pos_embed [1, blocks, seq, C]"),
    TimmCase("visformer_tiny", (192, 256)),
    TimmCase("cait_xxs24_224", (192, 256), {"depth": 2}),
    TimmCase("convit_tiny", (192, 192), {"depth": 2, "local_up_to_layer": 1}, square_only=True),
    TimmCase("volo_d1_224", (192, 256)),
    TimmCase("hiera_tiny_224", (192, 256), {"stages": (1, 1, 1, 1)}),
    TimmCase("hiera_small_abswin_256", (256, 320), {"stages": (1, 1, 1, 1)}),
    TimmCase("sam2_hiera_tiny", (256, 320), note="takes no img_size; background pos_embed fixed size"),
    TimmCase("naflexvit_base_patch16_gap", (192, 256), D2),
    TimmCase("mvitv2_tiny", (192, 192), square_only=True, refused="stages.0.blocks.0.attn.rel_pos_h"),
    TimmCase("vitamin_small_224", (192, 256)),
    TimmCase("botnet26t_256", (256, 320), note="self_attn.pos_embed.height_rel/width_rel",
             refused="stages.2.1.self_attn.pos_embed.height_rel"),
    TimmCase("lambda_resnet26rpt_256", (256, 320), refused="stages.2.1.self_attn.pos_emb"),
    TimmCase("qwen3_vit_88m", (192, 256), D2),
    TimmCase("gemma4_vit_167m", (192, 256), D2),
    # --- controls: position information not stored per grid cell ---
    TimmCase("xcit_nano_12_p16_224", (192, 256), {"depth": 2}, control=True),
    TimmCase("pvt_v2_b0", (192, 256), control=True),
    TimmCase("twins_svt_small", (192, 256), {"depths": (1, 1, 1, 1)}, control=True),
    TimmCase("coat_lite_tiny", (192, 256), control=True),
]
