"""The RL experiment scripts keep working: ``bench_rl.py`` on a tiny workload, and the
table script's markdown from rows (figures are not checked: speed is measured by the
benchmarks themselves, never in tests)."""

from __future__ import annotations

import pytest

from tests.experiment_scripts import load_experiment

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")


def test_bench_rl_reports_both_vector_envs_and_their_ratio(capsys):
    bench = load_experiment("bench_rl")
    rows = bench.main(["--timesteps", "64", "--n-envs", "2"])
    for mode in ("vector_entry_point", "sync"):
        r = rows[mode]
        assert r["timesteps"] >= 64
        assert r["steps_per_s"] > 0 and r["steps_per_cpu_s"] > 0
        assert 0 < r["env_time_fraction"] < 1
    ratio = rows["vector_entry_point"]["steps_per_s"] / rows["sync"]["steps_per_s"]
    assert rows["ratio_steps_per_s"] == pytest.approx(ratio)
    out = capsys.readouterr().out
    assert "steps per CPU-s" in out and "batched / sync" in out


def _row(seed, success, first, algo="maskable_ppo"):
    return {
        "algo": algo,
        "policy": "transformer",
        "envs": "VectorAdd",
        "seed": seed,
        "budget": 3000,
        "timesteps": 3072,
        "success_rate": success,
        "accuracy_8x": success,
        "timesteps_to_first_success": first,
        "timesteps_to_greedy_success": None,
        "wall_time_s": 10.0 * (seed + 1),
        "steps_per_s": 100.0,
    }


def test_table_markdown_averages_seeds_and_counts_a_duplicate_row_once():
    table = load_experiment("rl_table")
    rows = [_row(0, 1.0, 100), _row(1, 0.5, None), _row(2, 0.0, 300), _row(2, 0.0, 300)]
    lines = table.markdown(rows).splitlines()
    assert len(lines) == 3  # header, rule, one configuration
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:5] == ["VectorAdd", "maskable_ppo", "transformer", "3000", "3"]
    assert cells[5] == "0.50 (1.00 / 0.50 / 0.00)"
    # a seed that never solved an episode: no mean, its value shown as "-"
    assert cells[7] == "- (100 / - / 300)"
    assert cells[9] == "20"


def test_prior_markdown_counts_solved_seeds_and_marks_unsolved_ones():
    prior = load_experiment("rl_prior")

    def row(seed, name, success, actions):
        return {
            "seed": seed,
            "budget": 1000,
            "task": "Max",
            "prior": name,
            "success": success,
            "actions_evaluated": actions,
        }

    data = {
        "clones": {"0": {"demonstrations": ["Copy"], "pairs": 4, "accuracy": 1.0}},
        "rows": [
            row(0, "uniform", False, 1000),
            row(1, "uniform", True, 127),
            row(0, "learned", True, 64),
        ],
    }
    lines = prior.markdown(data).splitlines()
    assert lines[0].startswith("Seed 0: learned prior cloned on 1 level-1 programs (Copy)")
    assert "| Max | solved 1/2: >1000 / 127 | solved 1/1: 64 / - |" in lines
