"""Reports from a run's records, without pytest: the tables as values (:mod:`.tables`), rendered as
Markdown (:mod:`.markdown`) and HTML (:mod:`.html`); runs compared (:mod:`.compare`); the records
as CSV and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from matrix.records import read_environment, read_records
from matrix.reporting import tables
from matrix.reporting.html import render_html
from matrix.reporting.markdown import render_markdown


def render_csv(env: dict, records: list[dict]) -> str:
    """One row per cell, the columns of :func:`tables.frame`; nested fields as JSON."""
    table = tables.frame(records)
    for column in ("documented", "expected", "limits"):
        table[column] = [json.dumps(v, sort_keys=True) if isinstance(v, dict) else "" for v in table[column]]
    return table.to_csv(index=False)


def render_json(env: dict, records: list[dict]) -> str:
    return json.dumps({"environment": env, "cells": records}, indent=1, sort_keys=True, default=str) + "\n"


# Report format -> (file name, renderer).
RENDERERS: dict[str, tuple[str, Callable[[dict, list[dict]], str]]] = {
    "md": ("report.md", render_markdown), "html": ("report.html", render_html),
    "csv": ("report.csv", render_csv), "json": ("report.json", render_json),
}


def write_report(run: Path, out: Path | None = None, formats: tuple[str, ...] = ("md", "html")) -> Path:
    """Render ``run``'s records as report.md and report.html (or ``formats``) in ``out`` (default: the run).

    Everything is rendered before anything is written, so unreadable records leave earlier reports as they
    were. Returns the path of the first format's file.
    """
    records = read_records(run)
    env = read_environment(run)
    rendered = {RENDERERS[f][0]: RENDERERS[f][1](env, records) for f in formats}
    folder = out or run
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(folder / name)
    return folder / RENDERERS[formats[0]][0]
