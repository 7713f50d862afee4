"""The claim checks on hand-made tables (each direction both ways) and references.yaml."""

from __future__ import annotations

import pandas as pd
import pytest

from unmask.reporting import claims as claims_mod
from unmask.reporting.claims import (
    Claim,
    PaperValue,
    check_claim,
    fidelity_table,
    load_claims,
    references,
    resolve_values,
)
from unmask.reporting.page import html_table, link


def _claim(direction: dict) -> Claim:
    return Claim("c", "x", "di", "Table S8", "a claim", direction, {})


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
            {"lowest_at": {"metric": "fid", "x": 0.2, "among": [0.0, 0.2, 0.4]}},
            [(0.0, 10.0), (0.1, 8.0), (0.2, 9.0), (0.4, 11.0)],  # 0.1 is not among the compared
            "reproduced",
        ),
        (
            {"lowest_at": {"metric": "fid", "x": 0.2, "among": [0.0, 0.2, 0.4]}},
            [(0.0, 10.0), (0.2, 10.5), (0.4, 11.0)],
            "not reproduced",
        ),
        (
            {"lowest_at": {"metric": "fid", "x": "linear", "among": ["linear", "cosine"]}},
            [("cosine", 2.0), ("exp", 1.0)],  # linear missing
            "not covered",
        ),
        (
            {"argmin_in": {"metric": "fid", "low": 1.0, "high": 1.4, "groups": ["maskgit"]}},
            [(0.8, 1.0), (1.2, 2.0)],  # only a curve the claim is not about
            "not covered",
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


def _te(points, group=""):
    """Points (x, value, stderr); NaN stderr = unknown."""
    return pd.DataFrame({"x": [p[0] for p in points], "value": [p[1] for p in points],
                         "stderr": [p[2] for p in points], "metric": "fid", "group": group})


NAN = float("nan")


@pytest.mark.parametrize(
    ("points", "verdict"),
    [
        # |10 − 12| = 2 ≤ 2·√(1² + 1²) = 2.83: the difference is not resolved
        ([("a", 10.0, 1.0), ("b", 12.0, 1.0)], "within noise"),
        # 2 > 2·√(0.5² + 0.5²) = 1.41: resolved, in the claimed direction
        ([("a", 10.0, 0.5), ("b", 12.0, 0.5)], "reproduced"),
        ([("a", 12.0, 0.5), ("b", 10.0, 0.5)], "not reproduced"),
        # the wrong sign but within noise is not a contradiction
        ([("a", 12.0, 1.0), ("b", 10.0, 1.0)], "within noise"),
        # one point without an error bar: the sign decides
        ([("a", 10.0, 1.0), ("b", 10.5, NAN)], "reproduced"),
    ],
)
def test_within_noise_uses_both_standard_errors(points, verdict):
    c = _claim({"lower_at": {"metric": "fid", "better": "a", "worse": "b"}})
    assert check_claim(c, _te(points))[0] == verdict


def test_one_curve_beyond_noise_against_the_claim_decides():
    c = _claim({"decreasing": {"metric": "fid"}})
    noisy = _te([(4, 10.0, 1.0), (64, 10.5, 1.0)], group="maskgit")
    clear = _te([(4, 20.0, 0.1), (64, 10.0, 0.1)], group="mdm")
    wrong = _te([(4, 10.0, 0.1), (64, 20.0, 0.1)], group="euler")
    assert check_claim(c, pd.concat([clear, noisy]))[0] == "within noise"
    assert check_claim(c, pd.concat([clear, noisy, wrong]))[0] == "not reproduced"
    verdict, ours = check_claim(c, clear)
    assert verdict == "reproduced" and ours == "[mdm] 4: 20 ± 0.1 → 64: 10 ± 0.1"


def test_argmin_outside_the_band_within_noise_of_the_band():
    c = _claim({"argmin_in": {"metric": "fid", "low": 0.6, "high": 1.0}})
    near = _te([(0.5, 9.8, 0.3), (0.8, 10.0, 0.3), (1.5, 14.0, 0.3)])
    far = _te([(0.5, 8.0, 0.3), (0.8, 10.0, 0.3), (1.5, 14.0, 0.3)])
    assert check_claim(c, near)[0] == "within noise"  # 0.2 ≤ 2·√0.18 = 0.85
    assert check_claim(c, far)[0] == "not reproduced"  # 2.0 > 0.85


def test_lowest_at_compares_with_the_best_rival():
    c = _claim({"lowest_at": {"metric": "fid", "x": 0.2, "among": [0.0, 0.2, 0.4]}})
    assert check_claim(c, _te([(0.0, 10.0, 0.2), (0.2, 9.0, 0.2), (0.4, 11.0, 0.2)]))[0] == (
        "reproduced")  # 1.0 > 2·√0.08 = 0.57
    assert check_claim(c, _te([(0.0, 9.3, 0.2), (0.2, 9.0, 0.2), (0.4, 11.0, 0.2)]))[0] == (
        "within noise")  # 0.3 ≤ 0.57


def test_groups_limit_a_claim_to_its_curves():
    c = _claim({"argmin_in": {"metric": "fid", "low": 1.0, "high": 1.4, "groups": ["maskgit"]}})
    t = pd.concat(
        [_t([(0.8, 1.0), (1.2, 2.0)], group="euler"), _t([(0.8, 3.0), (1.2, 2.0)], group="maskgit")]
    )
    assert check_claim(c, t) == ("reproduced", "[maskgit] best at 1.2: 2")


def test_likelihood_bounds_are_shown_as_bounds():
    c = _claim({"lower_at": {"metric": "ppl", "better": "max", "worse": 1}})
    verdict, ours = check_claim(c, _t([(1, 30.0), (4, 22.0)], metric="ppl"))
    assert verdict == "reproduced" and ours == "4: ≤22, 1: ≤30"


def test_references_are_consistent():
    refs = references()
    for c in load_claims():
        assert c.paper in refs["papers"], c.id
        assert c.citation.startswith(refs["papers"][c.paper]["title"])
        assert c.paper_values, c.id
    for v in refs["values"]:
        assert v["paper"] in refs["papers"]
        assert all(isinstance(x, int | float) for x in v["entries"].values())
        assert set(v["quotes"]) == set(v["entries"]), v["id"]


def test_the_known_transcription_errors_stay_fixed():
    """MDM-Prime Tab. 2: MDLM (ℓ = 1) is ≤22.98 (21.52 is EDLM-NCE's), 15.36 is ℓ = 6, and all
    MDM PPLs are upper bounds; eMIGM's t_min is §4: 0.2 best, 0.4 no better than none."""
    values = resolve_values(references())
    assert values["prime_tab2_ppl/MDLM (ℓ = 1)"] == PaperValue(22.98, True, values[
        "prime_tab2_ppl/MDLM (ℓ = 1)"].where)
    assert values["prime_tab2_baselines/EDLM-NCE"].value == 21.52
    assert values["prime_tab2_ppl/MDLM-Prime (ℓ = 6)"].value == 15.36
    assert all(v.upper for k, v in values.items() if k.startswith("prime_tab2_ppl/"))
    claims = {c.id: c for c in load_claims()}
    assert "t_min_cost" not in claims
    assert claims["emigm_t_min"].where.startswith("§4")
    assert claims["emigm_t_min"].direction == {
        "lowest_at": {"metric": "fid", "x": 0.2, "among": [0.0, 0.2, 0.4]}}
    assert claims["emigm_t_min_excessive"].direction["lower_at"] == {
        "metric": "fid", "better": 0.0, "worse": 0.4}


def test_every_claim_has_numbers_and_the_paper_address():
    for c in load_claims():
        assert c.paper_values, c.id
        assert c.source.startswith("https://arxiv.org/abs/"), c.id


def test_fidelity_table_carries_the_source_url_and_the_bounds():
    fid = fidelity_table({}).set_index("id")
    assert fid.loc["prime_l_improves_ppl", "source_url"] == "https://arxiv.org/abs/2505.18495"
    assert fid.loc["prime_l_improves_ppl", "paper"].startswith(
        "MDLM (ℓ = 1): ≤22.98; MDLM-Prime (ℓ = 2): ≤17.9;")
    assert "eq. (5)" in fid.loc["prime_l_improves_ppl", "claim"]
    assert (fid["paper"] != "not transcribed").all()
    assert fid.loc["top_p_best", "ours"] == "the report has no 'top_p' ablation section"
    assert (fid["verdict"] == "not covered").all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"paper_values": ["di_tab_s8/Linear"]}, "not found: ['di_tab_s8/Linear']"),
        ({"paper_values": []}, "not found: none given"),
        ({"direction": {"not_worse": {"metric": "fid"}}}, "direction must be one of"),
        ({"paper": "dii"}, "paper must be one of"),
    ],
)
def test_a_bad_claim_is_one_line_naming_it(monkeypatch, edit, message):
    good = {
        "id": "bad",
        "ablation": "x",
        "paper": "di",
        "where": "Table S8",
        "claim": "c",
        "direction": {"decreasing": {"metric": "fid"}},
        "paper_values": ["di_tab_s8/Linear (ETM)"],
    }
    refs = {**references(), "claims": [{**good, **edit}]}
    monkeypatch.setattr(claims_mod, "references", lambda: refs)
    with pytest.raises(ValueError, match="claim 'bad': ") as e:
        load_claims()
    assert message in str(e.value) and "\n" not in str(e.value)


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


# x of each claim's compared points → the transcribed number the paper reports there
_PAPER_POINTS = {
    "schedule_linear_vs_cosine": {"linear": "di_tab_s8/Linear (ETM)",
                                  "cosine": "di_tab_s8/Cosine (ETM)"},
    "schedule_linear_best": {"linear": "di_tab_s8/Linear (ETM)", "cosine": "di_tab_s8/Cosine (ETM)",
                             "cubic": "di_tab_s8/Cubic (ETM)"},
    "emigm_exp_schedule": {"exp": "emigm_tab9/Exp, 400 epochs",
                           "linear": "emigm_tab9/Linear, 400 epochs"},
    "emigm_cosine_schedule": {"cosine": "emigm_tab9/Cosine, 400 epochs",
                              "linear": "emigm_tab9/Linear, 400 epochs"},
    "emigm_logexp_schedule": {"logexp": "emigm_tab9/Log-Exp, 400 epochs",
                              "exp": "emigm_tab9/Exp, 400 epochs"},
    "emigm_dpm_solver": {
        "dpm_solver": "emigm_dpm_solver/DPM-Solver, 8 mask prediction steps",
        "ddpm": "emigm_dpm_solver/DDPM (temperature 1.0), 8 mask prediction steps",
    },
    "prime_l_improves_ppl": {1: "prime_tab2_ppl/MDLM (ℓ = 1)",
                             2: "prime_tab2_ppl/MDLM-Prime (ℓ = 2)",
                             4: "prime_tab2_ppl/MDLM-Prime (ℓ = 4)",
                             8: "prime_tab2_ppl/MDLM-Prime (ℓ = 8)"},
    "prime_isr_falls": {1: "prime_tab2_isr/MDLM (ℓ = 1)", 8: "prime_tab2_isr/MDLM-Prime (ℓ = 8)"},
    "prime_pixels_fid": {1: "prime_tab3_cifar10/MDM FID", 2: "prime_tab3_cifar10/MDM-Prime FID"},
}


@pytest.mark.parametrize("claim_id", sorted(_PAPER_POINTS))
def test_the_papers_own_numbers_reproduce_their_claims(claim_id):
    """A claim pointing the wrong way (or at the wrong rows) fails on the paper's own numbers."""
    claim = next(c for c in load_claims() if c.id == claim_id)
    values = resolve_values(references())
    points = [(x, values[ref].value) for x, ref in _PAPER_POINTS[claim_id].items()]
    assert check_claim(claim, _t(points, metric=claim.metrics[0]))[0] == "reproduced"
    # and the same points swapped pairwise do not
    swapped = [(x, v) for (x, _), (_, v) in zip(points, reversed(points), strict=True)]
    assert check_claim(claim, _t(swapped, metric=claim.metrics[0]))[0] == "not reproduced"
