"""Verification of a found program on fresh inputs, the only source of ``success``.

An agent searches on the examples of its environment; a program that is right there may
still lean on a coincidence of those K inputs. :func:`verify_program` therefore draws new
inputs (a seed the search never saw) at every training length, every test length and 8x
the longest training length, runs the program on the Transformer CPU through
:meth:`Workspace.run_program` (the same path as the environments), and reports the
fraction of examples solved per length.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.result import Program
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec, Workspace

VERIFY_SEED_OFFSET = 1_000_003
"""Verification inputs use ``seed + VERIFY_SEED_OFFSET``: never the search's own examples."""


def verification_lengths(task: TaskSpec) -> list[int]:
    """Every training and test length of ``task`` and 8x its longest training length, sorted."""
    lengths = {*task.train_lengths, *task.test_lengths, 8 * max(task.train_lengths)}
    return sorted(lengths)


def verify_program(
    library: SkillLibrary,
    task: TaskSpec,
    program: Program,
    *,
    seed: int = 0,
    n_examples: int = 8,
    backend: str = "transformer",
    lengths: Sequence[int] | None = None,
) -> dict[str, float]:
    """Accuracy (fraction of ``n_examples`` fresh examples solved) of ``program`` per length.

    Args:
        library: the library the program's skills come from.
        task: the task it solves.
        program: ``(skill, [pointer names])`` steps.
        seed: verification seed (offset so that it differs from the search's seeds).
        n_examples: examples per length.
        backend: CPU backend (default: the compiled Transformer CPU).
        lengths: default :func:`verification_lengths`.

    Returns:
        ``{"<length>": accuracy}``; a program that faults or binds an unknown pointer
        scores 0 at that length (never an exception).

    Example:
        >>> from algind_gym.skills import builtin_library
        >>> from algind_gym.tasks import get_task
        >>> acc = verify_program(builtin_library(), get_task("VectorAdd"),
        ...                      [("zipmap", ["&s_add", "x", "y", "out"])])
        >>> set(acc.values())
        {1.0}
    """
    out: dict[str, float] = {}
    for i, length in enumerate(lengths if lengths is not None else verification_lengths(task)):
        ws = Workspace(
            library,
            task,
            int(length),
            batch=n_examples,
            seed=seed + VERIFY_SEED_OFFSET + 7919 * i,
        )
        state = ws.reset()
        ws.run_program(state, program, backend)
        out[str(int(length))] = ws.score(state).accuracy
    return out
