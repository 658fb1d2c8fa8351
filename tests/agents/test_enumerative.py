"""EnumerativeSearch: breadth-first, observational equivalence, batched = one at a time."""

from __future__ import annotations

import pytest

from agents import EnumerativeSearch, solve, validate_result
from algind_gym.tasks import get_task


@pytest.mark.parametrize(("task", "budget"), [("VectorAdd", 400), ("DotProduct", 12_000)])
def test_enumerative_solves_and_generalises_to_8x(task, budget):
    r = solve(task, agent="enumerative", budget=budget, seed=0, n_examples=4)
    assert r.success, r.program_text
    longest = 8 * max(get_task(task).train_lengths)
    assert r.generalisation[str(longest)] == 1.0
    assert r.stats["nodes"] > 1 and r.stats["transpositions"] + r.stats["noops"] > 0
    # breadth first: the shortest program (VectorAdd has a 1-call one, DotProduct a 2-call one)
    assert len(r.program) == {"VectorAdd": 1, "DotProduct": 2}[task]
    validate_result(r.to_dict())


def test_same_seed_same_result():
    a = solve("VectorMul", agent="enumerative", budget=300, seed=5, n_examples=4)
    b = solve("VectorMul", agent="enumerative", budget=300, seed=5, n_examples=4)
    assert a.comparable() == b.comparable()


def test_batched_and_one_at_a_time_enumerate_the_same_nodes():
    trees = []
    for batched in (True, False):
        agent = EnumerativeSearch(batched=batched, batch_size=40)
        r = solve("Mean", agent=agent, budget=900, seed=1, n_examples=4)
        nodes = [(k, n.program, n.potential) for k, n in agent.tree.nodes.items()]
        trees.append((nodes, agent.visit_order, r.actions_evaluated, r.instructions))
    assert trees[0] == trees[1]
    assert len(trees[0][0]) > 10
