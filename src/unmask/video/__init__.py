"""Video models (Discrete Interpolants §4.2.1, Table 5: FaceForensics, DMLab).

A clip of T frames is tokenised frame by frame with an image tokenizer into a (T, h, w) grid,
flattened frame-major; the :class:`~unmask.models.Transformer` with ``frames = T`` attends fully
(space and time positional embeddings) or factorised (Latte: alternating spatial / temporal
blocks). Unconditional generation starts from all [MASK]; frame-conditioned prediction gives
the first k frames through ``x_init`` (:func:`sample_video`). Samples decode back to frames and
export as GIF / MP4 (:mod:`unmask.video.export`). Its stages (``video.tokenize``,
``video.train``, ``video.evaluate``: ``python -m unmask.stages video.train``,
:mod:`unmask.video.stages`) run ``pipelines/video-default``, ``pipelines/faceforensics`` and
``pipelines/dmlab``.
"""

from unmask.video.export import frames_grid, save_gif, save_mp4
from unmask.video.sampling import sample_video, video_x_init

__all__ = ["sample_video", "video_x_init", "save_gif", "save_mp4", "frames_grid"]
