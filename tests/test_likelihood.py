"""NELBO against exact log-likelihoods on an enumerable distribution."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unmask import likelihood
from unmask.exact import ExactDenoiser, random_distribution
from unmask.models import ConditionedDenoiser, ModelConfig, Transformer


@pytest.mark.parametrize("schedule", ["linear", "cosine", "arccos", "logexp"])
def test_exact_denoiser_nelbo_equals_neg_log_prob(tiny, schedule):
    g = torch.Generator().manual_seed(0)
    x = tiny.sample(6, g)
    est = likelihood.nelbo_with_stderr(tiny, x, mask_id=3, schedule=schedule, num_samples=1500,
                                       generator=g)
    target = -tiny.log_prob(x)
    z = (est.nelbo - target) / est.stderr
    assert float(z.abs().max()) < 4.5, (est.nelbo, target, est.stderr)
    # the mean over sequences, with its combined standard error
    zm = float((est.nelbo - target).sum() / est.stderr.pow(2).sum().sqrt())
    assert abs(zm) < 4.0


def test_nelbo_api_shape_and_uniform_denoiser():
    """A uniform denoiser pays log V per masked token: NELBO = L log V for every schedule."""
    V, L = 5, 12
    x = torch.randint(0, V, (4, L), generator=torch.Generator().manual_seed(1))

    def uniform(x_t, t):
        return torch.zeros(*x_t.shape, V)

    est = likelihood.nelbo_with_stderr(uniform, x, mask_id=V, schedule="cosine",
                                       num_samples=2000, generator=torch.Generator().manual_seed(2))
    assert est.nelbo.shape == (4,)
    z = (est.nelbo - L * math.log(V)) / est.stderr
    assert float(z.abs().max()) < 4.5
    assert float(est.stderr.max()) < 0.03 * L * math.log(V)  # finite, shrinking variance
    out = likelihood.nelbo(uniform, x, mask_id=V, schedule="linear", num_samples=8)
    assert out.shape == (4,) and out.dtype == torch.float64


def test_elbo_is_a_bound_for_a_wrong_denoiser(tiny):
    """Any denoiser's NELBO upper-bounds −log p: averaged over the data, the cross-entropy."""
    g = torch.Generator().manual_seed(3)

    def blurred(x_t, t):  # mix the exact conditionals with uniform
        p = tiny(x_t, t).exp()
        return (0.5 * p + 0.5 / 3).log()

    x = tiny.sample(400, g)
    est = likelihood.nelbo(blurred, x, mask_id=3, schedule="linear", num_samples=20, generator=g)
    assert float(est.mean()) > float(-tiny.log_prob(x).mean()) + 0.1


def test_perplexity_and_bits():
    nats = torch.tensor([10.0, 14.0])
    assert likelihood.perplexity(nats, 4) == pytest.approx(math.exp(3.0))
    assert likelihood.bits_per_token(nats, 4) == pytest.approx(3.0 / math.log(2))


# --- MC samples batched with per-row labels (issue 17: evaluate crashed for n < batch_size) ---

_V, _L, _C = 3, 3, 2  # 27 sequences, two classes + the null class (index _C)


class _ExactClassModel:
    """``model(x_t, t, y)``: the exact conditional denoiser of p(x | y) per row (the class-``y``
    table for y < C, the class mixture p(x) = mean_y p(x | y) for the null class C).

    Like :class:`~unmask.models.Transformer` it needs one label per row of ``x_t``."""

    null_class = _C
    time_conditioned = False

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(7)
        uniform = torch.full((_V**_L,), 1.0 / _V**_L, dtype=torch.float64)
        # Peaked classes (small Dirichlet α) that differ a lot; 5% uniform keeps every
        # conditional >= ~0.002: bounded per-token losses, tight MC.
        tables = [0.95 * random_distribution(_V, _L, generator=g, concentration=0.1)
                  + 0.05 * uniform for _ in range(_C)]
        tables.append(torch.stack(tables).mean(0))
        self.exact = [ExactDenoiser(p, _V, _L) for p in tables]

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.shape != (x_t.shape[0],):
            raise ValueError(f"y: expected {x_t.shape[0]} labels, got shape {tuple(y.shape)}")
        out = torch.empty(*x_t.shape, _V, dtype=torch.float64)
        for c, den in enumerate(self.exact):
            rows = y == c
            if rows.any():
                out[rows] = den(x_t[rows])
        return out

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """log p(x | y) per row (the mixture for y None)."""
        if y is None:
            return self.exact[_C].log_prob(x)
        return torch.stack([self.exact[int(c)].log_prob(x[i:i + 1])[0] for i, c in enumerate(y)])


def _evaluate_loop(den_of, x, y, *, batch_size, num_samples, max_batch, schedule, seed):
    """NELBO per sequence as the evaluate stage computes it: sequences in batches of
    ``batch_size``, each batch's labels bound in the denoiser ``den_of(labels)``."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        yb = y[i:i + batch_size] if y is not None else None
        out.append(likelihood.nelbo_with_stderr(
            den_of(yb), x[i:i + batch_size], mask_id=_V, schedule=schedule,
            num_samples=num_samples, generator=g, max_batch=max_batch).nelbo)
    return torch.cat(out)


def _max_z(den_of, model, x, y, *, draws=200, **kw):
    """Largest |z| over the sequences of (mean NELBO over independent repeats − (−log p(x|y)))
    / its standard error: ~N(0, 1) for an unbiased estimator of the right conditional."""
    reps = max(24, draws // kw["num_samples"])
    runs = torch.stack([_evaluate_loop(den_of, x, y, seed=r, **kw) for r in range(reps)])
    mean, se = runs.mean(0), runs.std(0) / math.sqrt(reps)
    return float(((mean + model.log_prob(x, y)) / se.clamp_min(1e-9)).abs().max())


@pytest.fixture(scope="module")
def class_model():
    return _ExactClassModel()


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_sequences=st.integers(1, 6), num_samples=st.integers(1, 5),
       batch_size=st.integers(1, 7), max_batch=st.integers(1, 16), labelled=st.booleans(),
       schedule=st.sampled_from(["linear", "cosine"]))
def test_batched_mc_samples_keep_each_rows_label(class_model, n_sequences, num_samples,
                                                 batch_size, max_batch, labelled, schedule):
    """Fuzz over the sizes that decide how MC samples are batched (k = max_batch // rows
    per call, the last batch smaller): the NELBO of every sequence equals −log p(x | y) of its
    own label (or of the class mixture without labels), within MC error."""
    g = torch.Generator().manual_seed(n_sequences * 100 + batch_size)
    y = torch.randint(0, _C, (n_sequences,), generator=g)
    x = torch.stack([class_model.exact[int(c)].sample(1, g)[0] for c in y])
    z = _max_z(lambda yb: ConditionedDenoiser(class_model, yb), class_model, x,
               y if labelled else None, batch_size=batch_size, num_samples=num_samples,
               max_batch=max_batch, schedule=schedule)
    assert z < 5.0, z


def test_the_label_check_detects_misrouted_labels(class_model):
    """The statistic above has power: labels repeated in the wrong order across the batched
    MC samples (``repeat_interleave`` instead of the rows' ``repeat``) are caught."""

    class Interleaved(ConditionedDenoiser):
        def select_rows(self, idx):
            k = len(idx) // len(self.y)
            return ConditionedDenoiser(self.model, self.y.repeat_interleave(k), self.null_label)

    y = torch.tensor([0, 1, 1, 0])
    g = torch.Generator().manual_seed(3)
    x = torch.stack([class_model.exact[int(c)].sample(1, g)[0] for c in y])
    kw = dict(batch_size=4, num_samples=4, max_batch=16, schedule="linear")
    assert _max_z(lambda yb: ConditionedDenoiser(class_model, yb), class_model, x, y, **kw) < 5
    assert _max_z(lambda yb: Interleaved(class_model, yb), class_model, x, y, draws=960,
                  **kw) > 10


def test_transformer_labels_repeat_per_mc_sample():
    """The evaluate stage's case (issue 17): 20 labelled sequences, 4 MC samples, the default
    max_batch 256, so the 4 samples go through the Transformer in one call of 80 rows. The
    result equals the same estimate with the labels repeated by hand (row r ↔ label r mod 20),
    and a label count that matches no batch is a one-line error naming ``y``."""
    V, L, n = 7, 6, 20
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=V, seq_len=L, dim=32, depth=1, heads=2,
                                    num_classes=3)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # off the zero init: labels change the logits
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = torch.randint(0, V, (n, L), generator=g)
    y = torch.randint(0, 3, (n,), generator=g)

    def by_hand(x_t, t):
        return model(x_t, t, y.repeat(x_t.shape[0] // n))

    kw = dict(mask_id=V, schedule="cosine", num_samples=4)
    got = likelihood.nelbo(ConditionedDenoiser(model, y), x,
                           generator=torch.Generator().manual_seed(5), **kw)
    ref = likelihood.nelbo(by_hand, x, generator=torch.Generator().manual_seed(5), **kw)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    null = likelihood.nelbo(ConditionedDenoiser(model), x,
                            generator=torch.Generator().manual_seed(5), **kw)
    assert float((got - null).abs().max()) > 1e-3  # the labels were used
    with pytest.raises(ValueError, match=r"y: expected 80 labels .* got shape \(20,\)"):
        model(torch.full((80, L), V), torch.rand(80), y)


def test_evaluate_stage_nelbo_with_the_default_params_and_few_sequences():
    """The crash as reported: the evaluate stage's NELBO with the default params.yaml
    (batch_size 250, num_samples 4) on 20 labelled sequences; labels change the result."""
    from pathlib import Path

    from unmask.config import load_params
    from unmask.stages.evaluate import nelbo_bits

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml",
                         {"evaluate.n_sequences": 20})
    ev = params.evaluate
    assert ev.batch_size > 20 and ev.num_samples > 1  # several MC samples share one call
    V, L = 7, 6
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=V, seq_len=L, dim=32, depth=1, heads=2,
                                    num_classes=3)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    x = torch.randint(0, V, (20, L), generator=g)
    y = torch.randint(0, 3, (20,), generator=g)
    bpt, se = nelbo_bits(model, x, y, params)
    bpt_u, _ = nelbo_bits(model, x, None, params)
    assert math.isfinite(bpt) and math.isfinite(se) and bpt > 0
    assert bpt != pytest.approx(bpt_u, rel=1e-6)
