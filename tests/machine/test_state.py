"""Layout addresses, MachineState views, copies, serialisation and input validation."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from algind_gym.machine.layout import DataType, Layout, SkillBlockSpec
from algind_gym.machine.state import MachineState

LAYOUT = Layout(
    n_general=4,
    stack_size=8,
    n_pointers=2,
    memory_size=16,
    skill_blocks=(SkillBlockSpec("f", 2, 16), SkillBlockSpec("g", 0, 8)),
)


def test_blocks_tile_the_address_space():
    blocks = list(LAYOUT.blocks.values())
    assert blocks[0].start == 0
    for a, b in itertools.pairwise(blocks):
        assert a.end == b.start
    assert blocks[-1].end == LAYOUT.n_cells
    f, g = LAYOUT.skill("f"), LAYOUT.skill("g")
    assert f.slot(0) == f.header + 4 and f.weights_slot == f.slot(2)
    assert f.code_start == f.slot(2) + 4 and g.base == f.end and g.end == LAYOUT.n_cells


def test_protected_cells():
    mask = LAYOUT.protected_mask
    for r in ("pc", "sp", "fp", "halt", "fault", "icount"):
        assert mask[LAYOUT.register(r)]
    assert not mask[LAYOUT.register("mode")] and not mask[LAYOUT.register("r0")]
    f = LAYOUT.skill("f")
    assert mask[f.header : f.header + 4].all() and mask[f.code_start : f.end].all()
    assert not mask[f.slot(0) : f.code_start].any()
    assert not mask[LAYOUT.block("memory").start : LAYOUT.block("memory").end].any()
    with pytest.raises(ValueError):
        mask[0] = False  # read-only


def test_describe_names_every_address():
    f = LAYOUT.skill("f")
    assert LAYOUT.describe(LAYOUT.register("r1")) == "r1"
    assert LAYOUT.describe(f.slot(1) + 1) == "f.slot1.rows"
    assert LAYOUT.describe(LAYOUT.block("memory").start + 3) == "memory+3"
    assert LAYOUT.describe(f.code_start + 2) == "f.code+2"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stack_size": -1}, "stack_size"),
        ({"n_general": 0}, "n_general"),
        ({"skill_blocks": (SkillBlockSpec("a", 0, 4), SkillBlockSpec("a", 0, 4))}, "duplicate"),
    ],
)
def test_bad_layouts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Layout(**kwargs)
    with pytest.raises(ValueError, match="multiple of 4"):
        SkillBlockSpec("a", 0, 5)


def test_unknown_names_say_what_exists():
    with pytest.raises(KeyError, match="registers are pc, sp"):
        LAYOUT.register("r9")
    with pytest.raises(KeyError, match="blocks are"):
        LAYOUT.block("heap")
    with pytest.raises(KeyError, match="it has"):
        LAYOUT.skill("h")


def test_views_write_through_and_copy_is_deep(dtype):
    s = MachineState.zeros(LAYOUT, batch=3, dtype=dtype)
    assert s.register("sp").tolist() == [LAYOUT.stack_base] * 3
    s.block("memory")[:, 0] = [1, 2, 3]
    assert s.cells[:, LAYOUT.block("memory").start].tolist() == [1, 2, 3]
    c = s.copy()
    c.block("memory")[:, 0] = 0
    assert s.block("memory")[:, 0].tolist() == [1, 2, 3]
    s.set_pointer(1, LAYOUT.block("memory").start, 4, 1, DataType.VECTOR)
    assert s.descriptor(LAYOUT.pointer(1))[0].tolist() == [LAYOUT.block("memory").start, 4, 1, 2]


def test_json_round_trip_is_exact(dtype):
    rng = np.random.default_rng(0)
    s = MachineState.zeros(LAYOUT, batch=2, dtype=dtype)
    s.block("memory")[:] = rng.normal(size=s.block("memory").shape) * 1e10
    back = MachineState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back.dtype == s.dtype
    assert np.array_equal(back.cells.view(np.uint8), s.cells.view(np.uint8))


def test_bad_states_are_rejected_clearly():
    with pytest.raises(ValueError, match=r"needs \(batch, "):
        MachineState(LAYOUT, np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        MachineState(LAYOUT, np.zeros((1, LAYOUT.n_cells), np.int32))
    bad = np.zeros((1, LAYOUT.n_cells), np.float32)
    bad[0, LAYOUT.register("r0")] = np.nan
    with pytest.raises(ValueError, match="cell 7 \\(r0\\) is nan"):
        MachineState(LAYOUT, bad)
    s = MachineState.zeros(LAYOUT)
    with pytest.raises(IndexError, match="leaves the state"):
        s.write(LAYOUT.n_cells - 1, [1, 2])
    with pytest.raises(ValueError, match="version"):
        MachineState.from_dict(s.to_dict() | {"version": 7})
    with pytest.raises(ValueError, match="layout keys wrong"):
        MachineState.from_dict(s.to_dict() | {"layout": {"n_general": 1}})


@pytest.mark.parametrize(
    "name, value",
    [
        ("sp", LAYOUT.stack_base - 1),
        ("sp", LAYOUT.stack_end + 1),
        ("sp", LAYOUT.stack_base + 0.5),
        ("fp", 0.0),
        ("fp", 1e6),
    ],
)
def test_sp_and_fp_outside_the_stack_are_refused(name, value):
    cells = MachineState.zeros(LAYOUT, batch=2).cells.copy()
    cells[1, LAYOUT.register(name)] = value
    msg = rf"machine 1: {name.upper()} = .* not an integer inside the stack block \[{LAYOUT.stack_base}, {LAYOUT.stack_end}\]"
    with pytest.raises(ValueError, match=msg):
        MachineState(LAYOUT, cells)
    data = MachineState(LAYOUT, cells, check_registers=False).to_dict()
    with pytest.raises(ValueError, match=msg):
        MachineState.from_dict(data)
    assert MachineState.from_dict(data, check_registers=False).cells[1, LAYOUT.register(name)] == (
        np.float32(value)
    )


def test_stack_edges_are_valid():
    cells = MachineState.zeros(LAYOUT).cells.copy()
    cells[0, LAYOUT.register("sp")] = LAYOUT.stack_end  # a full stack
    cells[0, LAYOUT.register("fp")] = LAYOUT.stack_end
    MachineState(LAYOUT, cells)


def test_machine_produced_fp_is_kept_and_both_backends_agree():
    """A program can overwrite its saved FP; LEAVE then restores any value. Copies keep such
    states, and the interpreter and the Transformer CPU agree on them bit for bit."""
    from algind_gym.cpu.backend import make_backend
    from algind_gym.machine.program import build_machine

    source = "movi r0, 2.5\nenter 0\nstf -1, r0\nleave\nhalt"
    start, _ = build_machine(source, dtype=np.float64)
    ref = make_backend("reference").run(start.copy(), 100)
    cpu = make_backend("transformer").run(start.copy(), 100)
    assert ref.register("fp").tolist() == [2.5] and ref.halted[0]
    np.testing.assert_array_equal(ref.cells, cpu.cells)
    assert ref.copy() == ref
