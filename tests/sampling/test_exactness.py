"""Samplers reproduce the joint distribution of an exact denoiser (V = 3, L = 4).

The pass band is what sampling noise alone gives: the 99.5th percentile of the TV distance
between n exact samples and the target (conftest.tv_band). Negative controls show that the
check has power: a one-step sampler (independent tokens) is far outside it.
"""

import pytest
import torch

from unmask.exact import total_variation
from unmask.sampling import sample, sample_with_info

N = 10_000


@pytest.mark.parametrize(
    "method,steps,schedule",
    [
        ("mdm", 256, "linear"),
        ("mdm", 256, "cosine"),
        ("euler", 512, "linear"),
        ("euler", 512, "cosine"),
        ("first_hitting", 1, "linear"),
        ("first_hitting", 1, "arccos"),
    ],
)
def test_sampler_matches_target(tiny, tv_band, method, steps, schedule):
    g = torch.Generator().manual_seed(7)
    x = sample(tiny, batch_size=N, seq_len=4, mask_id=3, method=method, steps=steps,
               schedule=schedule, generator=g)
    assert not (x == 3).any()
    assert total_variation(tiny, x) < tv_band(N)


def test_one_step_sampler_is_rejected(tiny, tv_band):
    g = torch.Generator().manual_seed(8)
    x = sample(tiny, batch_size=N, seq_len=4, mask_id=3, method="mdm", steps=1, generator=g)
    assert total_variation(tiny, x) > 5 * tv_band(N)


def test_conditional_sampling_given_x_init(tiny, tv_band):
    """x_init fixes positions 0 and 2; the free ones must follow p(x_1, x_3 | x_0, x_2)."""
    g = torch.Generator().manual_seed(9)
    x_init = torch.full((N, 4), 3)
    x_init[:, 0], x_init[:, 2] = 1, 0
    for method, steps in (("mdm", 128), ("first_hitting", 1)):
        x = sample(tiny, batch_size=N, seq_len=4, mask_id=3, method=method, steps=steps,
                   generator=g, x_init=x_init)
        assert (x[:, 0] == 1).all() and (x[:, 2] == 0).all()
        # target conditional over the 9 completions
        cond = tiny.states[(tiny.states[:, 0] == 1) & (tiny.states[:, 2] == 0)]
        p = tiny.probs[tiny.index(cond)]
        p = p / p.sum()
        emp = torch.stack([((x == c).all(-1)).double().mean() for c in cond])
        tv = 0.5 * float((emp - p).abs().sum())
        assert tv < tv_band(N)  # 9 outcomes: the 81-outcome band is a loose upper bound


def test_euler_matches_flow_matching_solver(tiny, tv_band):
    """Our Euler sampler vs flow_matching's MixtureDiscreteEulerSolver (an independent
    implementation) on the same exact denoiser and grid: both reach the target."""
    from flow_matching.path import MixtureDiscreteProbPath
    from flow_matching.path.scheduler import PolynomialConvexScheduler
    from flow_matching.solver import MixtureDiscreteEulerSolver
    from flow_matching.utils import ModelWrapper

    class Probs(ModelWrapper):
        def forward(self, x, t, **extras):
            p = self.model(x, t).exp().float()
            p = torch.cat([p, torch.zeros(*x.shape, 1)], -1)  # no mass on the mask id
            clean = x != 3
            # the solver does not freeze clean tokens: return one-hot there
            onehot = torch.nn.functional.one_hot(x, 4).float()
            return torch.where(clean[..., None], onehot, p)

    steps = 256
    torch.manual_seed(10)  # the solver draws from the global generator
    solver = MixtureDiscreteEulerSolver(
        Probs(tiny), MixtureDiscreteProbPath(PolynomialConvexScheduler(n=1.0)), vocabulary_size=4
    )
    x_fm = solver.sample(torch.full((N, 4), 3), step_size=None,
                         time_grid=torch.linspace(0, 1, steps + 1))
    g = torch.Generator().manual_seed(11)
    x_ours = sample(tiny, batch_size=N, seq_len=4, mask_id=3, method="euler", steps=steps,
                    schedule="linear", generator=g)
    band = tv_band(N)
    assert total_variation(tiny, x_fm) < band
    assert total_variation(tiny, x_ours) < band
    # two-sample: the empirical distributions agree within twice the one-sample band
    e1 = torch.bincount(tiny.index(x_fm), minlength=81).double() / N
    e2 = torch.bincount(tiny.index(x_ours), minlength=81).double() / N
    assert 0.5 * float((e1 - e2).abs().sum()) < 2 * band


def test_maskgit_runs_and_keeps_init(tiny):
    g = torch.Generator().manual_seed(12)
    x_init = torch.full((64, 4), 3)
    x_init[:, 1] = 2
    r = sample_with_info(tiny, batch_size=64, seq_len=4, mask_id=3, method="maskgit", steps=4,
                         schedule="cosine", generator=g, x_init=x_init)
    assert not (r.tokens == 3).any() and (r.tokens[:, 1] == 2).all()
    assert r.steps == 4


def test_maskgit_zero_choice_temperature_is_greedy_confidence():
    """τ = 0: the re-masked tokens are exactly the least likely draws (top-p 0.5 makes every
    draw token 0, so the expected set is known: the three smallest p(token 0))."""
    V, L = 5, 6
    q = torch.tensor([0.9, 0.99, 0.95, 0.999, 0.97, 0.995])  # p(token 0) per position
    logits = torch.cat([q.log()[:, None], ((1 - q) / (V - 1)).log()[:, None].expand(L, V - 1)],
                       -1)[None]

    def den(x, t):
        return logits.expand(x.shape[0], -1, -1)

    g = torch.Generator().manual_seed(0)
    _, traj = sample(den, batch_size=1, seq_len=L, mask_id=V, method="maskgit", steps=2,
                     schedule="linear", choice_temperature=0.0, top_p=0.5, generator=g,
                     return_trajectory=True)
    # after step 1 of 2 (linear: 1 − κ_{1/2} = 1/2), ⌊6/2⌋ = 3 lowest-confidence stay masked
    still = (traj[1, 0] == V).nonzero().flatten().tolist()
    assert sorted(still) == [0, 2, 4]
