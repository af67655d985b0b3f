"""Fixtures every harness test shares."""

from __future__ import annotations

import pytest

import matrix.payoff as payoff


@pytest.fixture(autouse=True)
def fresh_float_deployments(monkeypatch):
    """Each test deploys its own float models: stand-in backends reuse one name from test to test."""
    monkeypatch.setattr(payoff, "FLOATS", payoff.FloatDeployments())
