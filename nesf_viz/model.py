"""The NeSF autoencoder (paper Appendix B, with the reference code's layer order).

Every hidden block is Linear -> ReLU -> BatchNorm1d; the last layer of each MLP is a plain
Linear. Encoder (PointNet-style, max-pooled over atoms) -> latent z (B, D) -> lattice heads
and two fields. The first layer of each field is split into a latent part (computed once per
crystal) and a point part, which is the same math as Linear(concat(z, p)) without repeating
the latent matmul for every point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import CrystalBatch
from .errors import ConfigError, ShapeError
from .fields import FieldAbilities

PAPER_POSITION_WIDTH = 128
"""Hidden width of the paper's position field MLP (its first layer is twice as wide)."""


def position_field_channels(width: int = PAPER_POSITION_WIDTH) -> tuple[int, ...]:
    """The paper's position field shape at another hidden width: (2w, w x 7); 128 is the paper's."""
    return (2 * width,) + (width,) * 7

CHANNEL_FIELDS = ("encoder_position_channels", "encoder_species_channels", "encoder_mix_channels",
                  "encoder_head_channels", "lattice_head_channels", "position_field_channels",
                  "species_field_channels")
"""The MLP widths of `NeSFConfig`."""
SHAPE_FIELDS = ("latent_dim", *CHANNEL_FIELDS, "positional_encoding_freqs", "positional_encoding_keep_input", "vae")
"""The fields of `NeSFConfig` that fix the weights' shapes (a warm start must keep them)."""


@dataclass(frozen=True)
class NeSFConfig:
    """Network shape. Defaults are the paper's / reference code's `nesf` network."""

    num_species: int
    """Species classes S (ICSG3D 84, LCS6A 80, YBCO13 31)."""
    latent_dim: int = 192
    encoder_position_channels: tuple[int, ...] = (64, 128, 128)
    encoder_species_channels: tuple[int, ...] = (128, 128)
    encoder_mix_channels: tuple[int, ...] = (512,)
    encoder_head_channels: tuple[int, ...] = (256, 256)
    encoder_dropout: float = 0.3
    """Dropout after the hidden blocks of the encoder head (the pooled MLP)."""
    lattice_head_channels: tuple[int, ...] = (128,)
    position_field_channels: tuple[int, ...] = position_field_channels()
    species_field_channels: tuple[int, ...] = (256, 128)
    positional_encoding_freqs: int = 0
    """0 = off (paper). L > 0 replaces p by sin/cos(2^l * 2 pi p / W), l < L (reference 'nesf_pe': 10)."""
    positional_encoding_longest_wavelength_angstrom: float = 2.0
    """W above. The reference's 2 A makes the encoding 2 A-periodic: points 2 A apart look identical
    to the fields, which then cannot learn (measured). Use more than twice the box extent."""
    positional_encoding_keep_input: bool = False
    """Feed p itself beside its encoding (NeRF's convention; the reference drops it)."""
    vae: bool = False
    """Variational latent (mean, softplus variance); off in the paper's numbers."""

    def __post_init__(self) -> None:
        def count(v, lo: int) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= lo

        for name in ("num_species", "latent_dim"):
            if not count(getattr(self, name), 1):
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in CHANNEL_FIELDS:
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or not v or not all(count(c, 1) for c in v):
                raise ConfigError(f"{name} must be a non-empty tuple of integers >= 1, got {v!r}")
        if not count(self.positional_encoding_freqs, 0) or self.positional_encoding_freqs > 64:
            # 2^64 times the base frequency is beyond what float32 positions resolve
            raise ConfigError(f"positional_encoding_freqs must be an integer from 0 (off) to 64, got "
                              f"{self.positional_encoding_freqs!r}")
        w = self.positional_encoding_longest_wavelength_angstrom
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w > 0):
            raise ConfigError(f"positional_encoding_longest_wavelength_angstrom must be a finite number > 0, got {w!r}")
        d = self.encoder_dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ConfigError(f"encoder_dropout must be in [0, 1), got {d!r}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "NeSFConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _mlp(channels: list[int], bn: bool, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-2], channels[1:-1]):
        layers += [nn.Linear(cin, cout), nn.ReLU()]
        if bn:
            layers.append(nn.BatchNorm1d(cout))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(channels[-2], channels[-1]))
    return nn.Sequential(*layers)


def _scatter_max(x: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = x.new_zeros(n, x.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(x), x, "amax", include_self=False)


class Encoder(nn.Module):
    """Atoms (positions, species) + lattice -> latent (B, D) (or mean, variance for a VAE)."""

    def __init__(self, cfg: NeSFConfig):
        super().__init__()
        self.num_species = cfg.num_species
        self.position_mlp = _mlp([3, *cfg.encoder_position_channels], bn=True)
        self.species_mlp = _mlp([cfg.num_species, *cfg.encoder_species_channels], bn=True)
        mix_in = cfg.encoder_position_channels[-1] + cfg.encoder_species_channels[-1]
        self.mix_mlp = _mlp([mix_in, *cfg.encoder_mix_channels], bn=True)
        out = cfg.latent_dim * (2 if cfg.vae else 1)
        self.head = _mlp(
            [cfg.encoder_mix_channels[-1] + 6, *cfg.encoder_head_channels, out],
            bn=True,
            dropout=cfg.encoder_dropout,
        )
        self.vae = cfg.vae
        self.latent_dim = cfg.latent_dim

    def _species_features(self, species: torch.Tensor) -> torch.Tensor:
        # one_hot(species) @ W.T + b, computed as a row lookup (same math, no (N, S) one-hot)
        first: nn.Linear = self.species_mlp[0]
        x = F.embedding(species, first.weight.t()) + first.bias
        return self.species_mlp[1:](x)

    def forward(self, crystals: CrystalBatch):
        pos = self.position_mlp(crystals.positions)
        spec = self._species_features(crystals.species)
        x = self.mix_mlp(torch.cat([pos, spec], 1))
        x = _scatter_max(x, crystals.batch, crystals.num_crystals)
        x = self.head(torch.cat([x, crystals.lengths, crystals.angles], 1))
        if self.vae:
            return x[:, : self.latent_dim], F.softplus(x[:, self.latent_dim :])
        return x


class PositionalEncoding(nn.Module):
    """sin/cos(2^l * 2 pi p / W) for l < L, laid out (3, L, 2) -> 6L, optionally after p itself.

    W = 2 A without p is the reference's 'nesf_pe' (sin/cos(2^l * pi * p)).
    """

    def __init__(self, freqs: int, longest_wavelength_angstrom: float = 2.0, keep_input: bool = False):
        super().__init__()
        if freqs and not longest_wavelength_angstrom > 0:
            raise ValueError(f"positional encoding wavelength must be > 0 A, got {longest_wavelength_angstrom}")
        self.freqs = freqs
        self.keep_input = keep_input
        scales = 2.0 * math.pi / longest_wavelength_angstrom * 2.0 ** torch.arange(freqs, dtype=torch.float64)
        self.register_buffer("scales", scales.float(), persistent=False)

    @property
    def out_dim(self) -> int:
        if not self.freqs:
            return 3
        return 6 * self.freqs + (3 if self.keep_input else 0)

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if not self.freqs:
            return p
        x = p[:, :, None] * self.scales.to(p.dtype)  # (Q, 3, L)
        enc = torch.stack([torch.sin(x), torch.cos(x)], -1).reshape(p.shape[0], -1)
        return torch.cat([p, enc], 1) if self.keep_input else enc


class FieldMLP(nn.Module):
    """f(z, p): concat(z, p) -> hidden, p concatenated again before every hidden layer.

    The first Linear over concat(z, p) is stored as `latent_in` (D -> C0, with bias) and
    `point_in` (p -> C0, no bias): z's part is computed once per crystal.
    """

    def __init__(self, latent_dim: int, channels: tuple[int, ...], out_dim: int,
                 pe: PositionalEncoding | None = None):
        super().__init__()
        self.pe = pe if pe is not None else PositionalEncoding(0)
        pdim = self.pe.out_dim
        self.latent_in = nn.Linear(latent_dim, channels[0])
        self.point_in = nn.Linear(pdim, channels[0], bias=False)
        self.hidden = nn.ModuleList(nn.Linear(c + pdim, n) for c, n in zip(channels[:-1], channels[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in channels)
        self.out = nn.Linear(channels[-1], out_dim)

    def forward(self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        # Same math as `forward_concat`, without materializing concat(x, p) at every layer:
        # Linear(concat(x, p)) = x @ Wx.T + (p @ Wp.T + b), one addmm per layer on the same
        # parameters. Besides the copies this saves, the gradient reaching each BatchNorm is then
        # a contiguous tensor rather than a column slice of the concat's gradient (float32 CPU
        # BatchNorm backward is much slower on a strided one), and under bf16 autocast
        # no float32 concat is promoted and cast back. ReLU runs in place on fresh addmm outputs.
        p = self.pe(points)
        pdim = p.shape[1]
        # index_select: its backward (index_add) is faster on CPU than that of z[index]
        x = torch.addmm(self.latent_in(z).index_select(0, index), p, self.point_in.weight.t())
        x = self.norms[0](F.relu(x, inplace=True))
        for lin, bn in zip(self.hidden, self.norms[1:]):
            w = lin.weight
            c = w.shape[1] - pdim
            x = torch.addmm(F.linear(p, w[:, c:], lin.bias), x, w[:, :c].t())
            x = bn(F.relu(x, inplace=True))
        return self.out(x)

    def forward_concat(self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Reference form: one Linear over concat(z[index], p) (for tests; slower)."""
        p = self.pe(points)
        w = torch.cat([self.latent_in.weight, self.point_in.weight], 1)
        x = F.linear(torch.cat([z[index], p], 1), w, self.latent_in.bias)
        x = self.norms[0](F.relu(x))
        for lin, bn in zip(self.hidden, self.norms[1:]):
            x = bn(F.relu(lin(torch.cat([x, p], 1))))
        return self.out(x)


class NeSF(nn.Module):
    """Neural Structure Fields autoencoder; implements the `StructureFields` protocol."""

    def __init__(self, num_species: int | None = None, config: NeSFConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            if num_species is None:
                raise ValueError("give num_species or a NeSFConfig")
            config = NeSFConfig(num_species=num_species, **overrides)
        self.config = config
        self.num_species = config.num_species
        self.encoder = Encoder(config)
        self.length_head = _mlp([config.latent_dim, *config.lattice_head_channels, 3], bn=False)
        self.angle_head = _mlp([config.latent_dim, *config.lattice_head_channels, 3], bn=False)
        self.position_net = FieldMLP(config.latent_dim, config.position_field_channels, 3, self._pe(config))
        self.species_net = FieldMLP(config.latent_dim, config.species_field_channels, config.num_species,
                                    self._pe(config))

    @staticmethod
    def _pe(config: NeSFConfig) -> PositionalEncoding:
        return PositionalEncoding(config.positional_encoding_freqs,
                                  config.positional_encoding_longest_wavelength_angstrom,
                                  config.positional_encoding_keep_input)

    # --- StructureFields protocol
    abilities = FieldAbilities()
    """A network promises no exact shortcut (its batched matmuls are not pointwise bitwise)."""

    def latents(self, crystals: CrystalBatch) -> torch.Tensor:
        """(B, D) latent; the mean for a VAE."""
        out = self.encode(crystals)
        return out[0] if self.config.vae else out

    def encode(self, crystals: CrystalBatch):
        if crystals.species.numel() and int(crystals.species.max()) >= self.num_species:
            from .errors import UnknownSpeciesError

            raise UnknownSpeciesError(
                f"species index {int(crystals.species.max())} is outside this model's "
                f"{self.num_species} classes; build the batch with the checkpoint's vocabulary"
            )
        return self.encoder(crystals)

    def lattice(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.length_head(z), self.angle_head(z)

    def position_field(self, z, points, index):
        _check_points(z, points, index)
        return self.position_net(z, points, index)

    def species_field(self, z, points, index):
        _check_points(z, points, index)
        return self.species_net(z, points, index)

    def species_class(self, z, points, index):
        """(Q,) the class the species field peaks at (the decoder's vote)."""
        return self.species_field(z, points, index).argmax(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _check_points(z: torch.Tensor, points: torch.Tensor, index: torch.Tensor) -> None:
    if z.ndim != 2 or points.ndim != 2 or points.shape[1] != 3 or index.shape != points.shape[:1]:
        raise ShapeError(
            f"fields take z (B, D), points (Q, 3), index (Q,); got {tuple(z.shape)}, "
            f"{tuple(points.shape)}, {tuple(index.shape)}"
        )
