"""MCTS: solves small tasks, is deterministic per seed, builds one tree batched or not."""

from __future__ import annotations

import json

import pytest

from agents import MCTS, solve, validate_result
from algind_gym.cli import main
from algind_gym.tasks import get_task


@pytest.mark.parametrize(("task", "budget"), [("VectorAdd", 400), ("DotProduct", 12_000)])
def test_mcts_solves_and_generalises_to_8x(task, budget):
    r = solve(task, agent="mcts", budget=budget, seed=0, n_examples=4)
    assert r.success, r.program_text
    longest = 8 * max(get_task(task).train_lengths)
    assert r.generalisation[str(longest)] == 1.0
    assert r.actions_evaluated <= budget and r.stats["simulations"] >= 1
    validate_result(r.to_dict())


def test_same_seed_same_result():
    a = solve("DotProduct", agent="mcts", budget=1500, seed=2, n_examples=4)
    b = solve("DotProduct", agent="mcts", budget=1500, seed=2, n_examples=4)
    assert a.comparable() == b.comparable()


def test_batched_and_one_at_a_time_build_the_same_tree():
    signatures = []
    for batched in (True, False):
        agent = MCTS(batched=batched, batch_size=16)
        r = solve("Mean", agent=agent, budget=400, seed=3, n_examples=4)
        signatures.append((agent.tree_signature(), r.actions_evaluated, r.instructions))
    assert signatures[0] == signatures[1]
    assert len(signatures[0][0]) > 10 and any(node[2] > 1 for node in signatures[0][0])


def test_bad_options_get_clear_errors():
    with pytest.raises(ValueError, match="unknown prior 'nosuch'"):
        solve("VectorAdd", agent="mcts", budget=10, prior="nosuch")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        solve("VectorAdd", agent="mcts", budget=10, batch_size=0)


def test_cli_solves_with_the_uniform_prior(capsys):
    argv = ["solve", "VectorAdd", "--agent", "mcts", "--prior", "uniform", "--budget", "300"]
    assert main([*argv, "--examples", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] and out["agent"] == "mcts" and out["options"]["prior"] == "uniform"


def test_cli_rejects_a_prior_for_an_agent_without_one(capsys):
    argv = ["solve", "VectorAdd", "--agent", "enumerative", "--prior", "uniform"]
    assert main([*argv, "--budget", "10"]) == 2
    assert "has no option(s) ['prior']" in capsys.readouterr().err


def test_ctrl_c_returns_the_best_so_far_marked_interrupted():
    calls = []

    def interrupt(ctx):
        calls.append(ctx.actions_evaluated)
        if len(calls) == 5:
            raise KeyboardInterrupt

    r = solve("Mean", agent="mcts", budget=5000, seed=0, n_examples=4, progress=interrupt)
    assert r.interrupted and not r.success and 0 < r.actions_evaluated < 5000
    assert r.program  # the best candidate offered before the interrupt
    validate_result(r.to_dict())
