"""The architecture of a GAN as data: one dataclass rebuilds any registered model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from sagan.errors import ConfigError, did_you_mean

ARCHS = ("resnet", "dcgan")
# FastGAN's options (arXiv:2101.04775): fields that the stored dict leaves out while they are off, so a
# checkpoint written before they existed still matches its model when a run resumes
_OMITTED_WHEN_OFF = {"g_sle": (), "d_recon": 0}
RECON_MAX_STEPS = 3  # the reconstruction decoder up-samples D's features at most 8x (FastGAN: 8 -> 128 px of 1024)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a generator/discriminator pair; stored in every checkpoint.

    Channel widths are `g_ch * g_mult[i]` for the generator's stages from 4x4 up to `resolution`,
    and `d_ch * d_mult[i]` for the discriminator's blocks from `resolution` down. Attention sits after the
    stage whose output feature map has a resolution listed in `g_attention` / `d_attention`.

    FastGAN's parts (Liu et al., ICLR 2021), off by default: `g_sle` lists the generator resolutions whose stage
    output is gated by skip-layer excitation from the stage at `sle_source(r)` = max(4, r / 16) (FastGAN: 4 -> 64,
    8 -> 128, ...); `d_recon` is the resolution of the discriminator feature map that a small decoder turns back
    into the (down-sampled) real image, `recon_resolution()` pixels wide, for the self-supervised loss.
    """

    name: str
    arch: str  # "resnet" (SNGAN/SAGAN) or "dcgan" (strided convs; also the CelebA tutorial net)
    resolution: int
    g_mult: tuple[int, ...]
    d_mult: tuple[int, ...]
    g_ch: int = 64
    d_ch: int = 64
    z_dim: int = 128
    img_channels: int = 3
    num_classes: int = 0  # 0: unconditional; else conditional BN in G and a projection head in D
    g_attention: tuple[int, ...] = ()
    d_attention: tuple[int, ...] = ()
    g_spectral_norm: bool = True
    d_spectral_norm: bool = True
    d_min_resolution: int = 4  # resnet D: blocks stop down-sampling at this feature-map size
    g_sle: tuple[int, ...] = ()  # FastGAN skip-layer excitation into these G resolutions
    d_recon: int = 0  # FastGAN reconstruction decoder from D's feature map of this resolution (0: none)
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for name in ("g_mult", "d_mult", "g_attention", "d_attention", "g_sle"):
            try:
                setattr(self, name, tuple(int(v) for v in getattr(self, name)))
            except (TypeError, ValueError):
                raise ConfigError(f"{name} is a list of whole numbers, e.g. [16, 32]; got "
                                  f"{getattr(self, name)!r}") from None
        self.validate()

    @property
    def g_stages(self) -> int:
        return len(self.g_mult)

    def g_resolutions(self) -> list[int]:
        """Output resolution of each generator stage: 4, 8, ..., resolution."""
        return [4 * 2**i for i in range(len(self.g_mult))]

    def d_resolutions(self) -> list[int]:
        """Output resolution of each discriminator block."""
        res, out = self.resolution, []
        for _ in self.d_mult:
            if self.arch == "dcgan" or res > self.d_min_resolution:
                res //= 2
            out.append(res)
        return out

    def g_widths(self) -> list[int]:
        return [self.g_ch * m for m in self.g_mult]

    def d_widths(self) -> list[int]:
        return [self.d_ch * m for m in self.d_mult]

    @staticmethod
    def sle_source(resolution: int) -> int:
        """The G resolution whose feature map gates the stage at `resolution` (FastGAN's 16x apart, from 4x4 up)."""
        return max(4, resolution // 16)

    def recon_resolution(self) -> int:
        """Width in pixels of the reconstruction decoder's output (0 when there is no decoder)."""
        return min(self.resolution, self.d_recon * 2**RECON_MAX_STEPS) if self.d_recon else 0

    def validate(self) -> None:
        """Raise ConfigError naming the first inconsistent field."""
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        res = self.resolution
        if res < 16 or res & (res - 1):
            raise ConfigError(f"resolution must be a power of two >= 16, got {res}")
        if 4 * 2 ** (len(self.g_mult) - 1) != res:
            raise ConfigError(f"g_mult needs {res.bit_length() - 2} entries for {res} px, got {len(self.g_mult)}")
        if self.arch == "dcgan" and self.resolution // 2 ** len(self.d_mult) != 4:
            raise ConfigError(f"a dcgan D needs {res.bit_length() - 3} d_mult entries for {res} px")
        for key in ("g_ch", "d_ch", "z_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if self.img_channels not in (1, 3):
            raise ConfigError(f"img_channels must be 1 or 3, got {self.img_channels}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        for net, places, resolutions, widths in (
            ("g", self.g_attention, self.g_resolutions(), self.g_widths()),
            ("d", self.d_attention, self.d_resolutions(), self.d_widths()),
        ):
            for r in places:
                if r not in resolutions:
                    raise ConfigError(f"{net}_attention at {r}x{r}: {net.upper()} has feature maps of "
                                      f"{sorted(set(resolutions))}")
                width = widths[resolutions.index(r)]
                if width % 8 or r < 2:
                    raise ConfigError(f"{net}_attention at {r}x{r} needs a width divisible by 8, got {width}")
        self._validate_fastgan()

    def _validate_fastgan(self) -> None:
        g_res = self.g_resolutions()
        for r in self.g_sle:
            if r not in g_res or r <= 4:
                raise ConfigError(f"g_sle at {r}x{r}: skip-layer excitation goes into a G feature map of "
                                  f"{sorted(set(g_res) - {4})}")
        if len(set(self.g_sle)) != len(self.g_sle):
            raise ConfigError(f"g_sle lists a resolution twice: {list(self.g_sle)}")
        if self.d_recon:
            d_res = self.d_resolutions()
            if self.d_recon not in d_res or self.d_recon >= self.resolution:
                raise ConfigError(f"d_recon {self.d_recon}: the decoder reads a D feature map of "
                                  f"{sorted(set(d_res))} (0 for none)")

    def to_dict(self) -> dict:
        """The fields as plain lists and numbers, without the FastGAN options while they are off."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()
                if not (k in _OMITTED_WHEN_OFF and v == _OMITTED_WHEN_OFF[k])}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**d)

    def replace(self, **overrides) -> ModelConfig:
        """A copy with some fields changed; unknown fields give a ConfigError with a suggestion."""
        names = [f.name for f in dataclasses.fields(self)]
        for key in overrides:
            if key not in names:
                raise ConfigError(f"unknown model option {key!r}{did_you_mean(key, names)}")
        return dataclasses.replace(self, **overrides)
