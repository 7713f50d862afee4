"""Fuzzing the parsers of user-supplied files with hypothesis (bounded: a few hundred examples
in all, no deadline): params files (:func:`unmask.config.load_params`), token-shard manifests
(:class:`unmask.data.shards.TokenShards`) and dataset index files (ImageNet's synset mapping
and validation labels, COCO's caption json). Whatever the bytes, the parser either succeeds or
raises its documented one-line error naming the file — never anything else."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import REPO

from unmask.config import ConfigError, load_params
from unmask.data.errors import CorruptFileError, DatasetLayoutError
from unmask.data.shards import MANIFEST, ShardError, ShardWriter, TokenShards

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)
    ),
    max_leaves=12,
)


def _one_line(err: BaseException, *needles: str) -> None:
    msg = " ".join(str(err).split())
    assert msg, type(err)
    for n in needles:
        assert n in str(err), (n, str(err))


# -- params -----------------------------------------------------------------------------------

REAL = yaml.safe_load((REPO / "params.yaml").read_text())
SECTIONS = sorted(REAL)
KEYS = sorted({k for s in REAL.values() if isinstance(s, dict) for k in s})


def _mutated_params():
    """The real params with random sections / keys replaced, added or deleted."""
    edit = st.tuples(
        st.sampled_from(SECTIONS + ["bogus"]), st.sampled_from(KEYS + ["bogus_key"]), json_values
    )
    return st.lists(edit, max_size=4).map(_apply_edits)


def _apply_edits(edits) -> dict:
    doc = json.loads(json.dumps(REAL))
    for section, key, value in edits:
        if isinstance(doc.get(section), dict) and value is None:
            doc[section].pop(key, None)
        elif isinstance(doc.get(section), dict):
            doc[section][key] = value
        else:
            doc[section] = value
    return doc


@FUZZ
@given(doc=st.one_of(_mutated_params(), json_values))
def test_fuzz_params_structure(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("p") / "params.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    try:
        load_params(path)
    except ConfigError as e:
        _one_line(e, "params.yaml")


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))
    )
)
def test_fuzz_params_raw_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("p") / "params.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_params(path, ["train.steps=3"])
    except ConfigError as e:
        _one_line(e, "params.yaml")


# -- shard manifests ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_shard(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("shard") / "shard"
    with ShardWriter(
        path,
        count=6,
        shape=(2, 3),
        vocab_size=9,
        labels=True,
        tokenizer={"identity": "t", "hash": "h"},
    ) as w:
        w.write(np.arange(36).reshape(6, 2, 3) % 9, np.arange(6) % 3)
    return path


def _paths(manifest):
    """Every (path of keys) in a nested manifest, to pick one to replace."""
    out = [()]
    if isinstance(manifest, dict):
        for k, v in manifest.items():
            out += [(k, *p) for p in _paths(v)]
    return out


@FUZZ
@given(data=st.data())
def test_fuzz_shard_manifest(tmp_path_factory, good_shard, data):
    manifest = json.loads((good_shard / MANIFEST).read_text())
    target = data.draw(st.sampled_from(_paths(manifest)[1:]), label="key path")
    value = data.draw(
        st.one_of(json_values, st.just("../../outside.npy"), st.just("/etc/passwd")), label="value"
    )
    node = manifest
    for k in target[:-1]:
        node = node[k]
    if data.draw(st.booleans(), label="delete"):
        del node[target[-1]]
    else:
        node[target[-1]] = value
    shard = tmp_path_factory.mktemp("s") / "shard"
    shutil.copytree(good_shard, shard)
    (shard / MANIFEST).write_text(json.dumps(manifest))
    try:
        s = TokenShards(shard, tokenizer_hash="h")
        s.tokens_tensor()
    except ShardError as e:
        _one_line(e, str(shard))


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_shard_manifest_raw(tmp_path_factory, good_shard, text):
    shard = tmp_path_factory.mktemp("s") / "shard"
    shutil.copytree(good_shard, shard)
    (shard / MANIFEST).write_text(text)
    with pytest.raises(ShardError) as e:
        TokenShards(shard)
    _one_line(e.value, str(shard))


# -- dataset index files ------------------------------------------------------------------------

DATA_ERRORS = (CorruptFileError, DatasetLayoutError)


@FUZZ
@given(blob=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_fuzz_imagenet_synset_mapping(tmp_path_factory, blob):
    from unmask.data.imagenet import read_synset_mapping

    path = tmp_path_factory.mktemp("i") / "LOC_synset_mapping.txt"
    path.write_bytes(blob)
    try:
        wnids, names = read_synset_mapping(path)
        assert set(wnids) == set(names)
    except DATA_ERRORS as e:
        _one_line(e, "LOC_synset_mapping.txt")


@FUZZ
@given(
    rows=st.lists(st.lists(st.text(max_size=10), max_size=3), max_size=5),
    header=st.sampled_from(["ImageId,PredictionString", "ImageId", "x,y", ""]),
)
def test_fuzz_imagenet_val_labels(tmp_path_factory, rows, header):
    import csv
    import io

    from unmask.data.imagenet import read_val_labels

    buf = io.StringIO()
    buf.write(header + "\n")
    csv.writer(buf).writerows(rows)
    path = tmp_path_factory.mktemp("i") / "LOC_val_solution.csv"
    path.write_text(buf.getvalue())
    try:
        labels = read_val_labels(path)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    except DATA_ERRORS as e:
        _one_line(e, "LOC_val_solution.csv")


@FUZZ
@given(
    doc=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "images": st.lists(
                    st.dictionaries(
                        st.sampled_from(["id", "file_name", "x"]), json_values, max_size=3
                    ),
                    max_size=3,
                ),
                "annotations": st.lists(
                    st.dictionaries(
                        st.sampled_from(["image_id", "caption"]), json_values, max_size=2
                    ),
                    max_size=3,
                ),
            }
        ),
    )
)
def test_fuzz_coco_captions(tmp_path_factory, doc):
    from unmask.data.coco import read_captions

    path = tmp_path_factory.mktemp("c") / "captions_train2014.json"
    path.write_text(json.dumps(doc))
    try:
        for image_id, name, caps in read_captions(path):
            assert isinstance(image_id, int) and isinstance(name, str) and caps
    except DATA_ERRORS as e:
        _one_line(e, "captions_train2014.json")
