"""The per-call choice between the kernel's threads and one (agents/thread_choice.py)."""

from __future__ import annotations

import numpy as np
import pytest

from agents.api import SolveContext, resolve_task
from agents.batched import ActionEvaluator
from agents.thread_choice import (
    FIRST_TRIALS,
    MARGIN,
    PARALLEL,
    PROBE_EVERY,
    PROBE_MAX,
    SERIAL,
    WORK_PER_MACHINE,
    ArmCosts,
    ThreadChoice,
    serial_twin,
    shared_costs,
)
from algind_gym.cpu.backend import TransformerBackend, make_backend
from algind_gym.cpu.threads import max_threads
from algind_gym.skills import builtin_library

SLOW, FAST = "parallel backend", "serial backend"


def drive(choice: ThreadChoice, calls: int, cost: dict[int, float]) -> list[int]:
    """``calls`` counted calls on 512 machines, each arm taking ``cost[arm]`` seconds per
    unit of work; the arms picked, in order."""
    picked, work = [], 10_000
    for _ in range(calls):
        backend, arm = choice.pick(512)
        assert backend is choice.backends[arm]
        choice.record(arm, cost[arm] * work, work - WORK_PER_MACHINE * 512, 512)
        picked.append(arm)
    return picked


def test_arms_are_tried_in_turn_then_the_cheaper_one_runs_and_the_other_is_probed():
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    picked = drive(choice, 2 * FIRST_TRIALS, {SERIAL: 1.0, PARALLEL: 3.0})
    assert picked == [PARALLEL, SERIAL] * FIRST_TRIALS
    # serial is 3x cheaper: it runs, and parallel is tried again every PROBE_EVERY * 3 calls
    picked = drive(choice, 200, {SERIAL: 1.0, PARALLEL: 3.0})
    probes = [i for i, arm in enumerate(picked) if arm == PARALLEL]
    period = PROBE_EVERY * 3
    assert probes == list(range(period, 200, period + 1)) and len(probes) >= 2
    assert choice.calls == [FIRST_TRIALS + 200 - len(probes), FIRST_TRIALS + len(probes)]
    # a far slower arm is still tried, at most PROBE_MAX calls apart
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    n = 2 * PROBE_MAX + 10
    picked = drive(choice, 2 * FIRST_TRIALS + n, {SERIAL: 1.0, PARALLEL: 1000.0})
    probes = [i for i, arm in enumerate(picked[2 * FIRST_TRIALS :]) if arm == PARALLEL]
    assert probes == [PROBE_MAX, 2 * PROBE_MAX + 1]


def test_the_choice_follows_a_change_of_load():
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    drive(choice, 50, {SERIAL: 1.0, PARALLEL: 4.0})  # a busy machine: serial wins
    assert choice.cost(SERIAL) < choice.cost(PARALLEL)
    picked = drive(choice, 400, {SERIAL: 1.0, PARALLEL: 0.8})  # the load went away
    # after two probes (at most PROBE_EVERY * 4 + 1 calls apart) the lower median of
    # parallel's last three calls is the cheaper: parallel runs from then on but for probes
    switched = next(i for i in range(len(picked)) if picked[i : i + 3] == [PARALLEL] * 3)
    assert switched <= 2 * (PROBE_EVERY * 4 + 1)
    assert picked[-100:].count(PARALLEL) >= 100 - 100 // (PROBE_EVERY + 1) - 1


def test_one_slow_call_does_not_decide():
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    choice.record(PARALLEL, 500.0, 1000, 0)  # a first parallel launch starting the pool
    choice.record(SERIAL, 1.2, 1000, 0)
    choice.record(PARALLEL, 1.0, 1000, 0)
    choice.record(SERIAL, 1.2, 1000, 0)
    assert choice.cost(PARALLEL) == pytest.approx(1e-3)  # the lower median of 500, 1
    assert choice.pick(512) == (SLOW, PARALLEL)


def test_small_calls_are_not_a_choice():
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    assert choice.pick(255) == (SLOW, None)
    choice.record(None, 1.0, 10, 8)
    assert choice.calls == [0, 0] and choice.cost(SERIAL) is None
    assert choice.parallel_share == 0.0


def test_serial_twin_only_for_the_numba_kernel_on_several_threads():
    assert serial_twin(make_backend("reference")) is None
    assert serial_twin(make_backend("transformer", threads=1)) is None
    assert serial_twin(make_backend("transformer-torch")) is None
    if max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1): no parallel backend")
    backend = make_backend("transformer", threads=2)
    twin = serial_twin(backend)
    assert isinstance(twin, TransformerBackend) and twin.threads == 1
    assert serial_twin(backend) is twin  # one per backend: its compiled CPUs are reused
    assert serial_twin(make_backend("transformer", threads=2)) is not twin


def test_evaluation_is_the_same_on_either_arm():
    """Calls on both arms (the first four alternate) give the one-at-a-time outcomes."""
    if max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1): no parallel backend")
    spec, lib = resolve_task("DotProduct"), builtin_library()

    def evaluator(batched: bool) -> ActionEvaluator:
        backend = make_backend("transformer", threads=2)
        ctx = SolveContext(spec, lib, 10**6, 0, n_examples=8, backend=backend)
        return ActionEvaluator(ctx, batched=batched, adaptive_threads=True)

    many, one = evaluator(True), evaluator(False)
    many.reserve(32)
    many.thread_choice.costs = ArmCosts()  # not the process's: both arms tried first
    actions = np.random.default_rng(0).choice(many.valid_actions, 4 * 32, replace=False)
    for lo in range(0, len(actions), 32):  # 32 children x 8 examples = 256 machines a call
        chunk = actions[lo : lo + 32]
        got, want = many.evaluate(many.root_memory, chunk), one.evaluate(one.root_memory, chunk)
        for x, y in zip(got, want, strict=True):
            assert (x.key, x.potential, x.fault, x.instructions, x.value) == (
                y.key,
                y.potential,
                y.fault,
                y.instructions,
                y.value,
            )
    assert many.thread_choice.calls == [2, 2]


def test_the_measurements_are_shared_by_the_evaluators_of_a_process():
    if max_threads() < 2:
        pytest.skip("numba has one thread here (NUMBA_NUM_THREADS=1): no parallel backend")
    spec, lib = resolve_task("DotProduct"), builtin_library()
    evs = []
    for seed in (0, 1):
        ctx = SolveContext(spec, lib, 10**6, seed, backend=make_backend("transformer", threads=2))
        ev = ActionEvaluator(ctx, batched=True, adaptive_threads=True)
        ev.reserve(8)
        evs.append(ev)
    assert evs[0].thread_choice.costs is evs[1].thread_choice.costs is shared_costs(2)
    ctx = SolveContext(spec, lib, 10**6, 0, backend=make_backend("transformer", threads=2))
    fixed = ActionEvaluator(ctx, batched=True)  # the default: the backend's threads
    fixed.reserve(8)
    assert fixed.thread_choice is None


def test_work_counts_machines_and_the_arm_in_use_keeps_running_within_the_margin():
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    choice.record(SERIAL, 2.0, 1000 - WORK_PER_MACHINE * 100, 100)
    assert choice.cost(SERIAL) == pytest.approx(2e-3)  # 2 s for 1000 units of work
    choice = ThreadChoice(SLOW, FAST, min_machines=256)
    near = 1 - MARGIN / 2
    picked = drive(choice, 100, {SERIAL: near, PARALLEL: 1.0})
    assert picked[2 * FIRST_TRIALS :].count(SERIAL) <= 100 // PROBE_EVERY  # only trials
    picked = drive(choice, 100, {SERIAL: 1 - 2 * MARGIN, PARALLEL: 1.0})
    assert picked[-50:].count(SERIAL) >= 50 - 50 // PROBE_EVERY - 1
