"""The PT2E pattern cache: keyed by everything a pattern's export depends on, copies handed out."""

from __future__ import annotations

import torch

from matrix.modes import patterns


def make_pattern(per_channel: bool):
    def pattern(x, weight):
        return torch.nn.functional.linear(x, weight * (2 if per_channel else 1))

    return pattern


def test_patterns_with_equal_closures_share_a_key_and_others_do_not():
    example = (torch.randn(2, 3), torch.randn(4, 3))
    assert patterns.key(make_pattern(True), example, False, {}) == patterns.key(make_pattern(True), example, False, {})
    assert patterns.key(make_pattern(True), example, False, {}) != patterns.key(make_pattern(False), example, False, {})
    wider = (torch.randn(2, 5), torch.randn(4, 5))
    assert patterns.key(make_pattern(True), example, False, {}) != patterns.key(make_pattern(True), wider, False, {})


def test_the_cache_exports_once_and_hands_out_copies():
    calls = []

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        calls.append(pattern)
        return torch.fx.symbolic_trace(pattern)

    cached = patterns.cached(export)
    example = (torch.randn(2, 3), torch.randn(4, 3))
    first = cached(make_pattern(True), example)
    second = cached(make_pattern(True), example)
    assert len(calls) == 1
    assert first is not second and first.code == second.code
    cached(make_pattern(False), example)
    assert len(calls) == 2


def test_a_pattern_it_cannot_key_is_exported_every_time():
    calls = []

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        calls.append(pattern)
        return "graph"

    class Unhashable:
        __hash__ = None
        size = 1

    unhashable = Unhashable()

    def pattern(x):
        return x + unhashable.size

    cached = patterns.cached(export)
    cached(pattern, (torch.randn(2),))
    cached(pattern, (torch.randn(2),))
    assert len(calls) == 2


def test_install_reaches_every_module_that_imported_the_exporter_by_name(monkeypatch):
    import sys
    import types

    def export(pattern, example_inputs, is_cuda=False, **kwargs):
        return torch.fx.symbolic_trace(pattern)

    defining, user = types.ModuleType("qmatrix_fake_pt2e_utils"), types.ModuleType("qmatrix_fake_annotator")
    setattr(defining, patterns.NAME, export)
    setattr(user, patterns.NAME, export)  # ``from ...utils import _get_aten_graph_module_for_pattern``
    monkeypatch.setitem(sys.modules, defining.__name__, defining)
    monkeypatch.setitem(sys.modules, user.__name__, user)
    monkeypatch.setattr(patterns, "MODULES", (defining.__name__,))
    monkeypatch.delenv("QMATRIX_PT2E_PATTERN_CACHE", raising=False)
    patterns.install()
    wrapper = getattr(defining, patterns.NAME)
    assert hasattr(wrapper, "qmatrix_cache") and getattr(user, patterns.NAME) is wrapper
    patterns.install()  # again: nothing is wrapped twice
    assert getattr(defining, patterns.NAME) is wrapper and getattr(user, patterns.NAME) is wrapper
