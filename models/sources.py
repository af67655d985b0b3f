"""Models from outside the suite: a Python file (``--models-from``) or an installed
package's ``qmatrix.models`` entry point. Either registers its models with
:func:`models.register`, the call the built-in models use."""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

from models import MODELS

ENTRY_POINT_GROUP = "qmatrix.models"


class ModelSourceError(Exception):
    """A model source that could not be loaded; the message names it."""


def load_file(path: str | Path) -> list[str]:
    """Import a Python file that registers models; return the names it added."""
    path = Path(path).resolve()
    before = set(MODELS)
    if not path.is_file():
        raise ModelSourceError(f"{path}: no such model file")
    name = f"qmatrix_user_models_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        for added in set(MODELS) - before:
            del MODELS[added]
        raise ModelSourceError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    added = [n for n in MODELS if n not in before]
    for model in added:
        MODELS[model] = MODELS[model].from_source(str(path))
    return added


def load_entry_points() -> tuple[list[str], list[str]]:
    """Load every installed ``qmatrix.models`` entry point: (added models, errors)."""
    added, errors = [], []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        before = set(MODELS)
        try:
            entry.load()
        except Exception as exc:
            for name in set(MODELS) - before:
                del MODELS[name]
            errors.append(f"entry point {entry.name} ({entry.value}): {type(exc).__name__}: {exc}")
            continue
        for name in [n for n in MODELS if n not in before]:
            MODELS[name] = MODELS[name].from_source(f"entry point {entry.name}")
            added.append(name)
    return added, errors
