"""MDM-Prime: masked diffusion with partial masking over base-b sub-tokens (Chao et al. 2025).

* :mod:`~unmask.prime.subtokens` — the invertible base-b sub-tokenizer (MDM-Prime §3.1) and
  the validity filter of the joint parameterisation (eq. 7);
* :mod:`~unmask.prime.model` — the sub-token denoiser around the foundation transformer trunk;
* :mod:`~unmask.prime.rotary` — rotary position embeddings (MDLM's positions, ``rotary: true``);
* :mod:`~unmask.prime.likelihood` — the continuous-time sub-token ELBO (derived there; not
  eq. 5's estimator), perplexity;
* :mod:`~unmask.prime.sampling` — partial-unmasking samplers and the idle-step ratio;
* :mod:`~unmask.prime.exact` — the exact sub-token denoiser of a tiny distribution (tests);
* :mod:`~unmask.prime.config`, :mod:`~unmask.prime.data` — params schema, data preparation;
* :mod:`~unmask.prime.pipeline`, :mod:`~unmask.prime.evaluation`, :mod:`~unmask.prime.compare`,
  :mod:`~unmask.prime.seeds` — train / evaluate one ℓ, the ℓ comparison, seed repeats;
* :mod:`~unmask.prime.stages` — the ``prime.*`` stages, one module each (``python -m
  unmask.stages prime.train --ell 2``).
"""

from unmask.prime.likelihood import SubTokenMarginals, flat_subtokens, prime_nelbo
from unmask.prime.model import (
    PRESETS,
    JointView,
    PrimeConfig,
    PrimeTransformer,
    load_prime_model,
    save_prime_model,
)
from unmask.prime.sampling import (
    PrimeSampleResult,
    expected_isr,
    expected_isr_token,
    sample_prime,
)
from unmask.prime.subtokens import SubTokenCodec, SubTokenView

__all__ = [
    "SubTokenCodec",
    "SubTokenView",
    "PrimeConfig",
    "PrimeTransformer",
    "JointView",
    "PRESETS",
    "save_prime_model",
    "load_prime_model",
    "SubTokenMarginals",
    "flat_subtokens",
    "prime_nelbo",
    "PrimeSampleResult",
    "sample_prime",
    "expected_isr",
    "expected_isr_token",
]
