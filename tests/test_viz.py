"""Attention maps as tensors (G and D), their drawing, and `sagan attention` on a checkpoint."""

import io

import pytest
import torch
from PIL import Image
from torch import nn

from sagan import create_model
from sagan.checkpoint import checkpoint_path, save_checkpoint
from sagan.cli import main
from sagan.nn import SelfAttention
from sagan.viz import (
    attention_study,
    capture_attention,
    discriminator_attention,
    draw_attention,
    feature_point,
    generator_attention,
    grid_points,
    image_grid,
    overlay,
    peak_ratio,
    plot_curves,
    query_spread,
)


def _tv(a: torch.Tensor, b: torch.Tensor) -> float:
    """Total variation distance between two distributions of the same shape."""
    return float(0.5 * (a - b).abs().sum())


@pytest.fixture(scope="module")
def gan():
    torch.manual_seed(0)
    return create_model("sagan_32", g_ch=8, d_ch=8, img_channels=1, num_classes=10).eval()


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory, gan):
    """A run folder holding one checkpoint of the tiny model (no training needed to look inside)."""
    run = tmp_path_factory.mktemp("run")
    with torch.no_grad():
        for block in (gan.generator.attention["16"], gan.discriminator.attention["16"]):
            block.gamma.fill_(0.5)  # attention that affects the output, as after some training
    state = {"model": gan.config.to_dict(), "train_config": {"data": "fashion-mnist"}, "step": 0,
             "generator": gan.generator.state_dict(), "discriminator": gan.discriminator.state_dict(),
             "generator_ema": gan.generator.state_dict()}
    save_checkpoint(state, checkpoint_path(run, 0))
    return run


def test_points_map_to_feature_cells():
    assert grid_points(32, 2) == [(8, 8), (24, 8), (8, 24), (24, 24)]
    assert feature_point((0, 0), 32, 16) == (0, 0)
    assert feature_point((31, 2), 32, 16) == (1, 15)  # (x, y) in, (row, col) out
    assert feature_point((17, 30), 32, 8) == (7, 4)
    with pytest.raises(ValueError):
        feature_point((32, 0), 32, 16)


def test_generator_maps_are_distributions_and_depend_on_the_query(gan):
    z = torch.randn(2, gan.generator.z_dim, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([3, 7])
    points = [(1, 1), (30, 30), (30, 1)]
    images, layers = generator_attention(gan.generator, z, y, points)
    assert images.shape == (2, 1, 32, 32) and images.abs().max() <= 1
    assert [m.name for m in layers] == ["G.16"]
    maps = layers[0].maps
    assert maps.shape == (2, 3, 8, 8)  # keys max-pooled: half the 16x16 feature map
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum((-1, -2)), torch.ones(2, 3))
    assert layers[0].queries == [(0, 0), (15, 15), (0, 15)]
    # At initialisation the query and key convs are random, so distant queries already attend differently.
    for b in range(2):
        assert _tv(maps[b, 0], maps[b, 1]) > 1e-3


def test_discriminator_maps_of_a_real_image(gan):
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    layers = discriminator_attention(gan.discriminator, x, points=[(4, 4), (28, 28)])  # conditional D, no label
    assert [m.name for m in layers] == ["D.16"]
    maps = layers[0].maps
    assert maps.shape == (1, 2, 8, 8)
    torch.testing.assert_close(maps.sum((-1, -2)), torch.ones(1, 2))
    # D's features are small at initialisation, so its maps start close to uniform: different, not far apart.
    assert _tv(maps[0, 0], maps[0, 1]) > 1e-7


class _Probe(nn.Module):
    """One attention block whose queries and keys are (row, col) coordinates: each query attends to its corner."""

    def __init__(self) -> None:
        super().__init__()
        # 16 channels: q and k have 2; no spectral norm, so the weights below are used as set
        self.attention = nn.ModuleDict({"16": SelfAttention(16, sn=lambda m: m)})
        with torch.no_grad():
            for conv in (self.attention["16"].query, self.attention["16"].key):
                conv.weight.zero_()
                conv.weight[0, 0] = 1.0
                conv.weight[1, 1] = 1.0

    def forward(self, x):
        return self.attention["16"](x)


def test_maps_point_where_the_query_looks():
    """Keys and queries are scaled coordinates: q.k is largest at the key grid's corner nearest the query.

    Checks the whole path: image point -> feature cell -> row of the attention matrix -> (row, col) of the map.
    """
    rows = torch.linspace(-1, 1, 16)
    x = torch.zeros(1, 16, 16, 16)
    x[0, 0] = 6 * rows[:, None]  # row coordinate
    x[0, 1] = 6 * rows[None, :]  # column coordinate
    probe = _Probe()
    corners = {(1, 1): (0, 0), (30, 1): (0, 7), (1, 30): (7, 0), (30, 30): (7, 7)}  # image (x, y) -> key (row, col)
    _, layers = capture_attention(probe, lambda: probe(x), list(corners), image_size=32, prefix="P")
    maps = layers[0].maps[0]  # (4, 8, 8)
    for i, expected in enumerate(corners.values()):
        assert divmod(int(maps[i].argmax()), 8) == expected
        assert peak_ratio(maps[i]) > 10  # concentrated, far from uniform (1x)
    assert min(_tv(maps[i], maps[j]) for i in range(4) for j in range(i + 1, 4)) > 0.5
    assert query_spread(layers[0].maps) > 0.5
    assert query_spread(maps[:1].expand(3, 8, 8)[None]) == 0.0  # three points attending alike


def test_overlay_and_figure(gan, tmp_path):
    z = torch.randn(1, gan.generator.z_dim)
    points = grid_points(32, 2)
    images, g_layers = generator_attention(gan.generator, z, torch.tensor([0]), points)
    d_layers = discriminator_attention(gan.discriminator, images, torch.tensor([0]), points)
    picture = overlay(images[0], g_layers[0].maps[0, 0])
    assert picture.shape == (32, 32, 3) and picture.dtype.name == "uint8"
    png = draw_attention(images, g_layers + d_layers, points, tmp_path / "maps.png", title="t")
    assert (tmp_path / "maps.png").read_bytes() == png
    with Image.open(io.BytesIO(png)) as im:
        w, h = im.size
    assert w > h > 100  # rows: G.16 and D.16; columns: the image and 4 maps
    relative = draw_attention(images, g_layers, points, relative=True)
    assert relative[:8] == b"\x89PNG\r\n\x1a\n" and relative != png
    with pytest.raises(ValueError):
        draw_attention(images, g_layers, points[:1], relative=True)
    grid = image_grid(torch.zeros(10, 1, 32, 32, dtype=torch.uint8), nrow=5)
    with Image.open(io.BytesIO(grid)) as im:
        assert im.size == (5 * 33 + 1, 2 * 33 + 1)


def test_plot_curves_skips_missing_keys():
    records = [{"step": s, "loss_d": 1.0 / (s + 1), "loss_g": float("nan") if s == 3 else 0.5} for s in range(10)]
    assert plot_curves(records, ["nothing"], "x") is None
    png = plot_curves(records, ["loss_d", "loss_g"], "losses", events=[5], smooth=3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_study_of_a_checkpoint(checkpoint_run):
    study = attention_study(checkpoint_run, points=[(2, 2), (29, 29)], seed=1, class_index=4)
    assert [m.name for m in study.layers] == ["G.16", "D.16"]
    assert study.images.shape == (1, 1, 32, 32)
    for layer in study.layers:
        torch.testing.assert_close(layer.maps.sum((-1, -2)), torch.ones(1, 2))
    assert _tv(study.layers[0].maps[0, 0], study.layers[0].maps[0, 1]) > 1e-3
    again = attention_study(checkpoint_run, points=[(2, 2), (29, 29)], seed=1, class_index=4)
    torch.testing.assert_close(again.layers[0].maps, study.layers[0].maps)  # seeded: the same picture


def test_attention_cli(checkpoint_run, tmp_path, capsys):
    out = tmp_path / "maps.png"
    assert main(["attention", str(checkpoint_run), "--out", str(out), "--points", "4,4", "28,28", "16,4",
                 "--seed", "3", "--class", "7", "--relative"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300
    real = tmp_path / "real.png"
    Image.new("RGBA", (50, 40), (200, 30, 30, 128)).save(real)  # any size and mode: cropped, put on white
    assert main(["attention", str(checkpoint_run), "--out", str(tmp_path / "d.png"), "--image", str(real),
                 "--grid", "2"]) == 0
    assert (tmp_path / "d.png").stat().st_size > 0
    assert "D.16" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--points", "40,1"], "outside the 32x32 image"),
    (["--class", "12"], "classes 0..9"),
    (["--image", "missing.png"], "no such image"),
    (["--image", "x.png", "--net", "g"], "D only"),
    (["--points", "4,4", "--relative"], "at least two"),
])
def test_attention_cli_errors(checkpoint_run, tmp_path, capsys, args, message):
    assert main(["attention", str(checkpoint_run), "--out", str(tmp_path / "m.png"), *args]) == 2
    assert message in capsys.readouterr().err
