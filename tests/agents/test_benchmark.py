"""The benchmark grid: local process pool and a local Ray instance give identical results,
cells are saved as they finish and an interrupted grid resumes, reports validate, bad input
gets clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from agents.bench_report import leaderboard, validate_bench_results, write_bench_report
from agents.benchmark import BENCH_FILE, cell_name, check_ray_address, run_benchmark, run_cell
from agents.result import SolveResult
from algind_gym.cli import main

GRID = {"agents": ["random"], "tasks": ["Negate", "AddTen"], "seeds": [0, 1]}
KW = {"budget": 120, "max_calls": 2, "imports": ["tests.agents.tiny_tasks"], "workers": 1}


@pytest.fixture
def tiny():
    from tests.agents import tiny_tasks

    tiny_tasks.register()
    yield
    tiny_tasks.unregister()


def _comparable(results):
    return [SolveResult.from_dict(r).comparable() for r in results]


def test_local_grid_saves_cells_resumes_and_reports(tiny, tmp_path, monkeypatch):
    done = []
    results = run_benchmark(**GRID, out=tmp_path, **KW, on_cell=lambda c, r: done.append(c))
    assert len(results) == len(done) == 4
    assert [(r["agent"], r["task"], r["seed"]) for r in results] == [
        ("random", t, s) for t in GRID["tasks"] for s in GRID["seeds"]
    ]
    assert any(r["success"] for r in results)
    # an interrupted grid: one cell missing -> only that cell runs again, identically (here
    # in this process: the cell function the pool runs, without a second pool's start-up)
    missing = tmp_path / "cells" / f"{cell_name('random', 'AddTen', 1)}.json"
    missing.unlink()

    def inline(jobs, workers, on_done):
        for cell, args in jobs:
            on_done(cell, run_cell(*args))

    monkeypatch.setattr("agents.benchmark._run_local", inline)
    again = []
    resumed = run_benchmark(**GRID, out=tmp_path, **KW, on_cell=lambda c, r: again.append(c))
    assert again == [("random", "AddTen", 1)]
    assert _comparable(resumed) == _comparable(results)
    # reports
    settings = json.loads((tmp_path / BENCH_FILE).read_text())
    data = write_bench_report(settings, resumed, tmp_path)
    validate_bench_results(json.loads((tmp_path / "results.json").read_text()))
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert len(rows) == 4 and {r["level"] for r in rows} == {"1"}
    assert sum(int(r["success"]) for r in rows) == sum(r["success"] for r in results)
    (board,) = leaderboard(data)
    assert board["solved"] == sum(r["success"] for r in results) and board["cells"] == 4
    assert "| 1 | random |" in (tmp_path / "leaderboard.md").read_text()
    assert (tmp_path / "success_vs_actions.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_ray_grid_matches_the_local_grid(tiny, tmp_path):
    pytest.importorskip("ray")
    kw = {**KW, "workers": 2}
    local = run_benchmark(**GRID, out=tmp_path / "local", **kw)
    ray_results = run_benchmark(**GRID, out=tmp_path / "ray", executor="ray", **kw)
    assert _comparable(ray_results) == _comparable(local)
    import ray

    assert not ray.is_initialized()  # the local Ray instance was stopped


def test_bad_input_gets_clear_errors(tmp_path):
    grid = {"agents": ["random"], "tasks": ["Negate"], "seeds": [0]}
    with pytest.raises(ValueError, match="unknown agent 'nosuch'"):
        run_benchmark(["nosuch"], ["Negate"], [0], tmp_path)
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        run_benchmark(**grid, out=tmp_path, executor="slurm")
    with pytest.raises(ValueError, match="pass --executor ray"):
        run_benchmark(**grid, out=tmp_path, address="127.0.0.1:6379")
    with pytest.raises(ValueError, match="unknown task 'Nope'"):
        run_benchmark(["random"], ["Nope"], [0], tmp_path)
    with pytest.raises(ValueError, match=r"cannot reach a Ray cluster at 127\.0\.0\.1:1"):
        check_ray_address("127.0.0.1:1", timeout=2)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        check_ray_address("nonsense")
    (tmp_path / BENCH_FILE).write_text(json.dumps({"budget": 5}))
    with pytest.raises(ValueError, match=r"holds a different benchmark grid.*--force"):
        run_benchmark(**grid, out=tmp_path, budget=10)


def test_bench_cli_errors(tmp_path, capsys):
    base = ["bench", "--agents", "random", "--out", str(tmp_path)]
    assert main([*base, "--tasks", "Negate", "--executor", "ray", "--address", "127.0.0.1:1"]) == 2
    try:
        import ray  # noqa: F401

        expected = "cannot reach a Ray cluster at 127.0.0.1:1"
    except ImportError:  # the [ray] extra is optional: then the error names it
        expected = "the ray executor needs Ray: pip install 'algind-gym[ray]'"
    assert expected in capsys.readouterr().err
    assert main([*base, "--levels", "42"]) == 2
    assert "no task has level [42]" in capsys.readouterr().err
    assert main([*base, "--tasks", "Negate", "--seeds", "a-b"]) == 2
    assert "--seeds: expected integers" in capsys.readouterr().err
