"""The benchmark grid: agents x tasks x seeds, on a local process pool or a Ray cluster.

Each cell is one :func:`agents.solve` call (one agent, one task, one seed, the same budget
and library for every cell). :func:`run_benchmark` runs the cells that are not done yet on
an executor and writes each cell's :class:`~agents.result.SolveResult` to
``DIR/cells/<agent>__<task>__<seed>.json`` (atomically) as soon as it finishes, so an
interrupted grid resumes where it stopped: run the same command again. ``DIR/bench.json``
holds the grid's settings; a directory holding a different grid is refused (``force=True``
starts over).

Executors give identical results for the same seeds, because a cell's result depends only
on its arguments (:meth:`SolveResult.comparable` drops the wall time):

* ``local`` (default): :class:`concurrent.futures.ProcessPoolExecutor` with ``spawn``
  workers (``workers`` processes, default the machine's CPU count);
* ``ray``: one Ray task per cell (``pip install 'algind-gym[ray]'``). Without ``address``
  a local Ray instance is started and stopped; with ``address`` (``HOST:PORT`` of a head
  node started by ``ray start --head``, or ``auto``) the run joins that cluster, whose nodes
  need algind-gym installed. An address that cannot be reached is an error naming it.

User tasks reach the workers through ``imports`` (modules each worker imports before
solving). When the grid is complete, :func:`agents.bench_report.write_bench_report` writes
``results.json``, ``results.csv``, ``leaderboard.md`` and ``success_vs_actions.png``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agents.api import AGENTS, resolve_library, resolve_task
from agents.result import SolveResult
from algind_gym.atomic import atomic_write_text
from algind_gym.skills.library import SkillLibrary

BENCH_FILE = "bench.json"
EXECUTORS = ("local", "ray")


def run_cell(
    agent: str,
    task: str,
    seed: int,
    settings: dict[str, Any],
    library: dict[str, Any] | None,
    imports: Sequence[str] = (),
) -> dict[str, Any]:
    """One grid cell in a worker: import the user's task modules, solve, return the result
    as a dict (``SolveResult.to_dict``)."""
    from agents.api import solve
    from agents.curriculum_commands import import_task_modules

    import_task_modules(list(imports))
    lib = None if library is None else SkillLibrary.from_json(library)
    result = solve(
        task,
        agent=agent,
        library=lib,
        budget=settings["budget"],
        seed=seed,
        n_examples=settings["n_examples"],
        max_calls=settings["max_calls"],
        **settings["options"],
    )
    return result.to_dict()


def cell_name(agent: str, task: str, seed: int) -> str:
    return f"{agent}__{task}__{seed}"


def grid_cells(agents: Sequence[str], tasks: Sequence[str], seeds: Sequence[int]) -> list[tuple]:
    """Every (agent, task, seed), agents outermost."""
    return [(a, t, int(s)) for a in agents for t in tasks for s in seeds]


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Raise ``ValueError`` naming ``address`` if no Ray head answers there (a TCP probe,
    so that a wrong address fails in seconds rather than after Ray's own retries)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(
            f"--address {address!r}: expected HOST:PORT (e.g. 10.0.0.1:6379, the address "
            "`ray start --head` prints), ray://HOST:PORT or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(
            f"cannot reach a Ray cluster at {address} ({e}); start one with `ray start --head` "
            "and pass the address it prints, or drop --address to run on a local Ray instance"
        ) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            "the ray executor needs Ray: pip install 'algind-gym[ray]' (or pip install ray)"
        ) from None
    return ray


def _run_local(jobs, workers: int | None, on_done: Callable) -> None:
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_cell, *args): cell for cell, args in jobs}
        try:
            for f in as_completed(futures):
                on_done(futures[f], f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run_ray(jobs, workers: int | None, address: str | None, on_done: Callable) -> None:
    ray = _import_ray()
    if address:
        check_ray_address(address)
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            # local workers import this checkout (a cluster's nodes use their own install)
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in _pythonpath() if p)}}
            kwargs.update(
                num_cpus=workers or os.cpu_count(), include_dashboard=False, runtime_env=env
            )
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError) as e:
            raise ValueError(
                f"cannot start or join Ray (address {address or 'local'}): {e}; check the "
                "address printed by `ray start --head`"
            ) from None
    try:
        remote = ray.remote(run_cell)
        pending = {remote.remote(*args): cell for cell, args in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                on_done(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def _pythonpath() -> list[str]:
    """The driver's import path for local Ray workers (so they import this checkout)."""
    root = str(Path(__file__).resolve().parent.parent)
    return [root, os.environ.get("PYTHONPATH", "")]


def run_benchmark(
    agents: Sequence[str],
    tasks: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    budget: int = 2000,
    n_examples: int = 8,
    max_calls: int = 6,
    options: dict[str, Any] | None = None,
    library: SkillLibrary | str | Path | None = None,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    imports: Sequence[str] = (),
    force: bool = False,
    on_cell: Callable[[tuple, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the grid in ``out``; returns the cells' result dicts in grid order.

    Args:
        agents, tasks, seeds: the grid (registered agent names, task names, integers).
        out: output directory (``bench.json``, ``cells/``).
        budget, n_examples, max_calls, options: the same for every cell.
        library: the library every cell starts from (default: the built-in skills).
        executor: ``"local"`` or ``"ray"``; ``address`` joins a Ray cluster.
        workers: processes (local) or CPUs of a local Ray instance.
        imports: modules every worker imports first (user tasks).
        force: start over if ``out`` holds a different grid.
        on_cell: ``callback((agent, task, seed), result)`` as each cell finishes.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if address and executor != "ray":
        raise ValueError("--address joins a Ray cluster; pass --executor ray with it")
    if not agents or not tasks or not seeds:
        raise ValueError("the grid needs at least one agent, one task and one seed")
    for a in agents:
        if a not in AGENTS:
            raise ValueError(f"unknown agent {a!r}; choose one of {sorted(AGENTS)}")
    tasks = [resolve_task(t).name for t in tasks]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive integer (actions to evaluate), got {budget!r}")
    lib = resolve_library(library)
    settings = {
        "agents": list(agents),
        "tasks": list(tasks),
        "seeds": [int(s) for s in seeds],
        "budget": budget,
        "n_examples": n_examples,
        "max_calls": max_calls,
        "options": dict(options or {}),
        "library": lib.keys(),
        "imports": list(imports),
    }
    out = Path(out)
    _open_grid(out, settings, force)
    lib_json = None if library is None else lib.to_json()
    cells = grid_cells(agents, tasks, seeds)
    results: dict[tuple, dict[str, Any]] = {}
    for cell in cells:
        path = out / "cells" / f"{cell_name(*cell)}.json"
        if path.is_file():
            results[cell] = SolveResult.from_dict(json.loads(path.read_text())).to_dict()

    def on_done(cell: tuple, data: dict[str, Any]) -> None:
        SolveResult.from_dict(data)  # validates before anything is written
        atomic_write_text(out / "cells" / f"{cell_name(*cell)}.json", json.dumps(data) + "\n")
        results[cell] = data
        if on_cell is not None:
            on_cell(cell, data)

    jobs = [
        (cell, (*cell, settings, lib_json, tuple(imports))) for cell in cells if cell not in results
    ]
    if jobs:
        if executor == "local":
            _run_local(jobs, workers, on_done)
        else:
            _run_ray(jobs, workers, address, on_done)
    return [results[c] for c in cells]


def _open_grid(out: Path, settings: dict[str, Any], force: bool) -> None:
    path = out / BENCH_FILE
    if path.is_file() and not force:
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            saved = None
        if saved != settings:
            diff = (
                sorted(k for k in settings if saved.get(k) != settings[k])
                if isinstance(saved, dict)
                else ["(unreadable bench.json)"]
            )
            raise ValueError(
                f"{out} holds a different benchmark grid (differs in {', '.join(diff)}); "
                "choose another --out, or pass --force to start over"
            )
    elif force and (out / "cells").is_dir():
        for f in (out / "cells").glob("*.json"):
            f.unlink()
    atomic_write_text(path, json.dumps(settings, indent=1) + "\n")
