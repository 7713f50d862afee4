"""The FID Inception-v3 TorchScript → torch-fidelity conversion, and the IS weights gate."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from unmask.metrics import as_mlflow_metrics, inception
from unmask.metrics.fidelity import compute_fidelity


@pytest.fixture(scope="module")
def fidelity_extractor(converted_weights: Path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(converted_weights)
    )


def test_conversion_pairs_94_convolutions_with_tf_batchnorm(converted_weights: Path) -> None:
    sd = torch.load(converted_weights, weights_only=False)
    convs = [k for k in sd if k.endswith(".conv.weight")]
    assert len(convs) == 94
    for k in convs:
        p = k[: -len(".conv.weight")]
        c = sd[k].shape[0]
        assert torch.equal(sd[f"{p}.bn.weight"], torch.ones(c))  # TF batch norm has no gamma
        assert sd[f"{p}.bn.bias"].shape == sd[f"{p}.bn.running_var"].shape == (c,)
        assert (sd[f"{p}.bn.running_var"] >= 0).all()
    # no classifier in the TorchScript: fc is NaN so an IS from it can never look plausible
    assert torch.isnan(sd["fc.weight"]).all() and sd["fc.weight"].shape == (1008, 2048)


def test_conversion_is_cached_and_written_atomically(converted_weights: Path) -> None:
    mtime = converted_weights.stat().st_mtime_ns
    again = inception.converted_weights_path(converted_weights.parent)
    assert again == converted_weights and again.stat().st_mtime_ns == mtime
    assert converted_weights.name.startswith("pt_inception-2015-12-05-converted-")
    assert not list(converted_weights.parent.glob("*.tmp"))


def test_fidelity_extractor_reproduces_torchscript_pool3_features(
    fidelity_extractor, fid_torchscript: Path, fmnist: np.ndarray
) -> None:
    """torch-fidelity's extractor (uint8 in, TF1 resize inside) vs the TorchScript fed the same
    TF1-resized images scaled as x/128 - 1: the 2048-d pool3 features agree to ~1e-6."""
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8)
    fm = torch.from_numpy(fmnist[:2]).unsqueeze(1).expand(-1, 3, -1, -1)
    fm = torch.nn.functional.pad(fm, (2, 2, 2, 2))  # 32x32 as well
    x = torch.cat([noise, fm])
    ts = inception.load_fid_torchscript(fid_torchscript)
    with torch.no_grad():
        (ours,) = fidelity_extractor(x)
        resized = interpolate_bilinear_2d_like_tensorflow1x(
            x.float(), size=(299, 299), align_corners=False
        )
        ref = ts(resized / 128.0 - 1.0)
    assert ours.shape == ref.shape == (4, 2048)
    err = (ours - ref).abs().max().item()
    assert err < 1e-4, err
    assert ref.abs().max().item() > 0.1  # non-trivial features
    # the four images are told apart (the comparison could fail)
    assert torch.cdist(ref, ref).fill_diagonal_(1e9).min().item() > 100 * err


def test_inception_score_unavailable_without_the_standard_weights(
    metrics_cache: Path, converted_weights: Path, fmnist: np.ndarray
) -> None:
    out = compute_fidelity(fmnist[:4], None, metrics=("is",), cache_root=metrics_cache,
                           verbose=False)
    assert set(out) == {"inception_score", "inception_score_std"}
    for r in out.values():
        assert not r.available and r.value is None
        assert "1008" in r.reason and "weights-inception-2015-12-05-6726825d.pth" in r.reason
    assert as_mlflow_metrics(out) == {}


def test_standard_weights_are_verified_by_hash(tmp_path: Path, metrics_cache: Path) -> None:
    fake = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    fake.write_bytes(b"not the weights")
    path, reason = inception.find_standard_weights(fake)
    assert path is None and "sha256" in reason
    path, reason = inception.find_standard_weights(tmp_path / "missing.pth")
    assert path is None and "missing.pth" in reason


def test_inception_score_loader_path_with_classifier_weights(
    tmp_path: Path, converted_weights: Path, metrics_cache: Path, fmnist: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real IS path: a weights file accepted by the hash gate feeds torch-fidelity's 1008-way
    logits. With a zero classifier p(y|x) is uniform, so IS is exactly 1 (independent of images)."""
    sd = torch.load(converted_weights, weights_only=False)
    sd["fc.weight"] = torch.zeros(1008, 2048)
    sd["fc.bias"] = torch.zeros(1008)
    fake = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(sd, fake)
    monkeypatch.setattr(
        inception, "STANDARD_WEIGHTS_SHA256_PREFIX", inception.file_sha256(fake)[:8]
    )
    monkeypatch.setenv("UNMASK_INCEPTION_WEIGHTS", os.fspath(fake))
    out = compute_fidelity(fmnist[:6], None, metrics=("is",), isc_splits=2,
                           cache_root=metrics_cache, verbose=False, batch_size=6)
    r = out["inception_score"]
    assert r.available and r.params["weights"] == "standard"
    assert r.value == pytest.approx(1.0, abs=1e-6)
    assert out["inception_score_std"].value == pytest.approx(0.0, abs=1e-6)
