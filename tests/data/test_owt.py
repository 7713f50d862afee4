"""OpenWebText loader: .txt/.xz folders (incl. the original xz-tar subsets), save_to_disk
datasets, MDLM splits and wrapped GPT-2 blocks."""

from __future__ import annotations

import io
import json
import lzma
import tarfile
from pathlib import Path

import numpy as np
import pytest

from unmask.data.errors import CorruptFileError, DatasetLayoutError
from unmask.data.owt import OpenWebText, datasets_available, iter_xz_documents
from unmask.tokenizers.bpe import GPT2BPE, pack_wrapped

TAR_DOCS = {f"0{i}-abc{i}.txt": f"Subset document {i}. " * (40 + i) for i in range(3)}


def _xz_tar(path: Path, docs: dict[str, str]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in docs.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(lzma.compress(buf.getvalue()))


def _folder(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("First plain document.\n")
    (root / "sub" / "b.txt").write_text("Second, with unicode: café.\n")
    (root / "single.xz").write_bytes(lzma.compress(b"One short compressed document."))
    _xz_tar(root / "urlsf_subset00-1_data.xz", TAR_DOCS)


def test_folder_of_txt_xz_and_xz_tar_subsets(tmp_path: Path) -> None:
    _folder(tmp_path)
    docs = list(OpenWebText(tmp_path))
    assert [d["key"] for d in docs] == [
        "a.txt",
        "single.xz",
        "sub/b.txt",
        *[f"urlsf_subset00-1_data.xz:{n}" for n in TAR_DOCS],
    ]
    assert docs[1]["text"] == "One short compressed document."
    assert docs[3]["text"] == TAR_DOCS["00-abc0.txt"]


def test_corrupt_files_are_named_and_skipped(tmp_path: Path) -> None:
    _folder(tmp_path)
    data = (tmp_path / "urlsf_subset00-1_data.xz").read_bytes()
    (tmp_path / "zz_truncated.xz").write_bytes(data[: len(data) // 2])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "garbage.xz").write_bytes(b"not xz at all")
    ds = OpenWebText(tmp_path)
    keys = [d["key"] for d in ds]
    assert len(keys) == 6 + sum(k.startswith("zz_truncated.xz:") for k in keys)
    assert sorted(Path(s.path).name for s in ds.skipped) == [
        "garbage.xz",
        "latin1.txt",
        "zz_truncated.xz",
    ]
    with pytest.raises(CorruptFileError, match="garbage.xz"):
        list(iter_xz_documents(tmp_path / "garbage.xz"))


def test_mdlm_train_valid_split(tmp_path: Path) -> None:
    _folder(tmp_path)
    all_keys = [d["key"] for d in OpenWebText(tmp_path)]
    train = [d["key"] for d in OpenWebText(tmp_path, "train", valid_docs=2)]
    valid = [d["key"] for d in OpenWebText(tmp_path, "valid", valid_docs=2)]
    assert train == all_keys[:-2] and valid == all_keys[-2:]


def _arrow_dataset(path: Path, texts: list[str], per_file: int = 2) -> None:
    """A `Dataset.save_to_disk` folder: Arrow *stream* files + state.json."""
    import pyarrow as pa

    path.mkdir(parents=True)
    chunks = [texts[i : i + per_file] for i in range(0, len(texts), per_file)]
    files = []
    for j, chunk in enumerate(chunks):
        name = f"data-{j:05d}-of-{len(chunks):05d}.arrow"
        table = pa.table({"text": chunk})
        with pa.OSFile(str(path / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        files.append({"filename": name})
    state = {
        "_data_files": files,
        "_fingerprint": "x",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (path / "state.json").write_text(json.dumps(state))
    (path / "dataset_info.json").write_text(
        json.dumps({"features": {"text": {"dtype": "string", "_type": "Value"}}})
    )


def test_save_to_disk_read_with_pyarrow(tmp_path: Path) -> None:
    texts = [f"arrow doc {i}" for i in range(5)]
    _arrow_dataset(tmp_path / "ds", texts)
    assert [d["text"] for d in OpenWebText(tmp_path / "ds", use_datasets=False)] == texts
    (tmp_path / "dd").mkdir()
    _arrow_dataset(tmp_path / "dd" / "train", texts[:3])
    _arrow_dataset(tmp_path / "dd" / "validation", texts[3:])
    (tmp_path / "dd" / "dataset_dict.json").write_text(
        json.dumps({"splits": ["train", "validation"]})
    )
    got = OpenWebText(tmp_path / "dd", hf_split="validation", use_datasets=False)
    assert [d["text"] for d in got] == texts[3:]
    with pytest.raises(DatasetLayoutError, match="no split 'test'"):
        list(OpenWebText(tmp_path / "dd", hf_split="test", use_datasets=False))


@pytest.mark.skipif(not datasets_available(), reason="Hugging Face `datasets` is not installed")
def test_save_to_disk_read_with_datasets(tmp_path: Path) -> None:  # pragma: no cover
    import datasets

    texts = [f"hf doc {i}" for i in range(4)]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "hf"))
    assert [d["text"] for d in OpenWebText(tmp_path / "hf", use_datasets=True)] == texts
    assert [d["text"] for d in OpenWebText(tmp_path / "hf", use_datasets=False)] == texts


def test_wrapped_gpt2_blocks(tmp_path: Path) -> None:
    _folder(tmp_path)
    bpe = GPT2BPE()
    ds = OpenWebText(tmp_path)
    blocks = list(ds.iter_blocks(bpe, block_size=64, batch_docs=2))
    expected = list(pack_wrapped((bpe.encode(d["text"]) for d in ds), 64))
    assert len(blocks) == len(expected) > 3
    np.testing.assert_array_equal(np.stack(blocks), np.stack(expected))
    assert (np.stack(blocks)[:, [0, -1]] == 50256).all()


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="missing dataset folder"):
        OpenWebText(tmp_path / "none")
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DatasetLayoutError, match="no .txt/.xz documents") as e:
        OpenWebText(tmp_path)
    assert "save_to_disk" in str(e.value)
