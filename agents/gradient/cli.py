"""``algind-gym solve --agent gradient`` options: ``--steps --iterations --population --init --out``.

:func:`add_arguments` adds them to the ``solve`` parser; :func:`options` turns the parsed
values into the composer's keyword options (only the ones given, only for ``gradient``).
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The gradient composer's flags on the ``solve`` parser."""
    g = p.add_argument_group("--agent gradient")
    g.add_argument("--steps", type=int, metavar="T", help="program steps T (default 2)")
    g.add_argument("--iterations", type=int, metavar="N", help="gradient iterations (default 100)")
    g.add_argument(
        "--population", type=int, metavar="P", help="members batched as rows (default 4)"
    )
    g.add_argument("--init", choices=("uniform", "description"), help="alpha initialisation")
    g.add_argument("--out", metavar="DIR", help="write the alpha plot and TensorBoard logs here")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword options for the gradient composer from parsed ``solve`` arguments."""
    given = {
        k: getattr(args, k, None) for k in ("steps", "iterations", "population", "init", "out")
    }
    given = {k: v for k, v in given.items() if v is not None}
    if args.agent != "gradient":
        if given:
            raise ValueError(f"{sorted(given)} apply to --agent gradient only")
        return {}
    return {**given, "verbose": not args.json}
