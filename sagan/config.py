"""The training configuration: one typed dataclass; YAML files and `--set key=value` hold overrides only."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sagan.augment import parse_policy
from sagan.errors import ConfigError, did_you_mean

LOSSES = ("hinge", "ns", "rpgan")  # sagan.losses.LOSSES
PRECISIONS = ("auto", "bf16", "fp32")


# max_steps for a run that only the clock stops (a study's minutes budget); the progress line hides it
NO_STEP_LIMIT = 10**9


@dataclass
class TrainConfig:
    """Every knob of `sagan train`. Defaults are the seed's recipe (SN, hinge, TTUR) sized for a CPU."""

    # what to train
    model: str = "sagan_32_cpu"
    model_args: dict = field(default_factory=dict)  # ModelConfig overrides, e.g. {"g_ch": 32}
    data: str = "fashion-mnist"
    data_root: str | None = None
    conditional: bool = True  # use the data's class labels when it has them
    # a folder's labels from a CSV (sagan.data.labels): paths relative to `data`, the label column (None: `label`,
    # `class` or `category`, else the first after the paths), and whether images without a label are left out
    labels: str | None = None
    label_column: str | None = None
    allow_unlabelled: bool = False
    # the model's class names in the order of its class indices, written by `sagan train` from the data it trained
    # on (a value given is replaced); [] for an unconditional model, None in a run from before they were kept
    class_names: list[str] | None = None
    out: str = "runs/sagan"
    seed: int = 0
    # the recipe: TTUR (Heusel et al. 2017) with SAGAN's settings
    # 32, not SNGAN's 64: on a CPU the images/s barely change with the batch, so 32 takes twice the steps in a
    # time budget (Fashion-MNIST in 12 min, 1 thread: recall 0.18 at batch 32 against 0.16 at 64)
    batch_size: int = 32
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    n_dis: int = 1
    loss: str = "hinge"
    # reuse_fakes: the G step back-propagates through the last D step's fakes (as PyTorch's DCGAN example does)
    # instead of drawing new ones: one G forward less per iteration (sagan_32_cpu 10%, sagan_32 20% faster)
    reuse_fakes: bool = True
    # weight of MSGAN's mode-seeking term in the G loss (losses.mode_seeking; 0: off, SAGAN's own loss). It trades
    # precision for recall; 12-minute Fashion-MNIST runs at weight 0 / 0.25 / 0.5 / 1 scored recall 0.27 / 0.33 /
    # 0.37 / 0.37 and precision 0.83 / 0.79 / 0.74 / 0.70, and weight 1 drew bright blank frames among the samples
    mode_seeking: float = 0.5
    # DiffAugment (sagan/augment.py): policies translation, cutout, color, comma-separated; '' is off
    augment: str = ""
    # probability of each augmentation per image (DiffAugment: 1), or "auto": ADA's adaptive p, which can go from
    # 0 to 1 in ada_kimg thousand real images (ADA: 500 in runs of tens of millions; 20 lets p cross its range in a
    # ninth of a 20-minute CPU run of ~180k images)
    augment_p: float | str = field(default=1.0, metadata={"words": ("auto",)})
    ada_kimg: float = 20.0
    # StyleGAN2-ADA's --mirror: each real image x-flipped with probability 1/2, for data whose mirror images are as
    # likely as the images (not text or digits); augment.random_flip
    mirror: bool = False
    # ---- faster-converging terms of D's loss (sagan.regularize); all off (0) by default, SAGAN's own recipe ----
    # R1 on reals / R2 on fakes (Mescheder et al. 2018; R3GAN uses both with loss: rpgan): gamma of
    # gamma/2 * E|grad_x D(x)|^2, computed every reg_every D steps and scaled by reg_every (StyleGAN2's lazy
    # regularisation: 16)
    r1_gamma: float = 0.0
    r2_gamma: float = 0.0
    reg_every: int = 16
    # LeCam (Tseng et al. 2021): weight of the penalty towards EMA anchors of D(real), D(fake), and their decay
    lecam_weight: float = 0.0
    lecam_decay: float = 0.99
    # balanced consistency (bCR, Zhao et al. 2021): weights of mean((D(x) - D(T(x)))^2) on reals and on fakes (the
    # paper: 10 and 10); T is a random x-flip (bcr_flip) then the DiffAugment policies bcr_augment
    bcr_real: float = 0.0
    bcr_fake: float = 0.0
    bcr_augment: str = "translation"
    bcr_flip: bool = True
    # FastGAN's self-supervised D (Liu et al. 2021): weight of the decoder's reconstruction error on reals; needs
    # a discriminator built with a decoder, e.g. model_args: {d_recon: 8}
    recon_weight: float = 0.0
    ema_decay: float = 0.999
    # G_ema's half-life in thousands of real images (StyleGAN2-ADA's ema_kimg, there 10 for batch 32 to 64); 0 keeps
    # ema_decay. The decay per step is then 0.5 ** (images per step / (ema_kimg * 1000)): ema_decay_per_step()
    ema_kimg: float = 0.0
    ema_start: int = 0  # G_ema copies G until this step, then averages (with a warm-up, see train.ema_decay_at)
    # G_ema's batch-norm statistics are recomputed from this many of its samples before every grid, evaluation
    # and checkpoint (sampling.standing_statistics); 0 keeps the raw G's copied statistics
    standing_samples: int = 2048
    # how to run
    precision: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int = 0  # 0: PyTorch's default
    device: str = "auto"
    deterministic: bool = False
    max_steps: int = 20_000  # NO_STEP_LIMIT: only max_minutes stops the run
    max_minutes: float = 0.0  # wall-clock budget; 0 for none
    # cadence
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 0  # 0: no evaluation during training
    eval_num: int = 2000
    eval_metric: str = "fd"  # the best checkpoint is kept by this score (lower is better for fd/kid)
    resume: bool = True  # continue from the run folder's latest checkpoint when there is one
    dist_timeout: float = 120.0  # seconds a distributed worker waits for the others before giving up

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first bad value; return self."""
        positive = ("batch_size", "lr_g", "lr_d", "n_dis", "max_steps", "log_every", "sample_every",
                    "checkpoint_every", "keep_checkpoints", "eval_num", "dist_timeout", "ada_kimg", "reg_every")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        for key in ("beta1", "beta2", "ema_decay", "lecam_decay"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        weights = ("mode_seeking", "r1_gamma", "r2_gamma", "lecam_weight", "bcr_real", "bcr_fake", "recon_weight",
                   "ema_kimg")
        for key in ("max_minutes", "threads", "eval_every", "ema_start", "standing_samples", *weights):
            if not getattr(self, key) >= 0:  # NaN fails this too
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        for key in weights:
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} must be a finite number, got {getattr(self, key)}")
        if self.mode_seeking and self.batch_size % 2:
            raise ConfigError(f"mode_seeking pairs the batch's halves: batch_size must be even, got {self.batch_size}")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}{did_you_mean(self.loss, LOSSES)}; "
                              f"choose {', '.join(LOSSES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose {', '.join(PRECISIONS)}")
        parse_policy(self.augment)
        parse_policy(self.bcr_augment)
        if (self.bcr_real or self.bcr_fake) and not (self.bcr_flip or parse_policy(self.bcr_augment)):
            raise ConfigError("bcr_real/bcr_fake need a transform: set bcr_augment (e.g. translation) or bcr_flip=true")
        if self.augment_p != "auto" and not (isinstance(self.augment_p, (int, float)) and 0 <= self.augment_p <= 1):
            raise ConfigError(f"augment_p must be in [0, 1] or auto, got {self.augment_p}")
        if self.label_column and not self.labels:
            raise ConfigError(f"label_column {self.label_column!r} needs a labels file: add --labels FILE.csv")
        if self.class_names is not None and not (isinstance(self.class_names, list)
                                                 and all(isinstance(n, str) for n in self.class_names)):
            raise ConfigError("class_names is a list of names that sagan train records from the data; "
                              f"got {self.class_names!r}: leave it out")
        if not isinstance(self.model_args, dict):
            raise ConfigError("model_args must be a mapping of model options, e.g. {g_ch: 32}")
        return self

    def ema_decay_per_step(self, world_size: int = 1) -> float:
        """G_ema's decay per step: ema_decay, or with ema_kimg the decay that halves an old weight's share in
        ema_kimg thousand real images, at batch_size * n_dis * world_size reals per step."""
        if not self.ema_kimg:
            return self.ema_decay
        return 0.5 ** (self.batch_size * self.n_dis * world_size / (self.ema_kimg * 1000))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_class_names(self, names) -> TrainConfig:
        """A copy that records the model's class names (in index order; [] for an unconditional model)."""
        return dataclasses.replace(self, class_names=[str(n) for n in names])


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value, current):
    """Convert a YAML/CLI value to the type of the field's current value, or to one of the field's words
    (metadata "words", e.g. augment_p's "auto")."""
    words = FIELDS[key].metadata.get("words", ()) if key in FIELDS else ()
    if isinstance(value, str) and value.strip().lower() in words:
        return value.strip().lower()
    if words:  # a word set earlier does not change the field's type
        current = FIELDS[key].default
    if value is None or current is None:
        return value
    kind = type(current)
    expected = kind.__name__ + "".join(f" or {w}" for w in words)
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind in (int, float) and isinstance(value, str):
            return kind(float(value)) if kind is int and "e" in value.lower() else kind(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind is float and isinstance(value, int):
            return float(value)
    except ValueError:
        raise ConfigError(f"{key} expects a {expected}, got {value!r}") from None
    if kind is not dict and not isinstance(value, kind):
        raise ConfigError(f"{key} expects a {expected}, got {value!r}")
    return value


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """A copy of cfg with overrides applied; `model_args.g_ch: 32` style keys reach into model_args."""
    values = cfg.to_dict()
    for key, value in overrides.items():
        if key.startswith("model_args."):
            values["model_args"] = {**values["model_args"], key.split(".", 1)[1]: yaml.safe_load(str(value))
                                    if isinstance(value, str) else value}
            continue
        if key not in FIELDS:
            raise ConfigError(f"unknown config key {key!r}{did_you_mean(key, list(FIELDS))}")
        values[key] = _coerce(key, value, values[key] if values[key] is not None else None)
    return TrainConfig(**values).validate()


def load_yaml(path: str | Path) -> dict:
    """The overrides in a YAML config file (a flat mapping of TrainConfig keys)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, e.g. `lr_d: 4.0e-4`")
    return data


def parse_sets(items: list[str]) -> dict:
    """`["lr_d=4e-4", "model_args.g_ch=32"]` -> {"lr_d": "4e-4", ...}; values stay strings until coerced."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
