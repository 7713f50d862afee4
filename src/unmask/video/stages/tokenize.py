"""``python -m unmask.stages video.tokenize``: cut clips of ``data.frames`` frames
(:func:`~unmask.video.clips.load_clips`), fit or load the image tokenizer and encode every
frame → ``tokens/{tokens.npz, meta.json, vq.pt}`` (pre-extracted tokens (N, T, h, w))."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from unmask import pretokenized as tp
from unmask.runtime import write_timings
from unmask.stages import stage
from unmask.video.clips import load_clips
from unmask.video.params import TASK_TAG, VideoParams

__all__ = ["run_tokenize"]


@stage("video.tokenize", params=VideoParams)
def run_tokenize(p: VideoParams) -> dict[str, Any]:
    """Cut the clips, fit or load the image tokenizer, store every frame's tokens."""
    t0 = time.perf_counter()
    skipped: list[dict[str, str]] = []
    train_clips, test_clips = (load_clips(p.data, "train", skipped),
                               load_clips(p.data, "test", skipped))
    frames = train_clips.reshape(-1, *train_clips.shape[2:])
    tok, tok_meta = tp.fit_tokenizer(p.tokenizer, frames, tp.TOKENS)

    def encode(clips: np.ndarray) -> np.ndarray:
        flat = clips.reshape(-1, *clips.shape[2:])
        ids = (tok.encode(flat) if p.tokenizer.kind == "pixel"
               else tok.encode(flat, batch_size=p.tokenizer.batch_size))
        return ids.numpy().astype(np.int32).reshape(len(clips), clips.shape[1], *ids.shape[1:])

    tr, te = encode(train_clips), encode(test_clips)
    meta = {"tokenizer": tok_meta, "vocab_size": int(tok.vocab_size), "frames": tr.shape[1],
            "grid": list(tr.shape[2:]), "counts": {"train": len(tr), "test": len(te)},
            "frame_shape": list(test_clips.shape[2:]), "num_skipped": len(skipped),
            "skipped": skipped}
    seconds = round(time.perf_counter() - t0, 1)
    write_timings(tp.TIMINGS / "tokenize.json", {"seconds": seconds})
    tp.finish_tokenize(p, TASK_TAG, meta, train=tr, test=te, test_raw=test_clips)
    print(f"tokenize: {meta['counts']} clips of {meta['frames']} frames "
          f"({len(skipped)} bad files skipped), tokens/frame "
          f"{meta['grid']} (V = {meta['vocab_size']}), {seconds}s → {tp.TOKENS}")
    return meta
