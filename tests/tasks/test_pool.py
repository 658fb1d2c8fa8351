"""The machine's scratch pool and constants, uninitialised memory, and checked compilation."""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.skills import builtin_library
from algind_gym.tasks import (
    REAL,
    ArgSpec,
    TaskSpec,
    Temp,
    Workspace,
    compile_task_program,
    get_task,
    list_tasks,
)
from algind_gym.tasks.pool import MAX_SCRATCH_PER_SHAPE, scratch_pool, shape_classes
from algind_gym.tasks.reference import reference_library_for, reference_solution

MAX_BAD = [("fold", ["&s_max", "x", "out", "out"])]  # max(out, max x): leans on out's contents


def _data_names(ws: Workspace) -> list[str]:
    return [p.name for p in ws.image.pointers if p.skill is None]


def test_pool_follows_the_signature():
    ws = Workspace(builtin_library(), get_task("LinearLayer"), 3)
    assert _data_names(ws) == [
        "W", "b", "x", "out",
        "tmp_v0", "tmp_v1", "tmp_v2", "tmp_v3",
        "tmp_m0", "tmp_m1", "tmp_mT0", "tmp_mT1",
        "tmp_s0", "tmp_s1",
        "zero", "one",
    ]  # fmt: skip
    shape = {p.name: p.descriptor[1:3] for p in ws.image.pointers}
    m, n = 3 // 2 + 1, 3  # W is m x n
    assert shape["tmp_v0"] == shape["b"] == (m, 1) and shape["tmp_v2"] == (n, 1)
    assert shape["tmp_m1"] == (m, n) and shape["tmp_mT0"] == (n, m)
    assert ws.pointer_roles[:4] == ["input", "input", "input", "output"]
    assert (
        ws.pointer_roles[4:][:10] == ["scratch"] * 10
        and ws.pointer_roles[14:16] == ["constant"] * 2
    )
    assert not ws.is_writable(0) and ws.is_writable(3) and ws.is_writable(4)
    assert not ws.is_writable(_data_names(ws).index("zero"))
    # one vector class when every vector has the same shape at every length
    assert [c.prefix for c in shape_classes(get_task("VectorAdd"))] == ["v", "s"]


def test_pool_size_and_names_are_the_same_at_every_length():
    task = get_task("RepeatCopy")  # x has n elements, out 3n: two vector classes
    names = {tuple(_data_names(Workspace(builtin_library(), task, n))) for n in (1, 2, 16)}
    assert len(names) == 1
    assert [t.shape for t in scratch_pool(task)[:4]] == [("x.size",)] * 2 + [("out.size",)] * 2


@pytest.mark.parametrize("k", [0, 1, 3])
def test_scratch_per_shape(k):
    ws = Workspace(builtin_library(), get_task("VectorAdd"), 2, scratch_per_shape=k)
    assert [n for n in _data_names(ws) if n.startswith("tmp_")] == [
        *(f"tmp_v{i}" for i in range(k)),
        *(f"tmp_s{i}" for i in range(k)),
    ]


@pytest.mark.parametrize("bad", [-1, MAX_SCRATCH_PER_SHAPE + 1, 2.0, True, "2"])
def test_bad_scratch_per_shape_is_refused(bad):
    with pytest.raises(ValueError, match="scratch_per_shape"):
        Workspace(builtin_library(), get_task("VectorAdd"), 2, scratch_per_shape=bad)


def _user_task(**kw) -> TaskSpec:
    base = {
        "name": "UserTask",
        "description": "x",
        "args": (ArgSpec("x", "vector"), ArgSpec("out", "vector", "out")),
        "generator": lambda rng, n: {"x": rng.uniform(-1, 1, n)},
        "oracle": lambda ex: {"out": ex["x"]},
    }
    return TaskSpec(**{**base, **kw})


def test_pool_names_are_reserved():
    with pytest.raises(ValueError, match="reserved"):
        _user_task(scratch=(Temp("tmp_v0", "vector", ("x.size",)),))
    with pytest.raises(ValueError, match="reserved"):
        _user_task(args=(ArgSpec("zero", "vector"), ArgSpec("out", "vector", "out")))
    with pytest.raises(ValueError, match="clashes"):
        _user_task(constants={"one": 2.0})
    assert _user_task(constants={"zero": 0.0, "half": 0.5}).constants["half"] == 0.5


def test_outputs_and_scratch_start_uninitialised():
    task = get_task("DotProduct")
    ws = Workspace(builtin_library(), task, 4, batch=3, seed=5)
    state = ws.reset()
    for name in ("out", "tmp_v0", "tmp_s1"):
        v = ws.image.read(state, name).reshape(3, -1)
        assert (v != 0).all() and len({tuple(r) for r in v}) == 3, name  # differ per example
    assert ws.image.read(state, "zero").tolist() == [0.0] * 3
    assert ws.image.read(state, "one").tolist() == [1.0] * 3
    # the inputs are the generator's, unchanged by the uninitialised stream
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(ws.image.read(state, "x")[0], task.generator(rng, 4)["x"])
    # same seed, same values; another seed, others
    again = Workspace(builtin_library(), task, 4, batch=3, seed=5).reset()
    np.testing.assert_array_equal(again.cells, state.cells)
    other = Workspace(builtin_library(), task, 4, batch=3, seed=6)
    assert not np.array_equal(other.uninitialised["out"], ws.uninitialised["out"])


def test_reading_out_as_a_zero_no_longer_solves_max():
    task = get_task("Max")
    for n in task.train_lengths + task.test_lengths:
        ws = Workspace(builtin_library(), task, n, batch=8, seed=0)
        state = ws.reset()
        ws.run_program(state, MAX_BAD)
        assert not ws.score(state).success.all(), n
    with pytest.raises(ValueError, match=r"fails at training length 1, example \d+"):
        compile_task_program(builtin_library(), task, MAX_BAD)


def test_compile_refuses_writes_to_constants_and_inputs_and_unknown_names():
    lib = builtin_library()
    task = get_task("Sum")
    with pytest.raises(ValueError, match="writes the constant 'zero'"):
        compile_task_program(lib, task, [("fold", ["&s_add", "x", "tmp_s0", "zero"])])
    with pytest.raises(ValueError, match="writes the input 'x'"):
        compile_task_program(lib, task, [("map", ["&s_neg", "tmp_v0", "x"])])
    with pytest.raises(ValueError, match="no pointer-table entry 't'"):
        compile_task_program(lib, task, [("fold", ["&s_add", "t", "zero", "out"])])
    assert "Sum" not in lib


def test_compiled_skill_allocates_only_the_pool_buffers_it_uses():
    lib = reference_library_for("ArgMax")
    skill = compile_task_program(lib, get_task("ArgMax"), reference_solution("ArgMax"))
    assert [t.name for t in skill.composition.temps] == ["tmp_s0", "tmp_v0", "tmp_v1"]
    assert [t.shape for t in skill.composition.temps] == [(), ("x.size",), ("x.size",)]


def test_no_shipped_task_declares_what_the_pool_offers():
    for task in list_tasks():
        pool_shapes = {(t.type, t.shape) for t in scratch_pool(task)}
        for t in task.scratch:
            assert (t.type, t.shape) not in pool_shapes, (task.name, t.name)
            assert t.type != "scalar", (task.name, t.name)
        assert not set(task.constants) & {"zero", "one"}, task.name


@pytest.mark.parametrize(
    "bad, match",
    [
        (2.7, r"integer in \[0, 256\] for task VectorAdd, got 2\.7 \(float\)"),
        ("abc", r"got 'abc' \(str\)"),
        (-1, r"got -1$"),
        (10**6, "length_limit"),
    ],
)
def test_bad_lengths_are_refused_at_construction(bad, match):
    with pytest.raises(ValueError, match=match):
        Workspace(builtin_library(), get_task("VectorAdd"), bad)
    with pytest.raises(ValueError, match="capacity"):
        Workspace(builtin_library(), get_task("VectorAdd"), 2, capacity=10**6)


def test_user_task_without_scratch_is_solved_with_pool_buffers_and_builtins():
    task = _user_task(
        name="SumOfDoubles",
        args=(ArgSpec("x", "vector"), ArgSpec("out", "scalar", "out")),
        oracle=lambda ex: {"out": np.sum(2 * ex["x"])},
        tolerance=REAL,  # reals: the machine sums in order, numpy pairwise
        train_lengths=(1, 2, 4),
        test_lengths=(32,),
    )
    assert task.scratch == () and task.constants == {}
    program = [
        ("zipmap", ["&s_add", "x", "x", "tmp_v1"]),
        ("fold", ["&s_add", "tmp_v1", "zero", "out"]),
    ]
    for n in (4, 32):  # a training length and 8x it
        ws = Workspace(builtin_library(), task, n, batch=4, seed=3)
        state = ws.reset()
        results = ws.run_program(state, program, "transformer")
        assert all(r.error is None for r in results) and ws.score(state).success.all(), n
    skill = compile_task_program(builtin_library(), task, program)
    assert [t.name for t in skill.composition.temps] == ["tmp_v1"]


def test_inputs_and_constants_are_read_only_for_every_action():
    ws = Workspace(builtin_library(), get_task("Sum"), 3, batch=2)
    names = ws.pointer_names
    zero, x, tmp = names.index("zero"), names.index("x"), names.index("tmp_s0")
    mask = ws.binding_mask("fold")  # fold(f, x, init, out): slot 3 is written
    assert mask[2, zero] and not mask[3, zero] and not mask[3, names.index("one")]
    assert mask[3, tmp] and not ws.can_bind(zero, "fold", 3)
    assert [ws.is_writable(i) for i in (x, tmp, zero)] == [False, True, False]
    state = ws.reset()
    res = ws.execute(state, "fold", ws.bind(["&s_add", "x", "tmp_s0", "zero"]))
    assert "read-only" in res.error and "zero" in res.error and (state.faults != 0).all()
    assert ws.image.read(state, "zero").tolist() == [0.0, 0.0]
