"""unmask: masked discrete generative models (masked diffusion, MaskGIT, discrete interpolants).

Conventions used throughout: t = 0 is all [MASK], t = 1 is data; κ_t = P(token clean at t);
clean token ids are 0..V−1 and the mask id is V; a denoiser is any callable
``denoiser(x_t: LongTensor[B, L], t: FloatTensor[B]) -> FloatTensor[B, L, V]`` (logits).
"""

__version__ = "0.1.0"
