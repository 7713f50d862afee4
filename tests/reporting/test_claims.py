"""The claim checks on hand-made tables (each direction both ways) and references.yaml."""

from __future__ import annotations

import pandas as pd
import pytest

from unmask.reporting import claims as claims_mod
from unmask.reporting.claims import Claim, check_claim, fidelity_table, load_claims, references
from unmask.reporting.page import html_table, link


def _claim(direction: dict) -> Claim:
    return Claim("c", "x", "di", "Table S8", "a claim", direction, None)


def _t(points, metric="fid", group=""):
    return pd.DataFrame(
        {
            "x": [p[0] for p in points],
            "value": [p[1] for p in points],
            "metric": metric,
            "group": group,
        }
    )


@pytest.mark.parametrize(
    ("direction", "points", "verdict"),
    [
        (
            {"lower_at": {"metric": "fid", "better": "linear", "worse": "cosine"}},
            [("linear", 1.0), ("cosine", 2.0)],
            "reproduced",
        ),
        (
            {"lower_at": {"metric": "fid", "better": "linear", "worse": "cosine"}},
            [("linear", 3.0), ("cosine", 2.0)],
            "not reproduced",
        ),
        (
            {"lower_at": {"metric": "fid", "better": "linear", "worse": "cosine"}},
            [("linear", 3.0), ("exp", 2.0)],
            "not covered",
        ),
        (
            {"lower_at": {"metric": "fid", "better": "max", "worse": 1}},
            [(1, 3.0), (2, 2.5), (4, 2.9)],
            "reproduced",
        ),
        ({"decreasing": {"metric": "fid"}}, [(4, 9.0), (64, 5.0), (16, 7.0)], "reproduced"),
        ({"decreasing": {"metric": "fid"}}, [(4, 5.0), (64, 9.0)], "not reproduced"),
        (
            {"argmin_in": {"metric": "fid", "low": 0.6, "high": 1.0}},
            [(0.5, 3.0), (0.8, 1.0), (1.5, 4.0)],
            "reproduced",
        ),
        (
            {"argmin_in": {"metric": "fid", "low": 0.6, "high": 1.0}},
            [(0.5, 0.5), (0.8, 1.0)],
            "not reproduced",
        ),
        ({"guidance_helps": {"metric": "fid"}}, [(0, 5.0), (1, 4.0), (3, 6.0)], "reproduced"),
        ({"guidance_helps": {"metric": "fid"}}, [(0, 3.0), (1, 4.0)], "not reproduced"),
        (
            {"not_worse": {"metric": "fid", "tolerance": 0.05}},
            [(0, 10.0), (0.1, 10.4)],
            "reproduced",
        ),
        (
            {"not_worse": {"metric": "fid", "tolerance": 0.05}},
            [(0, 10.0), (0.1, 10.6)],
            "not reproduced",
        ),
    ],
)
def test_directions(direction, points, verdict):
    assert check_claim(_claim(direction), _t(points))[0] == verdict


def test_a_single_point_group_does_not_count():
    c = _claim({"lower_at": {"metric": "ppl", "better": "max", "worse": 1}})
    t = pd.concat(
        [
            _t([(1, 30.0)], metric="ppl", group="a"),
            _t([(1, 5.0), (2, 4.0)], metric="ppl", group="b"),
        ]
    )
    assert check_claim(c, t)[0] == "reproduced"
    assert check_claim(c, _t([(1, 30.0)], metric="ppl"))[0] == "not covered"


def test_claim_on_another_metric_is_not_covered():
    c = _claim({"decreasing": {"metric": "fid"}})
    assert check_claim(c, _t([(4, 9.0), (64, 5.0)], metric="hist_tv"))[0] == "not covered"


def test_every_group_must_agree():
    c = _claim({"decreasing": {"metric": "fid"}})
    t = pd.concat(
        [_t([(4, 9.0), (64, 5.0)], group="mdm"), _t([(4, 5.0), (64, 9.0)], group="maskgit")]
    )
    assert check_claim(c, t)[0] == "not reproduced"


def test_references_are_consistent():
    refs = references()
    for c in load_claims():
        assert c.paper in refs["papers"], c.id
        assert c.citation.startswith(refs["papers"][c.paper]["title"])
    for v in refs["values"]:
        assert v["paper"] in refs["papers"]
        assert all(isinstance(x, int | float) for x in v["entries"].values())
    # the MDM-Prime abstract's OpenWebText perplexities
    owt = next(v for v in refs["values"] if v["id"] == "prime_owt_ppl")["entries"]
    assert owt == {"MDM-Prime": 15.36, "MDM (ℓ=1)": 21.52, "ARM": 17.54}


def test_every_transcribed_number_names_its_source():
    refs = references()
    for c in load_claims():
        if c.paper_values:
            assert c.source and c.source.startswith("https://"), c.id
    for v in refs["values"]:
        assert str(v.get("source", "")).startswith("https://"), v["id"]


def test_fidelity_table_carries_the_source_url():
    fid = fidelity_table({}).set_index("id")
    prime = next(c for c in load_claims() if c.id == "prime_l_improves_ppl")
    assert fid.loc["prime_l_improves_ppl", "source_url"] == prime.source
    assert fid.loc["prime_l_improves_ppl", "paper"] == "ℓ = 1 (MDM): 21.52; MDM-Prime: 15.36"
    untranscribed = fid[fid["paper"] == "not transcribed"]
    assert len(untranscribed) and (untranscribed["source_url"] == "").all()


def test_a_source_that_is_not_a_url_is_rejected(monkeypatch):
    refs = {
        "papers": references()["papers"],
        "claims": [
            {
                "id": "bad",
                "ablation": "x",
                "paper": "di",
                "where": "Table 1",
                "claim": "c",
                "direction": {"decreasing": {"metric": "fid"}},
                "paper_values": {"a": 1.0},
                "source": "my memory",
            }
        ],
    }
    monkeypatch.setattr(claims_mod, "references", lambda: refs)
    with pytest.raises(ValueError, match="claim 'bad': source must be an http"):
        load_claims()


def test_link_cells_render_as_links_and_everything_else_is_escaped():
    out = html_table(
        ["source", "plain"],
        [
            [link("Paper <A> & co", "https://example.org/abs?x=1&y=2"), "<b>"],
            [link("no url", ""), "x"],
            [link("js", "javascript:alert(1)"), "y"],
        ],
    )
    assert '<td><a href="https://example.org/abs?x=1&amp;y=2" rel="noopener">' in out
    assert "Paper &lt;A&gt; &amp; co</a></td>" in out
    assert "<td>&lt;b&gt;</td>" in out
    assert "<td>no url</td>" in out  # escaped once, not a link
    assert "javascript:" not in out and "<td>js</td>" in out
