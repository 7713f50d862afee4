"""MAR's KL-16 autoencoder (LDM's KL autoencoder as MAR configures it), re-implemented with the
same parameter names so MAR's ``kl16.ckpt`` state dict loads as is, and its conversion to a
diffusers ``AutoencoderKL``.

:class:`MARAutoencoderKL`: ``ch=128``, two residual blocks per level, GroupNorm(32, eps=1e-6),
swish, self-attention in the encoder's 16×16 level and in both middle blocks, none in the
decoder, a stride-2 convolution with (0, 1, 0, 1) padding to downsample, nearest ×2 + conv to
upsample. :func:`infer_mar_config` reads the architecture back from a state dict;
:func:`mar_to_diffusers` renames it to diffusers' layout. The tokenizer around it is
:class:`unmask.tokenizers.kl.KLTokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MARAutoencoderKL", "MAR_KL16", "MAR_SCALE_FACTOR", "infer_mar_config",
           "mar_to_diffusers"]

MAR_SCALE_FACTOR = 0.2325
#: MAR's KL-16: ``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))`` with its defaults.
MAR_KL16: dict[str, Any] = {
    "embed_dim": 16,
    "ch_mult": (1, 1, 2, 2, 4),
    "ch": 128,
    "num_res_blocks": 2,
    "encoder_attn_levels": (4,),  # attn_resolutions=(16,) at resolution 256
    "decoder_attn_levels": (),
    "use_variational": True,
}


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


class _ResnetBlock(nn.Module):
    """pre-norm residual block: GN → swish → conv3 → GN → swish → conv3, 1×1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if self.nin_shortcut is not None else x) + h


class _AttnBlock(nn.Module):
    """single-head spatial self-attention with 1×1-conv projections and a residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = _norm(ch)
        self.q, self.k, self.v = (nn.Conv2d(ch, ch, 1) for _ in range(3))
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, c, h * w).transpose(1, 2) for m in (self.q, self.k, self.v))
        att = torch.softmax(q @ k.transpose(1, 2) * c**-0.5, dim=-1)
        out = (att @ v).transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class _Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (residual blocks), ``attn`` (one per block or none)."""

    def __init__(self, chans: Sequence[tuple[int, int]], attention: bool):
        super().__init__()
        self.block = nn.ModuleList(_ResnetBlock(i, o) for i, o in chans)
        self.attn = nn.ModuleList(_AttnBlock(o) for _, o in chans) if attention else nn.ModuleList()

    def run(self, h: Tensor) -> Tensor:
        for j, blk in enumerate(self.block):
            h = blk(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class _Mid(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = (
            _ResnetBlock(ch, ch),
            _AttnBlock(ch),
            _ResnetBlock(ch, ch),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class _Encoder(nn.Module):
    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        attn_levels: Sequence[int],
        in_channels: int = 3,
    ):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            cout = ch * m
            level = _Level(
                [(cin if j == 0 else cout, cout) for j in range(num_res_blocks)],
                attention=i in attn_levels,
            )
            if i != len(ch_mult) - 1:
                level.downsample = _Downsample(cout)
            self.down.append(level)
            cin = cout
        self.mid = _Mid(cin)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, 2 * z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level.run(h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        z_channels: int,
        attn_levels: Sequence[int],
        out_ch: int = 3,
    ):
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = _Mid(cin)
        levels: list[_Level] = []
        for i in reversed(range(len(ch_mult))):
            cout = ch * ch_mult[i]
            level = _Level(
                [(cin if j == 0 else cout, cout) for j in range(num_res_blocks + 1)],
                attention=i in attn_levels,
            )
            if i != 0:
                level.upsample = _Upsample(cout)
            levels.insert(0, level)  # self.up[i] is level i, as in LDM
            cin = cout
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i].run(h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MARAutoencoderKL(nn.Module):
    """MAR's KL autoencoder (LDM architecture), parameter names identical to MAR's.

    ``encode`` returns the Gaussian moments ``(mean, logvar)`` (logvar clamped to [-30, 20]);
    with ``use_variational=False`` the logvar is fixed to 1, as in MAR.
    """

    def __init__(
        self,
        embed_dim: int = 16,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        ch: int = 128,
        num_res_blocks: int = 2,
        encoder_attn_levels: Sequence[int] = (4,),
        decoder_attn_levels: Sequence[int] = (),
        use_variational: bool = True,
    ):
        super().__init__()
        self.config = {
            "embed_dim": embed_dim,
            "ch_mult": tuple(ch_mult),
            "ch": ch,
            "num_res_blocks": num_res_blocks,
            "encoder_attn_levels": tuple(encoder_attn_levels),
            "decoder_attn_levels": tuple(decoder_attn_levels),
            "use_variational": use_variational,
        }
        self.encoder = _Encoder(ch, ch_mult, num_res_blocks, embed_dim, encoder_attn_levels)
        self.decoder = _Decoder(ch, ch_mult, num_res_blocks, embed_dim, decoder_attn_levels)
        self.quant_conv = nn.Conv2d(2 * embed_dim, (2 if use_variational else 1) * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)
        self.embed_dim, self.use_variational = embed_dim, use_variational

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        moments = self.quant_conv(self.encoder(x))
        if not self.use_variational:
            return moments, torch.ones_like(moments)
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))


def infer_mar_config(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """Recover :class:`MARAutoencoderKL`'s arguments from a state dict's names and shapes."""
    try:
        ch = int(state["encoder.conv_in.weight"].shape[0])
        levels = sorted({int(m[1]) for k in state if (m := re.match(r"encoder\.down\.(\d+)\.", k))})
        ch_mult = tuple(
            int(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // ch for i in levels
        )
        blocks = {
            int(m[1]) for k in state if (m := re.match(r"encoder\.down\.0\.block\.(\d+)\.", k))
        }
        enc_attn = tuple(i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state)
        dec_attn = tuple(i for i in levels if f"decoder.up.{i}.attn.0.q.weight" in state)
        embed_dim = int(state["post_quant_conv.weight"].shape[0])
        variational = int(state["quant_conv.weight"].shape[0]) == 2 * embed_dim
    except KeyError as e:
        raise ValueError(f"not an LDM/MAR KL autoencoder state dict (no {e})") from None
    return {
        "embed_dim": embed_dim,
        "ch_mult": ch_mult,
        "ch": ch,
        "num_res_blocks": len(blocks),
        "encoder_attn_levels": enc_attn,
        "decoder_attn_levels": dec_attn,
        "use_variational": variational,
    }


def mar_to_diffusers(state: Mapping[str, Tensor]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Convert a MAR/LDM KL state dict to ``(AutoencoderKL config, diffusers state dict)``."""
    cfg = infer_mar_config(state)
    if not cfg["use_variational"]:
        raise ValueError("diffusers' AutoencoderKL has no use_variational=False variant")
    n = len(cfg["ch_mult"])
    down = [
        "AttnDownEncoderBlock2D" if i in cfg["encoder_attn_levels"] else "DownEncoderBlock2D"
        for i in range(n)
    ]
    up = [
        "AttnUpDecoderBlock2D" if i in cfg["decoder_attn_levels"] else "UpDecoderBlock2D"
        for i in reversed(range(n))
    ]
    config = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": [cfg["ch"] * m for m in cfg["ch_mult"]],
        "layers_per_block": cfg["num_res_blocks"],
        "latent_channels": cfg["embed_dim"],
        "norm_num_groups": 32,
        "act_fn": "silu",
        "scaling_factor": MAR_SCALE_FACTOR,
    }
    attn = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
    rules = [
        (
            r"(encoder|decoder)\.mid\.block_(\d)\.(.*)",
            lambda m: f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{m[3]}",
        ),
        (
            r"(encoder|decoder)\.mid\.attn_1\.(\w+)\.(.*)",
            lambda m: f"{m[1]}.mid_block.attentions.0.{attn[m[2]]}.{m[3]}",
        ),
        (
            r"encoder\.down\.(\d+)\.block\.(.*)",
            lambda m: f"encoder.down_blocks.{m[1]}.resnets.{m[2]}",
        ),
        (
            r"encoder\.down\.(\d+)\.attn\.(\d+)\.(\w+)\.(.*)",
            lambda m: f"encoder.down_blocks.{m[1]}.attentions.{m[2]}.{attn[m[3]]}.{m[4]}",
        ),
        (
            r"encoder\.down\.(\d+)\.downsample\.conv\.(.*)",
            lambda m: f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}",
        ),
        (
            r"decoder\.up\.(\d+)\.block\.(.*)",
            lambda m: f"decoder.up_blocks.{n - 1 - int(m[1])}.resnets.{m[2]}",
        ),
        (
            r"decoder\.up\.(\d+)\.attn\.(\d+)\.(\w+)\.(.*)",
            lambda m: (
                f"decoder.up_blocks.{n - 1 - int(m[1])}.attentions.{m[2]}.{attn[m[3]]}.{m[4]}"
            ),
        ),
        (
            r"decoder\.up\.(\d+)\.upsample\.conv\.(.*)",
            lambda m: f"decoder.up_blocks.{n - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}",
        ),
        (r"(encoder|decoder)\.norm_out\.(.*)", lambda m: f"{m[1]}.conv_norm_out.{m[2]}"),
        (r"(.*)", lambda m: m[1]),
    ]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("loss."):
            continue
        for pattern, fn in rules:
            if m := re.fullmatch(pattern, key):
                new = fn(m).replace("nin_shortcut", "conv_shortcut")
                break
        if re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.weight$", new):
            value = value.reshape(value.shape[0], value.shape[1])  # 1×1 conv → linear
        out[new] = value
    return config, out
