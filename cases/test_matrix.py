"""The matrix: one test per cell, crossed in ``matrix.plugin``."""

from matrix.cases import Case
from matrix.plugin import attempt


def test_cell(case: Case, request) -> None:
    attempt(case, request)
