"""Samplers for masked discrete generative models.

``sample(denoiser, ...)`` runs one of

* ``euler``          — DI Algorithm 1 (Euler step of the reverse CTMC, final argmax);
* ``mdm``            — eMIGM eq. 6 (the masked path's exact step marginal, "ancestral");
* ``maskgit``        — confidence-ordered unmasking with annealed Gumbel noise (MaskGIT);
* ``first_hitting``  — exact simulation, one token per network evaluation (``steps`` unused);

all under one interface: temperature and top-p on the logits, classifier-free guidance with a
``constant`` / ``linear`` / ``interval`` schedule, ``x_init`` for conditional generation
(its non-mask positions stay fixed), and optional trajectories for chain figures.

Network evaluations are skipped when they cannot change the result, per row of the batch:
a step evaluates only the rows in which some token may change (for any model), and an
implicit-timestep (ITM, ``time_conditioned = False``) denoiser is evaluated only on rows whose
state changed since their last evaluation — the changed rows are gathered into a sub-batch,
evaluated, and scattered back (:class:`~unmask.sampling.common.Evaluator`). So an ITM row
costs at most min(steps, L) evaluations, however many steps are run. Explicit-timestep (ETM)
models depend on t and are re-evaluated at every step on the rows that change. Samples are
bit-identical to ``cache=False`` with the same generator (for a row-independent denoiser);
``nfe`` is the max over rows of the per-row evaluations, ``nfe_mean`` their mean.
Sub-batching needs a denoiser that supports row subsets (``select_rows`` or
``row_independent``); others are evaluated on the whole batch.
"""

from unmask.runtime import lazy_exports

#: the sampler methods ``sample`` accepts (params validate ``sample.method`` against these)
METHODS = ("euler", "mdm", "maskgit", "first_hitting")

# the sampler loads on first use (unmask.runtime.lazy_exports): the params schema needs only
# METHODS, so reading params does not depend on sampler code
_LAZY = {
    "unmask.sampling.common": ("Guidance", "process_logits"),
    "unmask.sampling.sampler": ("SampleResult", "sample", "sample_with_info"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["METHODS", "SampleResult", "sample", "sample_with_info", "process_logits", "Guidance"]
