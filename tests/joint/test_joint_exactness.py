"""Conditional sampling with one joint model samples the true conditionals (exact oracle).

Tiny joint distribution: 2 image tokens (V = 3) + 2 mask tokens (C = 2) in the combined
vocabulary 0..4 (mask classes are ids 3, 4; [MASK] = 5). The exact denoiser knows p; image →
mask sampling must reproduce p(mask | image), mask → image p(image | mask), and unconditional
sampling p itself — each within the noise band of exact sampling of the same number of draws.
A negative control (mask drawn from the marginal p(mask), ignoring the image) is far outside.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from unmask.exact import ExactDenoiser
from unmask.joint import JointLayout, restrict_logits, sample_joint

N = 8000
LAYOUT = JointLayout(image_shape=(1, 2), image_vocab=3, mask_shape=(1, 2), num_classes=2)


@pytest.fixture(scope="module")
def joint() -> ExactDenoiser:
    return make_joint()


def make_joint() -> ExactDenoiser:
    """A random, strongly correlated p over the 36 valid (image, mask) sequences, embedded in
    the 5^4 table of the combined vocabulary (invalid sequences have probability 0)."""
    g = torch.Generator().manual_seed(3)
    valid = torch.tensor([LAYOUT.combine(torch.tensor([[a, b]]), torch.tensor([[c, d]]))[0]
                          .tolist() for a, b, c, d in itertools.product(range(3), range(3),
                                                                         range(2), range(2))])
    gam = -torch.rand(36, generator=g, dtype=torch.float64).log()  # Exp(1) ⇒ Dirichlet(1)
    w = gam**3  # sharpen: strong dependence between the modalities
    powers = 5 ** torch.arange(3, -1, -1)
    probs = torch.zeros(5**4, dtype=torch.float64)
    probs[(valid * powers).sum(-1)] = w / w.sum()
    return ExactDenoiser(probs, vocab_size=5, seq_len=4)


def _denoiser(joint: ExactDenoiser):
    def den(x, t):
        return restrict_logits(LAYOUT, joint(x, t))

    den.time_conditioned = False
    return den


def _conditional(joint: ExactDenoiser, fixed: dict[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(outcomes (K, 4), probabilities (K,)) of p(x | x_i = v for i, v in fixed)."""
    keep = joint.probs > 0
    for i, v in fixed.items():
        keep &= joint.states[:, i] == v
    p = joint.probs[keep]
    return joint.states[keep], p / p.sum()


def _tv(samples: torch.Tensor, outcomes: torch.Tensor, p: torch.Tensor) -> float:
    emp = torch.stack([(samples == o).all(-1).double().mean() for o in outcomes])
    assert abs(float(emp.sum()) - 1.0) < 1e-9, "samples outside the support"
    return 0.5 * float((emp - p).abs().sum())


def _band(p: torch.Tensor, n: int, repeats: int = 300, quantile: float = 0.995) -> float:
    """The ``quantile`` of the TV of n exact draws from p: the sampling-noise pass band."""
    g = torch.Generator().manual_seed(99)
    tvs = []
    for _ in range(repeats):
        idx = torch.multinomial(p, n, replacement=True, generator=g)
        emp = torch.bincount(idx, minlength=len(p)).double() / n
        tvs.append(0.5 * float((emp - p).abs().sum()))
    return sorted(tvs)[int(quantile * repeats) - 1]


@pytest.mark.parametrize("method,steps", [("mdm", 256), ("first_hitting", 1)])
def test_image_to_mask_samples_true_conditional(joint, method, steps):
    g = torch.Generator().manual_seed(1)
    for img in ([0, 2], [1, 1]):
        image = torch.tensor([img]).expand(N, 2).reshape(N, 1, 2)
        out_img, out_mask = sample_joint(_denoiser(joint), LAYOUT, "image_to_mask", image=image,
                                         method=method, steps=steps, generator=g)
        assert torch.equal(out_img, image)
        x = LAYOUT.combine(out_img, out_mask)
        outcomes, p = _conditional(joint, {0: img[0], 1: img[1]})
        assert len(outcomes) == 4
        assert _tv(x, outcomes, p) < _band(p, N)


@pytest.mark.parametrize("method,steps", [("mdm", 256), ("first_hitting", 1)])
def test_mask_to_image_samples_true_conditional(joint, method, steps):
    g = torch.Generator().manual_seed(2)
    for m in ([0, 1], [1, 1]):
        mask = torch.tensor([m]).expand(N, 2).reshape(N, 1, 2)
        out_img, out_mask = sample_joint(_denoiser(joint), LAYOUT, "mask_to_image", mask=mask,
                                         method=method, steps=steps, generator=g)
        assert torch.equal(out_mask, mask)
        x = LAYOUT.combine(out_img, out_mask)
        outcomes, p = _conditional(joint, {2: 3 + m[0], 3: 3 + m[1]})
        assert len(outcomes) == 9
        assert _tv(x, outcomes, p) < _band(p, N)


@pytest.mark.parametrize("method,steps", [("mdm", 512), ("first_hitting", 1)])
def test_unconditional_joint_samples_target(joint, method, steps):
    # mdm's per-step independent unmasking has an O(1/steps) bias: many steps keep it
    # well inside the band (first_hitting is exact)
    g = torch.Generator().manual_seed(4)
    img, mask = sample_joint(_denoiser(joint), LAYOUT, "joint", batch_size=N, method=method,
                             steps=steps, generator=g)
    outcomes, p = _conditional(joint, {})
    assert _tv(LAYOUT.combine(img, mask), outcomes, p) < _band(p, N)


def test_ignoring_the_condition_is_rejected(joint):
    """Negative control: masks drawn from the marginal p(mask) instead of p(mask | image)."""
    g = torch.Generator().manual_seed(5)
    img = [0, 2]
    _, marg = sample_joint(_denoiser(joint), LAYOUT, "joint", batch_size=N, method="mdm",
                           steps=64, generator=g)
    image = torch.tensor([img]).expand(N, 2).reshape(N, 1, 2)
    outcomes, p = _conditional(joint, {0: img[0], 1: img[1]})
    tv = _tv(LAYOUT.combine(image, marg), outcomes, p)
    assert tv > 3 * _band(p, N)
