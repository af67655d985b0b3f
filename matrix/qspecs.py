"""The qspec axis: dtype, range, granularity and observer of a quantization config.

``default`` is the backend's own default qconfig (or quantizer config): the
baseline every mode and backend can express.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QSpec:
    name: str
    description: str
    modes: tuple[str, ...] | None = None
    backends: tuple[str, ...] | None = None

    def applies(self, mode: str, backend: str) -> bool:
        return (self.modes is None or mode in self.modes) and (
            self.backends is None or backend in self.backends
        )


DEFAULT = "default"

QSPECS: dict[str, QSpec] = {
    q.name: q
    for q in (
        QSpec(DEFAULT, "the backend's default qconfig / quantizer config"),
    )
}
