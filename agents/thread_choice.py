"""Per batched CPU call of a search: all the kernel's threads or one, whichever ran faster lately.

A batched CPU call on ``t > 1`` threads (:mod:`algind_gym.cpu.threads`) ends when its
last thread does, so on a machine whose cores other processes also use, a thread the OS
leaves waiting holds the whole call back, while a call on one thread runs on whatever
core is free. On the shared 2-core machine (load average 10-11, other engineers' jobs)
``experiments/bench_search.py``'s 2-thread batched evaluation ran 0.95-2.9x one action at
a time in the same repeats where the same evaluation on 1 thread ran 4.7-12x; on the quiet
machine 2 threads ran 1.2-1.25x faster than 1 (experiments/results/bench_search.txt).
Which is faster is a property of the moment, not of the program.

The kernel gives the same bits on any thread count (tested in tests/cpu/test_parallel.py),
so a search may choose per call by speed alone without changing what it finds.
:class:`ThreadChoice` is a two-armed choice on measured cost. Per arm (the search's
backend with its threads, and a twin of it on one thread) the cost is the lower median of
the wall seconds per unit of work of its last :data:`WINDOW` calls (one slow call, such
as the first parallel launch starting numba's thread pool, does not decide). A call's work
is its instructions plus :data:`WORK_PER_MACHINE` per machine: a call's time is about
affine in its instructions (fitted on 1 thread over the 64-action chunks of DotProduct's
and Mean's root: 100-160 us a call plus 39-46 ns an instruction), so seconds per
instruction alone varied 2x between chunks (10th to 90th percentile), this measure
+-13%, well below the 1.25x the arms differ by on a quiet machine. The arms are tried in
turn until each has :data:`FIRST_TRIALS` calls; then each call goes to the arm in use,
which changes when the other is cheaper by :data:`MARGIN`, except that the other arm is
tried again after ``PROBE_EVERY * (its cost / the lower cost)`` calls (at most
:data:`PROBE_MAX`), so a change of load is noticed and the trials of the slower arm cost
about ``1 / (PROBE_EVERY + 1)`` of the time. Calls on fewer machines than the kernel's
parallel threshold run on one thread whichever backend runs them and are not counted.
The measurements are shared by the searches of a process (:func:`shared_costs`).
"""

from __future__ import annotations

PROBE_EVERY = 16
"""Calls between trials of the slower arm, times its cost relative to the faster one: the
trials take about ``1 / (PROBE_EVERY + 1)`` of the time however slow that arm is (with 8
and a cap of 64 calls, the 2-thread trials on the loaded machine cost DotProduct's
evaluation a quarter of its 1-thread rate in one run)."""
PROBE_MAX = 1024
"""The most calls between two trials of the slower arm."""
WINDOW = 3
"""Calls per arm whose lower median of seconds per unit of work is the arm's cost."""
WORK_PER_MACHINE = 6
"""A machine's share of a call's cost, in instructions (the fits above: 4.3 and 7.9)."""
MARGIN = 0.05
"""The other arm takes over when it is cheaper by this fraction."""
FIRST_TRIALS = 2
"""Calls each arm runs, in turn, before the choice goes by cost."""

SERIAL, PARALLEL = 0, 1
"""The arms: the backend's twin on one thread, the backend on its threads."""


class ArmCosts:
    """What :class:`ThreadChoice` has measured: per arm (:data:`SERIAL`, :data:`PARALLEL`)
    the calls it ran (``calls``), the seconds per unit of work of its last
    :data:`WINDOW` calls (``recent``), the arm in use (``best``) and the calls since the
    other was last tried.
    """

    def __init__(self) -> None:
        self.calls = [0, 0]
        self.recent: tuple[list[float], list[float]] = ([], [])
        self.since_probe = 0
        self.best = PARALLEL


_SHARED: dict[int, ArmCosts] = {}


def shared_costs(threads: int) -> ArmCosts:
    """The process's :class:`ArmCosts` for a parallel arm of ``threads`` threads: the load
    of the machine is the same for every search of the process, so a new search (a new
    evaluator) starts from what the previous ones measured instead of trying both arms
    again (a 2-thread trial on the busy machine costs some 30 one-thread calls)."""
    return _SHARED.setdefault(int(threads), ArmCosts())


class ThreadChoice:
    """Chooses, per batched CPU call, between a backend on several threads and its
    one-thread twin by their recent wall seconds per unit of work (module docstring).

    Args:
        parallel: the search's backend (several threads).
        serial: a backend computing the same bits on one thread.
        min_machines: calls on fewer machines run serially on either backend: they use
            ``parallel`` and are not counted.
        costs: the measurements to choose by and add to (default: new ones;
            :func:`shared_costs` shares them within a process).
    """

    def __init__(self, parallel, serial, min_machines: int, costs: ArmCosts | None = None) -> None:
        self.backends = (serial, parallel)
        self.min_machines = int(min_machines)
        self.costs = ArmCosts() if costs is None else costs

    @property
    def calls(self) -> list[int]:
        """Per arm (:data:`SERIAL`, :data:`PARALLEL`), the calls it ran."""
        return self.costs.calls

    def cost(self, arm: int) -> float | None:
        """The lower median of ``arm``'s seconds per unit of work over its last
        :data:`WINDOW` calls (None before its first)."""
        recent = sorted(self.costs.recent[arm])
        return recent[(len(recent) - 1) // 2] if recent else None

    def pick(self, machines: int) -> tuple[object, int | None]:
        """The backend for a call on ``machines`` machines and its arm (None: not a choice,
        below ``min_machines``)."""
        if machines < self.min_machines:
            return self.backends[PARALLEL], None
        if min(self.calls) < FIRST_TRIALS:  # in turn, the parallel arm first
            arm = PARALLEL if self.calls[PARALLEL] <= self.calls[SERIAL] else SERIAL
            return self.backends[arm], arm
        serial, parallel = self.cost(SERIAL), self.cost(PARALLEL)
        best = self.costs.best
        other = 1 - best
        if self.cost(other) < (1 - MARGIN) * self.cost(best):
            best, other = other, best
            self.costs.best = best
        low, high = min(serial, parallel), max(serial, parallel)
        period = min(PROBE_MAX, PROBE_EVERY * high / max(low, 1e-300))
        if self.costs.since_probe >= period:
            self.costs.since_probe = 0
            return self.backends[other], other
        self.costs.since_probe += 1
        return self.backends[best], best

    def record(self, arm: int | None, seconds: float, instructions: int, machines: int) -> None:
        """Count a call of ``arm`` that took ``seconds`` for ``instructions`` instructions
        on ``machines`` machines (nothing for ``arm`` None)."""
        if arm is None:
            return
        recent = self.costs.recent[arm]
        recent.append(seconds / max(int(instructions) + WORK_PER_MACHINE * int(machines), 1))
        if len(recent) > WINDOW:
            del recent[0]
        self.costs.calls[arm] += 1

    @property
    def parallel_share(self) -> float:
        """The fraction of counted calls (of every choice sharing its :class:`ArmCosts`)
        that ran on several threads (0 before any)."""
        total = sum(self.calls)
        return self.calls[PARALLEL] / total if total else 0.0


_TWINS: dict[int, tuple[object, object]] = {}


def serial_twin(backend):
    """A one-thread twin of ``backend`` when it is the numba kernel on the CPU on several
    threads (:class:`~algind_gym.cpu.backend.TransformerBackend`, fused path), else None:
    no choice to make. One twin per backend object for the life of the process (it keeps
    the backend alive), so the searches sharing a backend (a backend named by a string is
    one object per process) share its compiled CPUs instead of building them again
    (0.17 s for a task's layout)."""
    import torch

    from algind_gym.cpu.backend import TransformerBackend

    if not isinstance(backend, TransformerBackend) or backend.threads <= 1:
        return None
    if backend.path != "fused" or backend.kernel == "torch":
        return None
    if torch.device(backend.device).type != "cpu":
        return None
    hit = _TWINS.get(id(backend))
    if hit is None or hit[0] is not backend:
        twin = TransformerBackend(backend.path, backend.device, backend.kernel, threads=1)
        hit = _TWINS[id(backend)] = (backend, twin)
    return hit[1]
