"""The generated kernel (``cpu_v2/codegen.py``): straight-line numba source emitted from the
per-opcode specialised weights.

It must give the bits of the array kernel (``cpu_v2/kernel.py``) and of the reference
interpreter, and a weight that only one opcode's program reads must change that program's
generated function (and the general one) and nothing else. Compiling every generated
function takes minutes on a cold numba cache, so the tests that execute it are ``slow``; the
source tests run by default.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu_v2 import codegen, codegen_runtime, kernel
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.machine import interpreter
from algind_gym.machine.isa import BY_NAME, OPCODES, Fault
from tests.cpu.conftest import assert_same, bits
from tests.cpu_v2.test_specialise import _machine

LAYOUT = fuzz_layout()
_BUILT: dict = {}


def _sources(circuit, dtype) -> dict[str, str]:
    """Generated module sources by the function they define."""
    dt = np.dtype(dtype)
    progs, disp = kernel.programs(circuit, dt)
    meta = codegen.circuit_meta(circuit)
    sources, *_ = codegen.generate(progs, disp, meta, circuit.cell_constants.astype(dt), dt)
    out = {}
    for src in sources:
        defs = [line.split("(")[0][4:] for line in src.splitlines() if line.startswith("def ")]
        out["header" if src.startswith('"""Generated') else defs[0]] = src
    return out


def _mul_mutation(circuit) -> None:
    alu = next(m for m in circuit.layers[5].mlps if m.name == "alu")
    unit = next(u for u in alu.units if u.out == {"r_mul": 1.0})
    unit.w2["y.v"] = 2.0  # one entry of W_1b: the product unit now computes x * 2y


def test_each_program_is_one_generated_function_with_its_weights_as_literals():
    c = compile_circuit(LAYOUT, np.float32)
    src = _sources(c, np.float32)
    assert {f"_op_{op.code}" for op in OPCODES} | {"_general", "_run_py"} <= set(src)
    add = src[f"_op_{BY_NAME['ADD'].code}"]
    # Straight-line: no loop over records (the only loop fills a cell token that several
    # write heads select, from the cell constants).
    loops = {line.strip() for line in add.splitlines() if line.strip().startswith("for ")}
    assert loops == {f"for c in range({len(c.cell)}):"}, loops
    assert "F = np.float32" in src["header"]
    n_literals = 0
    for text in src.values():
        for line in text.splitlines():
            if line.startswith("k_"):  # k_<bits> = F(value): the name is the value's bits
                name, value = line.split(" = F(")
                v = np.float32(eval(value[:-1], {"np": np}))
                assert name == "k_" + v.tobytes()[::-1].hex()
                n_literals += 1
    assert n_literals > 20


def test_a_weight_only_the_mul_program_reads_changes_only_its_generated_functions():
    base = _sources(compile_circuit(LAYOUT, np.float64), np.float64)
    circuit = compile_circuit(LAYOUT, np.float64)
    _mul_mutation(circuit)
    mutated = _sources(circuit, np.float64)
    changed = {name for name in base if base[name] != mutated[name]}
    # The MUL program, the general one (any opcode) and the driver, which imports them.
    assert changed == {f"_op_{BY_NAME['MUL'].code}", "_general", "_run_py"}, changed
    assert "k_4000000000000000 = F(2.0)" in mutated[f"_op_{BY_NAME['MUL'].code}"]


def _programs(dtype):
    key = np.dtype(dtype).name
    if key not in _BUILT:
        c = compile_circuit(LAYOUT, dtype)
        _BUILT[key] = tuple(
            kernel.pack(kernel.sparse_program(c, dtype, generated=g)) for g in (False, True)
        )
    return _BUILT[key]


@pytest.mark.slow
@settings(max_examples=16, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    garbage=st.sampled_from([0.0, 0.05, 0.3]),
    steps=st.integers(1, 60),
    batch=st.integers(1, 80),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_generated_kernel_matches_the_array_kernel_and_the_reference(
    seed, garbage, steps, batch, dtype
):
    state = random_machines(batch, seed, dtype, garbage=garbage)
    budget = float(Fault.BUDGET_EXHAUSTED)
    array, generated = _programs(dtype)
    assert generated.generated is not None and array.generated is None
    a, g = state.cells.copy(), state.cells.copy()
    assert kernel.run(a, steps, array, budget) == kernel.run(g, steps, generated, budget) == -1
    assert np.array_equal(bits(a), bits(g))
    ref = interpreter.run(state.copy(), steps)
    assert np.array_equal(bits(ref.cells), bits(g))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_generated_kernel_refuses_a_non_finite_cell_like_the_array_kernel(dtype):
    array, generated = _programs(dtype)
    cells = random_machines(4, 1, dtype).cells
    cells[2, 7] = np.nan
    before = cells.copy()
    assert (
        kernel.run(cells, 5, generated)
        == kernel.run(cells.copy(), 5, array)
        == 2 * cells.shape[1] + 7
    )
    assert np.array_equal(bits(cells), bits(before))


@pytest.mark.slow
def test_a_weight_only_the_mul_program_reads_changes_the_generated_kernel_alike():
    circuit = compile_circuit(LAYOUT, np.float64)
    _mul_mutation(circuit)
    budget = float(Fault.BUDGET_EXHAUSTED)
    array, generated = (
        kernel.pack(kernel.sparse_program(circuit, np.float64, generated=g)) for g in (False, True)
    )
    state = _machine("MUL")
    a, g = state.cells.copy(), state.cells.copy()
    kernel.run(a, 5, array, budget)
    kernel.run(g, 5, generated, budget)
    assert np.array_equal(bits(a), bits(g))
    ref = interpreter.run(state.copy(), 5)
    assert not np.array_equal(bits(ref.cells), bits(g)), "the mutation changed nothing"
    # ADD's generated function does not read it: ADD still matches the reference.
    state = _machine("ADD")
    got = state.copy()
    kernel.run(got.cells, 5, generated, budget)
    assert_same(interpreter.run(state.copy(), 5), got, "ADD after the MUL mutation")


def _python_kernel(sources: list[str]):
    """The generated modules run by Python, numba's ``njit`` and ``prange`` replaced by the
    function itself and ``range`` (no compile), under their own module names."""
    stub = types.SimpleNamespace(
        njit=lambda *a, **k: a[0] if a and callable(a[0]) else (lambda f: f), prange=range
    )
    shim = types.SimpleNamespace(  # math on numpy scalars (``math.trunc`` refuses them)
        **{n: getattr(math, n) for n in ("floor", "isfinite", "copysign")},
        trunc=lambda v: math.trunc(float(v)),
    )
    module = None
    for src in sources:
        name = codegen_runtime.module_name(src).replace("_v2k_", "_v2py_")
        module = types.ModuleType(name)
        text = src.replace("import numba\n", "").replace("_algind_v2k_", "_algind_v2py_")
        module.__dict__.update(numba=stub)
        sys.modules[name] = module
        exec(compile(text, name, "exec"), module.__dict__)
        if "math" in module.__dict__:
            module.math = shim
    return module


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_generated_source_run_by_python_matches_the_reference(dtype):
    """The emitted operations (bank guesses, head lookups by bank count, ...) without numba:
    the generated source's logic against the reference interpreter, in the default run."""
    dt = np.dtype(dtype)
    c = compile_circuit(LAYOUT, dt)
    progs, disp = kernel.programs(c, dt)
    consts = np.ascontiguousarray(c.cell_constants.astype(dt))
    sources, fb, ib, tables = codegen.generate(progs, disp, codegen.circuit_meta(c), consts, dt)
    assert any("ib[ib[" in src for src in sources)  # some heads look their cell up by count
    run = _python_kernel(sources)._run_py
    budget = dt.type(Fault.BUDGET_EXHAUSTED)
    steps = 0
    for seed in range(5):
        for garbage in (0.0, 0.05, 0.3):
            state = random_machines(8, seed, dt, garbage=garbage)
            got = state.cells.copy()
            with np.errstate(all="ignore"):
                assert run(got, 40, budget, consts, tables, fb, ib, 1) == -1
            ref = interpreter.run(state.copy(), 40)
            assert np.array_equal(bits(ref.cells), bits(got)), (seed, garbage)
            steps += int(ref.cells[:, LAYOUT.register("icount")].sum())
    assert steps > 600
