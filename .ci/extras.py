"""Print the requirements of qmatrix and of some of its extras, one per line, as pyproject.toml
lists them, with its torch pin replaced: how a tox environment installs every backend beside a
torch other than the one the package pins.

    python .ci/extras.py --torch 2.14.1 all zoo --out requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
SELF = re.compile(r"^qmatrix\[(?P<extras>[^\]]+)\]$")
TORCH = re.compile(r"^torch\s*[=<>!~]")


def requirements(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies and those of ``extras``, self-references (``qmatrix[onnx]``) followed."""
    optional = project["optional-dependencies"]
    found, seen, todo = list(project["dependencies"]), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            sys.exit(f"extras.py: no extra {extra!r} in {PROJECT} (it has {', '.join(sorted(optional))})")
        seen.add(extra)
        for requirement in optional[extra]:
            match = SELF.match(requirement)
            if match:
                todo += [name.strip() for name in match["extras"].split(",")]
            elif requirement not in found:
                found.append(requirement)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="+")
    parser.add_argument("--torch", required=True, help="the torch release to pin instead")
    parser.add_argument("--out", type=Path, help="the file to write (default: print)")
    args = parser.parse_args()
    project = tomllib.loads(PROJECT.read_text())["project"]
    lines = [f"torch=={args.torch}" if TORCH.match(requirement) else requirement
             for requirement in requirements(project, args.extras)]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
