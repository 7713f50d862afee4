"""MDM-Prime: masked diffusion with partial masking over base-b sub-tokens (Chao et al. 2025).

* :mod:`~unmask.prime.subtokens` — the invertible base-b sub-tokenizer and the validity filter
  of the joint parameterisation (MDM-Prime eqs. 3, 7);
* :mod:`~unmask.prime.model` — the sub-token denoiser around the foundation transformer trunk;
* :mod:`~unmask.prime.rotary` — rotary position embeddings (MDLM's positions, ``rotary: true``);
* :mod:`~unmask.prime.likelihood` — the sub-token ELBO (eq. 6, derived there), perplexity;
* :mod:`~unmask.prime.sampling` — partial-unmasking samplers and the idle-step ratio;
* :mod:`~unmask.prime.exact` — the exact sub-token denoiser of a tiny distribution (tests);
* :mod:`~unmask.prime.stages` — the pipeline stages (text, OpenWebText, pixel tokens);
* :mod:`~unmask.prime.seeds` — seed repeats of the ℓ comparison (mean ± std, paired t).
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
