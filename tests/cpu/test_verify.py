"""verify-cpu's batched structured lockstep: a pool of slots per layout, refilled as machines
stop, gives the same verdicts as stepping every machine alone, and still catches a
deliberately mutated dense weight."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest

from algind_gym.cpu import verify
from algind_gym.cpu.backend import make_backend
from algind_gym.cpu.fuzz import fuzz_layout
from algind_gym.cpu_v2 import model as v2_model
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.structured import mutate, structured_machines
from algind_gym.machine.isa import MAX_OPCODE
from algind_gym.machine.state import MachineState

DENSE = "transformer-v2-dense"


def _machines(dtype) -> MachineState:
    """Sum's skill calls (2 machines per call) and a mutated copy of each, on one layout."""
    rng = np.random.default_rng(7)
    states = structured_machines(rng, dtype, batch=2, tasks=["Sum"], minimal=True)
    states += [mutate(s, rng) for s in states]
    assert len({s.layout for s in states}) == 1
    return MachineState(
        states[0].layout, np.concatenate([s.cells for s in states]), check_registers=False
    )


def _verdict(machines: MachineState, engines: dict, slots: int, steps: int = 60) -> dict:
    per_backend, examples = dict.fromkeys(engines, 0), []
    opcodes = np.zeros(MAX_OPCODE + 1, dtype=np.int64)
    checked, lengths = verify._lockstep(
        machines, engines, steps, per_backend, examples, opcodes, slots
    )
    return {
        "checked": checked,
        "lengths": lengths,
        "mismatches": per_backend,
        "opcodes": opcodes.tolist(),
        "examples": examples,
    }


def test_batched_lockstep_gives_the_verdicts_of_one_machine_at_a_time(dtype):
    machines = _machines(dtype)
    engines = {DENSE: make_backend(DENSE)}
    alone = _verdict(machines, engines, slots=1)
    assert alone["checked"] == sum(alone["lengths"]) > 0
    assert max(alone["lengths"]) == 60 and min(alone["lengths"]) < 60  # cut, and stopped
    assert alone["mismatches"] == dict.fromkeys(engines, 0)
    for slots in (3, 0):  # a pool refilled as machines stop; every machine at once
        assert _verdict(machines, engines, slots) == alone, slots


def test_a_mutated_dense_weight_is_caught_by_the_batched_lockstep(monkeypatch):
    def compile_mutated(layout, dtype):
        circuit = compile_circuit(layout, dtype)
        alu = next(m for layer in circuit.layers for m in layer.mlps if m.name == "alu")
        unit = next(u for u in alu.units if u.out == {"r_add": 1.0})
        unit.w["y.v"] = 2.0  # one entry of W_1: the adder now computes x + 2y
        return circuit

    machines = _machines(np.float32)
    monkeypatch.setattr(v2_model, "compile_circuit", compile_mutated)
    engines = {DENSE: make_backend(DENSE)}
    batched = _verdict(machines, engines, slots=3)
    assert batched["mismatches"][DENSE] > 0
    assert batched["examples"] and batched["examples"][0]["backend"] == DENSE
    assert _verdict(machines, engines, slots=1)["mismatches"] == batched["mismatches"]


def test_verify_cpu_reuses_a_layouts_backends_and_drops_the_oldest():
    built: OrderedDict = OrderedDict()
    a = fuzz_layout()
    b, c = (replace(a, memory_size=a.memory_size + k) for k in (4, 8))
    first = verify._engines(built, a, (DENSE,))
    assert verify._engines(built, a, (DENSE,)) is first
    verify._engines(built, b, (DENSE,))
    verify._engines(built, c, (DENSE,))
    assert list(built) == [b, c] and verify._BUILT_LAYOUTS == 2
    assert verify._engines(built, a, (DENSE,)) is not first


def test_verify_cpu_steps_structured_programs_in_slots_of_the_batch():
    result = verify.verify_cpu(
        programs=2,
        steps=2,
        batch=3,
        backends=(DENSE,),
        print_result=False,
        structured_steps=1,
        structured_tasks=["Max"],
        structured_minimal=True,
        structured_per_call=2,
    )
    assert result["mismatches"] == 0 and result["structured_programs"] == 4
    assert result["structured_steps_in_programs_of_100_or_more"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_million_fuzzed_steps_on_the_planned_dense_pass(dtype_name):
    """Issue 14's bar on the planned numpy dense pass: >= 1e6 checked steps per dtype, >= half
    of them in structured programs of >= 100 steps (minimal layouts), 0 mismatches."""
    result = verify.verify_cpu(
        programs=80_000,
        steps=256,
        batch=256,
        dtype=dtype_name,
        backends=(DENSE,),
        print_result=False,
        structured_steps=560_000,
        structured_tasks=["Sum", "Max", "Mean", "Copy", "PrefixSum", "Negate", "ReLU", "Min"],
        structured_minimal=True,
        structured_per_call=32,
        structured_slots=16 if dtype_name == "float32" else 32,
    )
    assert result["steps_checked"] >= 1_000_000
    assert result["structured_steps_in_programs_of_100_or_more"] >= result["steps_checked"] / 2
    assert result["mismatches"] == 0


def _round(seed: int, built: OrderedDict | None = None) -> dict:
    result = verify.verify_cpu(
        programs=2,
        steps=2,
        batch=3,
        seed=seed,
        backends=(DENSE,),
        print_result=False,
        structured_steps=1,
        structured_tasks=["Max", "Sum"],
        structured_minimal=True,
        structured_per_call=1,
        structured_lengths=[2],
        built=built,
        keep_layouts=None if built is None else 8,
    )
    del result["seconds"]
    return result


def test_rounds_sharing_the_layouts_backends_give_the_results_of_fresh_rounds():
    """verify_generated_rounds.py runs many seeds in one process with one ``built`` dict."""
    built: OrderedDict = OrderedDict()
    first = _round(11, built)
    kept = dict(built)
    assert len(kept) == 3  # the random programs' layout, Max's and Sum's (minimal) at length 2
    second = _round(12, built)
    assert dict(built) == kept and all(built[k] is kept[k] for k in kept)  # not rebuilt
    assert first == _round(11) and second == _round(12)
    assert first["structured_programs"] == second["structured_programs"] == 4
    assert first["structured_cells"] == second["structured_cells"]
    assert first["structured_steps"] != second["structured_steps"]  # other random inputs


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ("32,x", "--structured-lengths: integers like 32,64; got '32,x'"),
        ("5", "task 'Sum' has none of the lengths [5]; choose among [1, 2, 3, 4, 6, 8, 32, 64]"),
    ],
)
def test_verify_cpu_refuses_structured_lengths_it_cannot_use(capsys, lengths, message):
    from algind_gym.cli import main

    argv = ["verify-cpu", "--programs", "1", "--steps", "1", "--batch", "1", "--json"]
    argv += ["--backends", "transformer", "--structured-steps", "1"]
    argv += ["--structured-tasks", "Sum", "--structured-lengths", lengths]
    assert main(argv) == 2
    assert f"algind-gym: error: {message}" in capsys.readouterr().err
