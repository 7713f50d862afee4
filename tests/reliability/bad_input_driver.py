"""Bad-input cases that have no console command of their own, run through the real stage entry
point :func:`unmask.stages.main` (``--params`` parsing, typed params, the user-error handler
that every ``python -m unmask.stages.<name>`` uses).

    python bad_input_driver.py CASE WORKDIR [--params FILE]

Each case builds its bad input in WORKDIR and runs the library call a stage would make.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch


def _denoiser(vocab: int):
    return lambda x, t: torch.zeros(*x.shape, vocab)


def x_init_out_of_vocab(work: Path) -> None:
    from unmask.sampling import sample

    x_init = torch.full((2, 4), 4, dtype=torch.long)
    x_init[1, 2] = 99  # not a clean id (0..3) nor the mask id (4)
    sample(_denoiser(4), batch_size=2, seq_len=4, mask_id=4, steps=2, x_init=x_init)


def likelihood_out_of_vocab(work: Path) -> None:
    from unmask.likelihood import nelbo

    x0 = torch.tensor([[0, 1, 2, 3], [0, 1, 7, 3]])
    nelbo(_denoiser(4), x0, mask_id=4, schedule="linear", num_samples=2)


def imagenet_wrong_layout(work: Path) -> None:
    from unmask.data.imagenet import ImageNet

    (work / "imagenet" / "images").mkdir(parents=True)  # flat folder, no train/<wnid>/
    (work / "imagenet" / "images" / "a.JPEG").write_bytes(b"x")
    ImageNet(work / "imagenet", split="train")


def image_does_not_decode(work: Path) -> None:
    from PIL import Image

    from unmask.data.imagenet import ImageNet

    d = work / "imagenet" / "train" / "n01440764"
    d.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "n01440764_1.JPEG")
    (d / "n01440764_2.JPEG").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    for _ in ImageNet(work / "imagenet", split="train", image_size=8, on_error="raise"):
        pass


def video_too_short(work: Path) -> None:
    import imageio_ffmpeg

    from unmask.data.faceforensics import FaceForensics

    d = work / "ff" / "original_sequences" / "youtube" / "c23" / "videos"
    d.mkdir(parents=True)
    w = imageio_ffmpeg.write_frames(
        str(d / "000.mp4"),
        (32, 32),
        fps=25,
        codec="libx264",
        macro_block_size=16,
        quality=None,
        output_params=["-crf", "0"],
    )
    w.send(None)
    for i in range(5):
        w.send(np.full((32, 32, 3), 10 * i, np.uint8).tobytes())
    w.close()
    for _ in FaceForensics(work / "ff", clip_length=16, size=None, on_error="raise"):
        pass


def shard_hash_mismatch(work: Path) -> None:
    from unmask.data.shards import ShardWriter, TokenShards

    path = work / "shard"
    with ShardWriter(
        path,
        count=8,
        shape=(4,),
        vocab_size=5,
        labels=False,
        tokenizer={"identity": "t", "hash": "t"},
    ) as w:
        w.write(np.arange(32).reshape(8, 4) % 5)
    data = max((p for p in path.iterdir() if p.suffix != ".json"), key=lambda p: p.stat().st_size)
    blob = bytearray(data.read_bytes())
    blob[-1] ^= 0x01  # one flipped bit in the token data
    data.write_bytes(bytes(blob))
    TokenShards(path).tokens_tensor()


CASES = {
    f.__name__: f
    for f in (
        x_init_out_of_vocab,
        likelihood_out_of_vocab,
        imagenet_wrong_layout,
        image_does_not_decode,
        video_too_short,
        shard_hash_mismatch,
    )
}


if __name__ == "__main__":
    from unmask import stages
    from unmask.config import Params

    case, work, *rest = sys.argv[1:]
    stages.stage(case, params=Params)(lambda params: CASES[case](Path(work)))
    stages.main([case, *rest])
