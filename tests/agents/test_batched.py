"""Batched evaluation computes exactly what one action at a time computes."""

from __future__ import annotations

import numpy as np
import pytest

from agents import batch_loops
from agents.api import SolveContext, resolve_task
from agents.batched import ActionEvaluator, default_search_lengths, state_key
from algind_gym.machine.state import MachineState
from algind_gym.skills import builtin_library
from algind_gym.skills.image import resolve_backend
from algind_gym.tasks import EXACT, ArgSpec, TaskSpec
from algind_gym.tasks.spec import Tolerance


def evaluators(task: str) -> tuple[ActionEvaluator, ActionEvaluator]:
    def make(batched: bool) -> ActionEvaluator:
        ctx = SolveContext(resolve_task(task), builtin_library(), 10**6, 0, n_examples=4)
        return ActionEvaluator(ctx, batched=batched, lengths=[1, 8])  # two groups of rows

    return make(False), make(True)


def same(a, b) -> bool:
    return (a.action, a.key, a.potential, a.success, a.fault, a.instructions, a.value) == (
        b.action,
        b.key,
        b.potential,
        b.success,
        b.fault,
        b.instructions,
        b.value,
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


class _LooseTolerance(Tolerance):
    """A tolerance with its own ``close`` (the batched path must then score through
    ``Workspace.score``)."""

    def close(self, got, want):
        return np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)) <= 1.0


def _own_score(example, outputs):
    right = float(np.mean(outputs["out"] == example["x"] + example["y"]))
    return right, right == 1.0


def _user_task(name: str, **kw) -> TaskSpec:
    return TaskSpec(
        name,
        "Add two vectors elementwise.",
        (ArgSpec("x", "vector"), ArgSpec("y", "vector"), ArgSpec("out", "vector", "out")),
        lambda r, n: {"x": r.integers(0, 4, n).astype(float), "y": r.integers(0, 4, n) * 1.0},
        lambda e: {"out": e["x"] + e["y"]},
        kw.pop("tolerance", EXACT),
        train_lengths=(2, 5),
        test_lengths=(8,),
        **kw,
    )


@pytest.mark.parametrize(
    "task",
    [
        resolve_task("Sort"),  # exact tolerance
        _user_task("AddOwnScore", scorer=_own_score),
        _user_task("AddLoose", tolerance=_LooseTolerance()),
    ],
    ids=["exact", "own scorer", "own tolerance"],
)
def test_batched_scores_equal_one_at_a_time_for_every_kind_of_scoring(task):
    """The batched path's compiled scoring (exact or toleranced) and its fallback for tasks
    that score themselves give the one-at-a-time numbers, from the root and a child."""

    def make(batched: bool) -> ActionEvaluator:
        ctx = SolveContext(task, builtin_library(), 10**6, 0, n_examples=4)
        return ActionEvaluator(ctx, batched=batched, lengths=[1, max(task.train_lengths)])

    one, many = make(False), make(True)
    assert (many._targets is None) == (task.name != "Sort")
    actions = np.random.default_rng(0).permutation(one.valid_actions)[:60]
    node = one.root_memory
    for _ in range(2):
        a, b = one.evaluate(node, actions), many.evaluate(node, actions)
        assert all(same(x, y) for x, y in zip(a, b, strict=True))
        assert len({o.potential for o in a}) > 1  # the scores tell children apart
        node = next(o.memory for o in b if not o.fault and o.key != state_key(node))


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


class _Recorder:
    """A backend that keeps a copy of every batch of machines it is asked to run; with
    ``ranges=False`` it does not report write ranges (callers then assume whole rows)."""

    def __init__(self, ranges: bool) -> None:
        self.inner = resolve_backend("transformer")
        self.name = "recorder"
        self.records_writes = ranges
        self.seen: list[np.ndarray] = []

    def run(self, state, max_steps=10_000, written=None):
        self.seen.append(state.cells.copy())
        if written is None:
            return self.inner.run(state, max_steps)
        return self.inner.run(state, max_steps, written=written)


@pytest.mark.parametrize("ranges", [True, False], ids=["write ranges", "whole rows"])
def test_batched_machines_are_the_one_at_a_time_machines_bit_for_bit(ranges):
    """Each child's machines handed to the CPU equal, bit for bit, the machines the
    one-at-a-time path hands it for the same action and node, over batches from nodes of
    several depths and sizes (so machines are reused after runs that wrote their stack,
    memory and other skills' slots, or faulted). The only cells allowed to differ: argument
    slots that an earlier batch's bindings wrote into the same machines (every call binds
    its own slots before reading them)."""

    def make(batched: bool) -> tuple[ActionEvaluator, _Recorder]:
        rec = _Recorder(ranges)
        task, lib = resolve_task("DotProduct"), builtin_library()
        ctx = SolveContext(task, lib, 10**6, 0, n_examples=4, backend=rec)
        return ActionEvaluator(ctx, batched=batched, lengths=[1, 8]), rec

    (one, rec_one), (many, rec_many) = make(False), make(True)
    rng = np.random.default_rng(0)
    node, checked, faults = many.root_memory, 0, 0
    bound_before: list[set[int]] = [set() for _ in range(40)]  # per child position
    # (batch size, whether the next batch runs from a child of this one or from the same
    # node, whose machines then rewrite only the memory cells the last runs wrote)
    plan = ((40, True), (7, False), (40, False), (25, True), (40, True), (40, False), (12, True))
    same_node_batches = 0
    for size, move in plan:
        actions = rng.choice(many.valid_actions, size, replace=False)
        same_node_batches += many._batch is not None and node.tobytes("F") == many._batch.node
        rec_one.seen.clear(), rec_many.seen.clear()
        a = one.evaluate(node, actions)
        b = many.evaluate(node, actions)
        assert all(same(x, y) for x, y in zip(a, b, strict=True))
        (batch,) = rec_many.seen
        batch = batch.reshape(len(actions), many.rows, -1)
        for c, action in enumerate(actions):
            got, want = batch[c], rec_one.seen[c]
            bound = set(many._batch.dst[action].tolist())
            keep = np.ones(got.shape[1], dtype=bool)
            keep[sorted(bound_before[c] - bound)] = False
            assert np.array_equal(got[:, keep].view(np.int64), want[:, keep].view(np.int64))
            bound_before[c] |= bound
            checked += 1
        faults += sum(o.fault for o in b)
        if move:  # a child of this one (memory, stack and scratch differ)
            node = next(o.memory for o in b if not o.fault and o.key != state_key(node))
    assert checked == sum(size for size, _ in plan) and faults > 0
    assert same_node_batches == 3


def test_chunked_loops_equal_the_serial_loops_bit_for_bit():
    """The parallel drivers of prepare and collect (strided chunks of machines; here 3
    chunks over a batch that 3 does not divide, on however many threads numba has) leave
    the same cells, write ranges and readings as the serial loops."""
    pytest.importorskip("numba")
    ctx = SolveContext(resolve_task("DotProduct"), builtin_library(), 10**6, 0, n_examples=4)
    ev = ActionEvaluator(ctx, batched=True, lengths=[1, 8])
    actions = np.random.default_rng(1).choice(ev.valid_actions, 13, replace=False)
    ev.evaluate(ev.root_memory, actions)  # machines with write ranges to rewrite
    buf = ev._batch
    node = next(o.memory for o in ev.evaluate(ev.root_memory, actions) if not o.fault)
    m, mem = len(actions) * ev.rows, ev.mem
    results = []
    holds = np.arange(len(buf.holds_node)) % 2 == 0  # both paths of the memory rewrite
    for chunks in (None, 3):
        cells, written = buf.cells.copy(), buf.written.copy()
        args = (cells, written, buf.ready, node, ev.root_cells, buf.writable_above, actions)
        args += (buf.entry, buf.dst, buf.src, buf.pc, buf.n_registers, mem.start, mem.stop)
        args += (True, holds.copy())
        if chunks is None:
            batch_loops.prepare(0, 1, *args)
        else:
            batch_loops.PARALLEL[batch_loops.prepare](chunks, *args)
        t = ev._targets
        after = np.empty((len(actions), mem.stop - mem.start, ev.rows))
        out = (after, np.empty(m, np.int64), np.empty(m, bool))
        out += (np.empty(m), np.empty(m, bool))
        args = (cells, buf.icount_before, buf.icount, buf.fault, mem.start, t.columns, t.want)
        args += (t.bound, t.exact, t.total, *out)
        if chunks is None:
            batch_loops.collect(0, 1, *args)
        else:
            batch_loops.PARALLEL[batch_loops.collect](chunks, *args)
        results.append((cells, written, *out))
    for a, b in zip(*results, strict=True):  # bit for bit (floats compared as their bits)
        bits = np.int64 if a.dtype == np.float64 else a.dtype
        assert np.array_equal(a.view(bits), b.view(bits))
    assert (results[0][1][:m, 1] == -1).all()  # the ranges were emptied


def test_long_action_lists_run_in_calls_of_at_most_max_batch():
    """A list longer than ``max_batch`` runs in consecutive calls of at most that many
    actions, with the outcomes of one call per action; the default holds
    ``MAX_BATCH_MACHINES`` machines; a bad ``max_batch`` is refused by name."""
    from agents.batched import MAX_BATCH_MACHINES

    task, lib = resolve_task("DotProduct"), builtin_library()

    def make(**kw) -> ActionEvaluator:
        ctx = SolveContext(task, lib, 10**6, 0, n_examples=4)
        return ActionEvaluator(ctx, lengths=[1, 8], **kw)

    split, whole = make(max_batch=16), make()
    assert whole.max_batch == MAX_BATCH_MACHINES // whole.rows
    actions = whole.valid_actions[:70]
    a = split.evaluate(split.root_memory, actions)
    b = whole.evaluate(whole.root_memory, actions)
    assert [o.action for o in a] == actions.tolist()
    assert all(same(x, y) for x, y in zip(a, b, strict=True))
    assert (split.backend.calls, whole.backend.calls) == (5, 1)  # 16 + 16 + 16 + 16 + 6
    assert split._batch.capacity == 16
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="max_batch"):
            make(max_batch=bad)
