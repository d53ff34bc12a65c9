import torch
from torch import nn

from sagan.models import create_model
from sagan.sampling import generate, sample_latents, standing_statistics


def _trained_like(num_classes=3):
    """A small generator whose BN running stats are deliberately wrong, as G_ema's copied ones are."""
    torch.manual_seed(0)
    g = create_model("sagan_32_cpu", num_classes=num_classes, img_channels=1).generator.eval()
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(0.01)
    return g


def test_standing_statistics_are_the_generators_own():
    g = _trained_like()
    first_bn = next(m for m in g.modules() if isinstance(m, nn.BatchNorm2d))
    seen = []
    hook = first_bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    params = {k: v.clone() for k, v in g.named_parameters()}
    sn_vectors = {k: v.clone() for k, v in g.named_buffers() if "parametrizations" in k}
    rng_before = torch.get_rng_state()

    standing_statistics(g, num=96, batch_size=32, seed=1)
    hook.remove()

    x = torch.cat(seen)  # every input the first BN saw: 96 samples in 3 batches
    assert x.shape[0] == 96
    assert torch.allclose(first_bn.running_mean, x.mean((0, 2, 3)), atol=1e-5)
    # a cumulative average of the per-batch unbiased variances
    per_batch = torch.stack([b.var((0, 2, 3), unbiased=True) for b in seen])
    assert torch.allclose(first_bn.running_var, per_batch.mean(0), rtol=1e-4, atol=1e-6)
    assert not g.training and all(not m.training for m in g.modules()), "eval mode restored everywhere"
    assert first_bn.momentum == 0.1
    assert all(torch.equal(params[k], v) for k, v in g.named_parameters())
    assert all(torch.equal(sn_vectors[k], v) for k, v in g.named_buffers() if k in sn_vectors), "SN u/v untouched"
    assert torch.equal(torch.get_rng_state(), rng_before), "the global RNG is not consumed"


def test_standing_statistics_make_eval_mode_match_batch_statistics():
    g = _trained_like(num_classes=0)
    z = sample_latents(512, g.z_dim, torch.Generator().manual_seed(5))
    with torch.no_grad():
        g.train()
        batch_mode = g(z, None)
        g.eval()
        wrong = g(z, None)
        standing_statistics(g, num=2048, batch_size=256, seed=0)
        fixed = g(z, None)
    err_wrong, err_fixed = (wrong - batch_mode).abs().mean(), (fixed - batch_mode).abs().mean()
    assert err_fixed < 0.05 * err_wrong, (err_wrong, err_fixed)
    # deterministic: the same seed gives the same statistics and so the same samples
    again = _trained_like(num_classes=0)
    again.load_state_dict(g.state_dict())
    standing_statistics(again, num=2048, batch_size=256, seed=0)
    assert torch.equal(generate(again, 8, seed=3), generate(g, 8, seed=3))


def test_labels_with_shares_are_exact_seeded_and_balanced_when_the_counts_are_even():
    from sagan.sampling import labels_with_shares

    labels = labels_with_shares(1000, torch.tensor([600, 300, 90, 10]), seed=3)
    assert torch.bincount(labels, minlength=4).tolist() == [600, 300, 90, 10]
    assert torch.equal(labels, labels_with_shares(1000, torch.tensor([600, 300, 90, 10]), seed=3))
    assert not torch.equal(labels, labels_with_shares(1000, torch.tensor([600, 300, 90, 10]), seed=4))
    assert not torch.equal(labels[:600], torch.zeros(600, dtype=torch.long)), "shuffled, not class by class"
    odd = labels_with_shares(7, torch.tensor([5, 3, 1]))  # quotas 3.89, 2.33, 0.78: largest remainders
    assert torch.bincount(odd, minlength=3).tolist() == [4, 2, 1]
    assert labels_with_shares(6, torch.tensor([5, 5, 5])).tolist() == [0, 1, 2, 0, 1, 2]
