"""The opt-in v2 backends: created lazily by name, bit-exact against the reference, refuse
non-finite cells, and accepted by the environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import algind_gym  # noqa: F401  (registers the environments)
from algind_gym.cpu.backend import BACKENDS, OPT_IN_BACKENDS, make_backend
from algind_gym.cpu.fuzz import random_machines
from algind_gym.machine import interpreter
from tests.cpu.conftest import assert_same


@pytest.fixture(scope="module")
def v2_backends():
    """Every v2 backend, compiled models cached across this module's tests."""
    return {name: make_backend(name) for name in OPT_IN_BACKENDS}


def test_opt_in_names_are_separate_from_the_default_backends(v2_backends):
    assert not set(OPT_IN_BACKENDS) & set(BACKENDS)
    assert [b.name for b in v2_backends.values()] == list(OPT_IN_BACKENDS)
    assert make_backend().name == "transformer"
    with pytest.raises(ValueError, match=r"unknown backend 'transformer-v3'.*transformer-v2"):
        make_backend("transformer-v3")


@pytest.mark.parametrize("name", OPT_IN_BACKENDS)
def test_v2_backend_runs_random_programs_bit_exactly(v2_backends, dtype, name):
    state = random_machines(16, 3, dtype)
    ref = interpreter.run(state.copy(), 12)
    got = v2_backends[name].run(state.copy(), 12)
    assert_same(ref, got, name)


@pytest.mark.parametrize("name", OPT_IN_BACKENDS)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_v2_backend_refuses_a_non_finite_cell(v2_backends, name, value):
    state = random_machines(3, 4)
    state.cells[1, state.layout.block("memory").start + 2] = value
    for call in (v2_backends[name].run, v2_backends[name].step):
        with pytest.raises(ValueError, match="cells must be finite: machine 1 cell"):
            call(state)


def test_environment_runs_an_opt_in_backend_like_the_reference():
    kw = {"n_examples": 2, "lengths": (2,)}
    envs = [
        gym.make("AlgInd/VectorAdd-v0", backend=b, **kw) for b in ("reference", "transformer-v2")
    ]
    assert envs[1].unwrapped.backend == "transformer-v2"
    obs = [env.reset(seed=0)[0] for env in envs]
    rng = np.random.default_rng(0)
    for _ in range(3):
        action = int(rng.choice(np.flatnonzero(envs[0].unwrapped.action_masks())))
        steps = [env.step(action) for env in envs]
        for key in obs[0]:
            assert np.array_equal(steps[0][0][key], steps[1][0][key]), key
        assert steps[0][1:4] == steps[1][1:4]
        if steps[0][2] or steps[0][3]:
            break
    with pytest.raises(ValueError, match="backend"):
        gym.make("AlgInd/VectorAdd-v0", backend="transformer-v3")


def test_structured_programs_and_mutations_run_bit_exactly(v2_backends):
    """Real skill calls (loops, calls, deep stacks) and mutated copies of them."""
    from algind_gym.cpu_v2.structured import mutate, structured_machines

    rng = np.random.default_rng(0)
    states = structured_machines(rng, np.float32, batch=2, tasks=["VectorAdd"])
    assert states, "VectorAdd's reference solution made no skill call"
    states += [mutate(s, rng) for s in states]
    for state in states:
        ref = interpreter.run(state.copy(), 400)
        assert_same(ref, v2_backends["transformer-v2"].run(state.copy(), 400), "structured")


def test_verify_cpu_structured_programs_are_long_and_match():
    """verify-cpu's structured half: skill calls of a reference solution and mutations."""
    from algind_gym.cpu.verify import verify_cpu

    result = verify_cpu(
        programs=8,
        steps=8,
        batch=8,
        dtype="float32",
        backends=("transformer-v2",),
        print_result=False,
        structured_steps=1,
        structured_tasks=["VectorAdd"],
    )
    assert result["mismatches"] == 0 and result["structured_programs"] >= 16
    assert result["structured_steps_in_programs_of_100_or_more"] > 0
    assert result["steps_checked"] == result["random_steps"] + result["structured_steps"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_million_fuzzed_steps_on_the_v2_kernel(dtype_name):
    """The issue's bar: >= 1e6 checked steps per dtype, >= half of them from structured
    programs of >= 100 steps, 0 mismatches (numba kernels of v2 and v1)."""
    from algind_gym.cpu.verify import verify_cpu

    result = verify_cpu(
        programs=40_000,
        steps=256,
        batch=1024,
        dtype=dtype_name,
        backends=("transformer-v2", "transformer"),
        print_result=False,
        structured_steps=500_000,
    )
    assert result["steps_checked"] >= 1_000_000
    assert result["structured_steps_in_programs_of_100_or_more"] >= result["steps_checked"] / 2
    assert result["mismatches"] == 0
