"""Search pruning and value: scratch symmetry, completion, the result memo, the scalar
value, and minimisation of solved programs."""

from __future__ import annotations

import numpy as np
import pytest

from agents import Agent, SolveContext, solve, validate_result
from agents.api import minimise_program
from agents.batched import AFFINE_VALUE
from agents.tree import SearchTree
from agents.verify import verify_program
from algind_gym.skills import builtin_library
from algind_gym.tasks import get_task


def _tree(task: str) -> SearchTree:
    return SearchTree(SolveContext(get_task(task), builtin_library(), 10**6, 0, n_examples=4))


def _names(tree: SearchTree, actions) -> set[tuple[str, tuple[str, ...]]]:
    out = set()
    for a in actions:
        skill, binds = tree.ev.step_names(int(a))
        out.add((skill.split("@")[0], tuple(binds)))
    return out


def test_scratch_symmetry_writes_pool_buffers_in_index_order():
    tree = _tree("Mean")
    flow = tree.dataflow
    root = _names(tree, tree.candidates(tree.root, dataflow=True, commute=False, symmetry=True))
    assert ("len", ("x", "tmp_s0")) in root and ("len", ("x", "tmp_s1")) not in root
    every = _names(tree, tree.candidates(tree.root, dataflow=True, commute=False))
    assert ("len", ("x", "tmp_s1")) in every and len(root) < len(every)
    # once tmp_s0 is written, tmp_s1 is the lowest unwritten scalar
    keep = flow.canonical([("len@1", ["x", "tmp_s0"])])
    allowed = _names(tree, np.flatnonzero(keep))
    assert ("len", ("x", "tmp_s1")) in allowed and ("len", ("x", "tmp_s0")) in allowed


def test_bit_set_rules_equal_the_boolean_tables():
    """The rules run on bit sets; here they are recomputed from the boolean tables."""
    tree = _tree("Mean")
    flow, ev = tree.dataflow, tree.ev
    rng = np.random.default_rng(0)
    programs = [[]]
    for _ in range(12):  # random programs of up to three valid steps
        steps = rng.choice(ev.valid_actions, size=int(rng.integers(1, 4)))
        programs.append([ev.step_names(int(a)) for a in steps])
    programs.append([("reduce@1", ["&s_add@1", "x", "out"]), ("len@1", ["x", "tmp_s0"])])
    for program in programs:
        defined = flow.defined(program)
        readable = ~(flow.reads & ~defined).any(axis=1) & ~flow.writes_constant
        assert np.array_equal(flow.readable(program), readable)
        completes = flow.writes_output.copy()
        for writes in flow.unconsumed(program):
            completes &= flow.reads[:, writes].any(axis=1)
        assert np.array_equal(flow.completes(program), completes)
        written = np.zeros(flow.writes.shape[1], dtype=bool)
        for skill, names in program:
            for slot, name in zip(tree.ctx.library.get(skill).slots, names, strict=True):
                if slot.role in ("out", "inout"):
                    written[flow._entry(name)] = True
        canonical = np.ones(len(flow.writes), dtype=bool)
        for members in flow.scratch_classes:
            w = flow.writes[:, [m for m in members if not written[m]]]
            canonical &= ~(w[:, 1:] & ~w[:, :-1]).any(axis=1)
        assert np.array_equal(flow.canonical(program), canonical)
    assert any(len(m) >= 2 for m in flow.scratch_classes)  # the symmetry rule is exercised
    for a in rng.choice(ev.valid_actions, size=20):
        ra, wa = flow.reads[a], flow.writes[a]
        dependent = (flow.writes & (ra | wa)).any(axis=1) | (flow.reads & wa).any(axis=1)
        assert np.array_equal(flow.dependent(int(a)), dependent)


def test_constant_reads_and_last_step_completion():
    tree = _tree("Mean")
    root = _names(tree, tree.candidates(tree.root, dataflow=True, commute=False, constants=True))
    assert not any(s == "s_add" and b[:2] == ("zero", "one") for s, b in root)
    flow = tree.dataflow
    program = [("reduce@1", ["&s_add@1", "x", "out"]), ("len@1", ["x", "tmp_s0"])]
    assert flow.unconsumed(program) == [[tree.ev.pointer_names.index("tmp_s0")]]
    last = _names(tree, np.flatnonzero(flow.completes(program)))
    # the last step writes the output and reads len's unused result
    assert ("s_div", ("out", "tmp_s0", "out")) in last
    assert ("s_div", ("out", "one", "out")) not in last
    assert all(b[-1] == "out" and "tmp_s0" in b for _, b in last)


def test_scalar_value_rewards_an_affine_function_of_the_target_not_a_constant():
    tree = _tree("Mean")
    ev = tree.ev
    wanted = {("reduce", ("&s_add@1", "x", "out")), ("s_eq", ("zero", "zero", "out"))}
    actions = [a for a in ev.valid_actions if _names(tree, [a]) <= wanted]
    values = {
        next(iter(_names(tree, [o.action])))[0]: o.value
        for o in ev.evaluate(ev.root_memory, actions)
    }
    assert values == {"reduce": AFFINE_VALUE, "s_eq": 0.0}


def test_result_memo_skips_known_transpositions_without_charging():
    with_memo = solve("Mean", agent="mcts", budget=1500, seed=1, n_examples=4, result_memo=True)
    without = solve("Mean", agent="mcts", budget=1500, seed=1, n_examples=4, result_memo=False)
    assert with_memo.stats["result_memo_skips"] > 0 and without.stats["result_memo_skips"] == 0
    # the actions it skipped would have been transpositions or no-ops: more nodes per action
    nodes = with_memo.stats["nodes"] / with_memo.actions_evaluated
    assert nodes > without.stats["nodes"] / without.actions_evaluated


class _Fixed(Agent):
    """Returns a fixed program (a step that computes nothing the output needs, first)."""

    def search(self, ctx):
        return [("map@1", ["&s_neg@1", "x", "tmp_v0"]), ("zipmap@1", ["&s_add@1", "x", "y", "out"])]


def test_solve_minimises_a_verified_program_and_keeps_the_found_one():
    r = solve("VectorAdd", agent=_Fixed(), budget=10, seed=0, n_examples=4)
    assert r.success and r.program == [("zipmap@1", ["&s_add@1", "x", "y", "out"])]
    assert r.found_program is not None and len(r.found_program) == 2
    assert r.generalisation[str(8 * max(get_task("VectorAdd").train_lengths))] == 1.0
    validate_result(r.to_dict())
    raw = solve("VectorAdd", agent=_Fixed(), budget=10, seed=0, n_examples=4, minimise=False)
    assert raw.found_program is None and len(raw.program) == 2


def test_minimise_keeps_every_needed_step():
    lib, task = builtin_library(), get_task("Abs")
    program = [
        ("map@1", ["&s_neg@1", "x", "tmp_v0"]),
        ("zipmap@1", ["&s_max@1", "x", "tmp_v0", "out"]),
    ]
    assert minimise_program(program, lambda p: verify_program(lib, task, p)) == program


@pytest.mark.parametrize("task", ["Mean", "CountEqual"])
def test_mcts_solves_two_and_three_call_scalar_tasks(task):
    r = solve(task, agent="mcts", budget=10_000, seed=0, prior="uniform")
    assert r.success, r.program_text
    assert r.generalisation[str(8 * max(get_task(task).train_lengths))] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["Mean", "CountEqual", "DuplicatedInput"])
def test_pruned_breadth_first_solves_three_call_tasks(task):
    r = solve(task, agent="enumerative", budget=40_000, seed=0, prune=True, max_depth=3)
    assert r.success, r.program_text
