"""Every number in references.yaml checked against the paper texts in ../shared/papers/.

For each transcribed number: its quote must lie inside the cited table / section (between the
block's ``locate.start`` and ``locate.end``, whitespace collapsed), the number must be in the
quote (at column ``cols[label]`` when given, counting the quote's numbers from 0), "≤" must
precede it exactly when the block says the values are upper bounds, and each "Table N",
"Fig. N", "§N" or "App. N" in ``where`` must name that place. The folder comes from
``$UNMASK_PAPERS`` or sits beside the repository (``<repo>/../shared/papers``); without it these
tests skip with that reason. A mutated copy of the references must fail (the check can fail).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import pytest

from unmask.reporting.claims import load_claims, references, resolve_values

PAPERS = Path(
    os.environ.get("UNMASK_PAPERS") or Path(__file__).parents[2].parent / "shared" / "papers"
)
needs_papers = pytest.mark.skipif(
    not PAPERS.is_dir(), reason=f"paper texts not found at {PAPERS} (set $UNMASK_PAPERS)"
)

# a number standing alone (not part of a word such as "U-ViT2" or "370M"): 1,024 / 2.0e-4 / 36.77%
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?)(?!\w|\.\d)")


def _squash(text: str) -> str:
    return " ".join(text.split())


def _numbers(text: str) -> list[tuple[float, int]]:
    """(value, start offset) of each stand-alone number in ``text``."""
    return [(float(m.group(1).replace(",", "")), m.start(1)) for m in _NUMBER.finditer(text)]


def _region(paper: str, start: str, end: str) -> str | None:
    i = paper.find(_squash(start))
    if i < 0:
        return None
    j = paper.find(_squash(end), i + len(_squash(start)))
    return None if j < 0 else paper[i : j + len(_squash(end))]


def _citation_errors(where: str, region: str) -> list[str]:
    """The places ``where`` names that ``region`` is not."""
    errs = []
    for tab in re.findall(r"\bTables? ([A-Z]?\d+)", where):
        if not re.search(rf"\bTable {tab}\b", region):
            errs.append(f"Table {tab} is not in the located text")
    for fig in re.findall(r"\bFig\. ([A-Z]?\d+(?:\([a-z]\))?)", where):
        if not re.search(rf"\b(?:Figs?\.|Figure) {re.escape(fig)}", region):
            errs.append(f"Fig. {fig} is not in the located text")
    for sec in re.findall(r"(?:§|App\. )([A-Z]?\d+(?:\.\d+)*|[A-Z](?:\.\d+)*)\b", where):
        if not re.match(rf"{re.escape(sec)}\.? ", region):
            errs.append(f"the located text does not start at heading {sec}")
    return errs


def check_references(refs: dict[str, Any], papers: Path) -> list[str]:
    """Every mismatch between ``refs`` and the paper texts, one line each (empty: all match)."""
    texts = {k: _squash((papers / p["text"]).read_text()) for k, p in refs["papers"].items()}
    errs: list[str] = []
    for v in refs["values"]:
        name = v["id"]
        region = _region(texts[v["paper"]], v["locate"]["start"], v["locate"]["end"])
        if region is None:
            text = refs["papers"][v["paper"]]["text"]
            errs.append(f"{name}: locate start/end not found in {text}")
            continue
        errs += [f"{name}: {e}" for e in _citation_errors(v["where"], region)]
        if "header" in v and _squash(v["header"]) not in region:
            errs.append(f"{name}: header {v['header']!r} not in the located text")
        upper = v.get("bound") == "upper"
        for label, value in v["entries"].items():
            quote = _squash(v.get("quotes", {}).get(label, ""))
            where = f"{name}/{label}"
            if not quote:
                errs.append(f"{where}: no quote")
                continue
            if quote not in region:
                errs.append(f"{where}: quote not found in {v['where']}: {quote!r}")
                continue
            nums = _numbers(quote)
            col = v.get("cols", {}).get(label)
            if col is not None:
                hits = [nums[col]] if col < len(nums) and nums[col][0] == float(value) else []
            else:
                hits = [n for n in nums if n[0] == float(value)]
            if not hits:
                at = f" at column {col}" if col is not None else ""
                errs.append(f"{where}: {value} is not{at} in {quote!r}")
                continue
            bounded = quote[hits[0][1] - 1 : hits[0][1]] == "≤"
            if upper and label not in v.get("exact", []) and not bounded:
                errs.append(f"{where}: {value} is an upper bound but has no ≤ in the paper")
            if bounded and not (upper and label not in v.get("exact", [])):
                errs.append(f"{where}: the paper writes ≤{value}; mark the block bound: upper")
    return errs


@needs_papers
def test_every_transcribed_number_is_in_the_cited_place() -> None:
    errs = check_references(references(), PAPERS)
    assert not errs, "\n".join(errs)


@needs_papers
def test_every_claim_number_is_a_checked_number() -> None:
    """A claim's paper numbers come from ``values`` (so the test above checks them)."""
    for c in load_claims():
        assert c.paper_values, f"{c.id}: no paper numbers"
        for label, value in c.paper_values.items():
            assert isinstance(value.value, int | float), (c.id, label)


@needs_papers
@pytest.mark.parametrize(
    ("block", "label", "field", "new"),
    [
        ("di_tab_s8", "Cosine (ETM)", "entries", 41.57),  # a digit swap
        ("emigm_tab9", "Exp, 400 epochs", "entries", 12.39),  # the neighbouring column's value
        ("emigm_tab9", "Exp, 400 epochs", "cols", 2),  # the wrong column
        ("prime_tab2_ppl", "MDLM (ℓ = 1)", "entries", 21.52),  # EDLM-NCE's number (the old bug)
        ("prime_tab_a4_cifar10", "MDM, NFE 512", "quotes",
         "CIFAR-10 NFE 128 256 512 MDM 7.55 5.00 4.67 MDM-Prime 5.22 3.73 3.26"),
        ("emigm_t_min", "t_min beneficial, eMIGM's default", "entries", 0.4),
    ],
)
def test_a_changed_number_fails(block: str, label: str, field: str, new: Any) -> None:
    refs = copy.deepcopy(references())
    v = next(b for b in refs["values"] if b["id"] == block)
    v[field][label] = new
    errs = check_references(refs, PAPERS)
    assert any(e.startswith(f"{block}/{label}:") for e in errs), errs


@needs_papers
def test_a_wrong_citation_or_bound_fails() -> None:
    refs = copy.deepcopy(references())
    blocks = {b["id"]: b for b in refs["values"]}
    blocks["emigm_t_min"]["where"] = "§3 Time Truncation"  # the old, wrong section
    blocks["di_tab_s8"]["where"] = "Table S7"
    blocks["prime_tab2_ppl"]["bound"] = None  # the paper's ≤ dropped
    blocks["prime_tab2_baselines"]["exact"] = []  # ARM's exact PPL taken as a bound
    errs = check_references(refs, PAPERS)
    assert "emigm_t_min: the located text does not start at heading 3" in errs
    assert "di_tab_s8: Table S7 is not in the located text" in errs
    assert any(e.startswith("prime_tab2_ppl/MDLM (ℓ = 1): the paper writes ≤") for e in errs)
    assert any(e.startswith("prime_tab2_baselines/ARM*: 17.54 is an upper bound") for e in errs)


def test_number_parsing() -> None:
    """The column count sees the table's numbers only: no digits inside words or units."""
    line = "U-ViT2 MDLM-Prime (ℓ = 2) ≤17.90 13.52% 370M 16×1.2 1,024 2.0e-4"
    got = [n for n, _ in _numbers(line)]
    assert got == [2.0, 17.9, 13.52, 16.0, 1.2, 1024.0, 2e-4]


def test_resolved_claim_values_carry_the_bound() -> None:
    values = resolve_values(references())
    assert values["prime_tab2_ppl/MDLM (ℓ = 1)"].display == "≤22.98"
    assert values["prime_tab2_baselines/ARM*"].display == "17.54"
    assert values["di_tab_s8/Linear (ETM)"].display == "20.05"
