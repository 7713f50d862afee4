"""Video models (Discrete Interpolants §4.2.1, Table 5: FaceForensics, DMLab).

A clip of T frames is tokenised frame by frame with an image tokenizer into a (T, h, w) grid,
flattened frame-major; the :class:`~unmask.models.Transformer` with ``frames = T`` attends fully
(space and time positional embeddings) or factorised (Latte: alternating spatial / temporal
blocks). Unconditional generation starts from all [MASK]; frame-conditioned prediction gives
the first k frames through ``x_init`` (:func:`sample_video`). Samples decode back to frames and
export as GIF / MP4 (:mod:`unmask.video.export`). Its stages (``video.tokenize``,
``video.train``, ``video.evaluate``: ``python -m unmask.stages video.train``,
:mod:`unmask.video.stages`, params :mod:`unmask.video.params`) run
``pipelines/video-default``, ``pipelines/faceforensics`` and ``pipelines/dmlab``.
"""

from unmask.runtime import lazy_exports

# loaded on first use, so that a stage importing one video module (e.g. video.tokenize → clips)
# does not load — nor, in ``unmask dvc deps``, depend on — the sampler and exporters
_LAZY = {
    "unmask.video.export": ["frames_grid", "save_gif", "save_mp4"],
    "unmask.video.sampling": ["sample_video", "video_x_init"],
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [name for names in _LAZY.values() for name in names]
