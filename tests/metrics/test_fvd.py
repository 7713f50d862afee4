"""FVD: the I3D TorchScript loader and calling convention on a tiny stand-in the test scripts
itself, the unavailable path, the reference cache, and per-frame FID under its own name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from unmask.metrics import as_mlflow_metrics, as_mlflow_params
from unmask.metrics.fvd import compute_fvd, load_i3d, per_frame_fid, videos_to_i3d_input


class TinyI3D(torch.nn.Module):
    """Same call signature as StyleGAN-V's i3d_torchscript.pt; refuses any other convention."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 6, kernel_size=3, padding=1)
        self.proj = torch.nn.Parameter(torch.randn(6 * 8, 12, generator=g))

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        torch._assert(not rescale, "FVD calls the I3D with rescale=False")
        torch._assert(resize, "FVD calls the I3D with resize=True")
        torch._assert(x.dim() == 5 and x.shape[1] == 3, "expects [N, 3, T, H, W]")
        torch._assert(bool(x.min() >= -1.0) and bool(x.max() <= 1.0), "expects [-1, 1]")
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 16, 16), mode="trilinear", align_corners=False)
        h = torch.tanh(self.conv(x))
        h = F.adaptive_avg_pool3d(h, (2, 2, 2)).flatten(1)  # [N, 48]
        feats = h @ self.proj
        if return_features:
            return feats
        return torch.softmax(feats, dim=1)


@pytest.fixture(scope="module")
def i3d_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        torch.jit.script(TinyI3D().eval()).save(str(p))
    return p


def make_videos(n: int, seed: int, t: int = 6, hw: int = 20, noise: float = 0.0) -> np.ndarray:
    """uint8 [N, T, H, W, 3]: a bright square moving with a random velocity on a dark field."""
    rng = np.random.default_rng(seed)
    v = np.zeros((n, t, hw, hw, 3), np.float64)
    for i in range(n):
        y, x = rng.integers(0, hw - 6, 2)
        dy, dx = rng.integers(-2, 3, 2)
        colour = rng.uniform(120, 255, 3)
        for f in range(t):
            yy, xx = int(np.clip(y + dy * f, 0, hw - 6)), int(np.clip(x + dx * f, 0, hw - 6))
            v[i, f, yy : yy + 6, xx : xx + 6] = colour
    v += rng.normal(0, noise, v.shape) if noise else 0.0
    return np.clip(v, 0, 255).round().astype(np.uint8)


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    d = mu1 - mu2
    return float(np.real(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def test_fvd_uses_the_i3d_convention_and_the_frechet_distance(i3d_path: Path,
                                                               metrics_cache: Path) -> None:
    gen, ref = make_videos(24, seed=1, noise=30.0), make_videos(24, seed=2)
    res = compute_fvd(gen, ref, i3d_path=i3d_path, cache_root=metrics_cache, batch_size=5)
    assert res.available and res.name == "fvd"
    # independent: load the TorchScript directly, feed [N, 3, T, H, W] in [-1, 1], scipy sqrtm
    model = load_i3d(i3d_path)
    to_input = lambda v: torch.from_numpy(v).permute(0, 4, 1, 2, 3).double().div(127.5).sub(1)  # noqa: E731
    with torch.no_grad():
        fg = model(to_input(gen).float(), rescale=False, resize=True, return_features=True)
        fr = model(to_input(ref).float(), rescale=False, resize=True, return_features=True)
    assert res.value == pytest.approx(scipy_fd(fg.double().numpy(), fr.double().numpy()), rel=1e-5)
    assert res.params["num_videos"] == 24 and res.params["num_frames"] == 6
    assert res.params["feature_dim"] == 12
    same = compute_fvd(ref, ref, i3d_path=i3d_path, cache_root=metrics_cache)
    assert abs(same.value) < 1e-6 * max(1.0, res.value)
    assert res.value > 1e-3


def test_fvd_reference_features_are_cached_by_key(i3d_path: Path, metrics_cache: Path) -> None:
    gen, ref = make_videos(16, seed=3, noise=20.0), make_videos(16, seed=4)
    first = compute_fvd(gen, ref, i3d_path=i3d_path, reference_key="mmnist-test-abc",
                        cache_root=metrics_cache)
    again = compute_fvd(gen, "mmnist-test-abc", i3d_path=i3d_path, cache_root=metrics_cache)
    assert again.value == pytest.approx(first.value, rel=1e-12)
    assert again.params["reference"] == "mmnist-test-abc" and again.params["num_reference"] == 16
    with pytest.raises(FileNotFoundError):
        compute_fvd(gen, "never-cached", i3d_path=i3d_path, cache_root=metrics_cache)
    with pytest.raises(ValueError, match="key must change"):
        compute_fvd(gen, ref[:8], i3d_path=i3d_path, reference_key="mmnist-test-abc",
                    cache_root=metrics_cache)


def test_fvd_unavailable_without_the_i3d_checkpoint(tmp_path: Path, metrics_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNMASK_I3D_PATH", raising=False)
    v = make_videos(4, seed=0)
    res = compute_fvd(v, v, cache_root=metrics_cache)
    assert not res.available and res.value is None and "I3D" in res.reason
    assert as_mlflow_metrics(res) == {}
    assert as_mlflow_params(res)["fvd.available"] == "False"
    missing = compute_fvd(v, v, i3d_path=tmp_path / "nope.pt", cache_root=metrics_cache)
    assert not missing.available and "nope.pt" in missing.reason
    with pytest.raises(FileNotFoundError):
        load_i3d(tmp_path / "nope.pt")


def test_video_layouts() -> None:
    v = make_videos(2, seed=0, t=3, hw=8)
    x = videos_to_i3d_input(v)
    assert x.shape == (2, 3, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    tchw = torch.from_numpy(v).permute(0, 1, 4, 2, 3)
    assert torch.equal(videos_to_i3d_input(tchw), x)
    gray = videos_to_i3d_input(v[..., 0])
    assert gray.shape == (2, 3, 3, 8, 8) and torch.equal(gray[:, 0], gray[:, 2])


def test_per_frame_fid_has_its_own_name(metrics_cache: Path, converted_weights: Path,
                                        fmnist: np.ndarray) -> None:
    # 3 grayscale "videos" of 3 Fashion-MNIST frames each, against themselves: ~0
    videos = fmnist[:9].reshape(3, 3, 28, 28)
    res = per_frame_fid(videos, videos, cache_root=metrics_cache, verbose=False, batch_size=9)
    assert res.name == "fid_per_frame" and res.available
    assert abs(res.value) < 1e-2
    assert res.params["num_samples"] == 9 and res.params["frame_stride"] == 1
    assert set(as_mlflow_metrics(res)) == {"fid_per_frame"}
