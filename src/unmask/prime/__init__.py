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

from unmask.runtime import lazy_exports

# loaded on first use, so that a stage importing one prime module (e.g. prime.prepare → data)
# does not load — nor, in ``unmask dvc deps``, depend on — the model and samplers
_LAZY = {
    "unmask.prime.subtokens": ["SubTokenCodec", "SubTokenView"],
    "unmask.prime.model": ["PrimeConfig", "PrimeTransformer", "JointView", "PRESETS",
                           "save_prime_model", "load_prime_model"],
    "unmask.prime.likelihood": ["SubTokenMarginals", "flat_subtokens", "prime_nelbo"],
    "unmask.prime.sampling": ["PrimeSampleResult", "sample_prime", "expected_isr",
                              "expected_isr_token"],
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [name for names in _LAZY.values() for name in names]
