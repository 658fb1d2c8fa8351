"""Batched evaluation computes exactly what one action at a time computes."""

from __future__ import annotations

import numpy as np
import pytest

from agents.api import SolveContext, resolve_task
from agents.batched import ActionEvaluator, default_search_lengths, state_key
from algind_gym.machine.state import MachineState
from algind_gym.skills import builtin_library


def evaluators(task: str) -> tuple[ActionEvaluator, ActionEvaluator]:
    def make(batched: bool) -> ActionEvaluator:
        ctx = SolveContext(resolve_task(task), builtin_library(), 10**6, 0, n_examples=4)
        return ActionEvaluator(ctx, batched=batched, lengths=[1, 8])  # two groups of rows

    return make(False), make(True)


def same(a, b) -> bool:
    return (a.action, a.key, a.potential, a.success, a.fault, a.instructions) == (
        b.action,
        b.key,
        b.potential,
        b.success,
        b.fault,
        b.instructions,
    )


@pytest.mark.parametrize("task", ["DotProduct", "ReLU"])
def test_batched_outcomes_equal_one_at_a_time_from_root_and_depth_one(task):
    one, many = evaluators(task)
    assert np.array_equal(one.root_memory, many.root_memory)
    actions = one.valid_actions
    first = one.evaluate(one.root_memory, actions)
    batched = []
    for lo in range(0, len(actions), 50):  # chunks of several sizes, the last one shorter
        batched += many.evaluate(many.root_memory, actions[lo : lo + 50])
    assert len(first) == len(batched) == len(actions)
    assert all(same(a, b) for a, b in zip(first, batched, strict=True))
    assert any(o.fault for o in first) and any(not o.fault for o in first)
    # from a node one call deep (its memory differs from the root's)
    node = next(o for o in first if not o.fault and o.key != state_key(one.root_memory))
    deeper = actions[:40]
    a = one.evaluate(node.memory, deeper)
    b = many.evaluate(node.memory, deeper)
    assert all(same(x, y) for x, y in zip(a, b, strict=True))
    assert many.cpu_seconds > 0 and many.backend.calls < one.backend.calls


def test_vectorised_score_is_the_workspace_score():
    ctx = SolveContext(resolve_task("VectorAdd"), builtin_library(), 10, 0, n_examples=4)
    ev = ActionEvaluator(ctx, lengths=[2, 8])
    add = ev.env.encode("zipmap", ["&s_add", "x", "y", "out"])
    sub = ev.env.encode("zipmap", ["&s_sub", "x", "y", "out"])
    good, bad = ev.evaluate(ev.root_memory, [add, sub])
    assert good.success and good.potential == 1.0
    assert not bad.success and bad.potential < 1.0
    # the same numbers from Workspace.score on the machines rebuilt from the memory
    cells = ev.root_cells.copy()
    cells[:, ev.mem] = bad.memory
    fracs = [
        ws.score(MachineState(ev.layout, cells[g * 4 : (g + 1) * 4])).fraction
        for g, ws in enumerate(ev.workspaces)
    ]
    assert bad.potential == float(np.concatenate(fracs).mean())


def test_halt_is_not_evaluated():
    ctx = SolveContext(resolve_task("VectorAdd"), builtin_library(), 10, 0, n_examples=4)
    ev = ActionEvaluator(ctx, batched=True)
    with pytest.raises(ValueError, match="HALT"):
        ev.evaluate(ev.root_memory, [ev.table.halt_index])


def test_search_lengths_default_and_errors():
    assert default_search_lengths((1, 2, 4, 8)) == (8,)
    ctx = SolveContext(resolve_task("VectorAdd"), builtin_library(), 10, 0)
    with pytest.raises(ValueError, match="outside"):
        ActionEvaluator(ctx, lengths=[999])
