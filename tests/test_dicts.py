from dataclasses import dataclass

import pytest

from unmask.dicts import dataclass_from_dict, deep_merge


def test_deep_merge_merges_nested_mappings_and_replaces_the_rest() -> None:
    base = {"a": {"x": 1, "y": {"z": 2}}, "b": [1, 2], "c": 3}
    out = deep_merge(base, {"a": {"y": {"w": 4}}, "b": [9], "c": {"new": 1}})
    assert out is base
    assert out == {"a": {"x": 1, "y": {"z": 2, "w": 4}}, "b": [9], "c": {"new": 1}}


def test_dataclass_from_dict_names_unknown_keys() -> None:
    @dataclass
    class C:
        lr: float = 1e-3
        steps: int = 10

    assert dataclass_from_dict(C, {"steps": 3}, "C") == C(steps=3)
    with pytest.raises(ValueError, match=r"unknown demo keys \['lrr'\]; valid: \['lr', 'steps'\]"):
        dataclass_from_dict(C, {"lrr": 1.0}, "demo")
