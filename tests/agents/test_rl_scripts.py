"""The RL experiment scripts keep working: ``bench_rl.py`` on a tiny workload, and the
table script's markdown from rows (figures are not checked: speed is measured by the
benchmarks themselves, never in tests)."""

from __future__ import annotations

import json

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


def test_dotproduct_curriculum_switches_by_its_rule_and_a_rerun_resumes(tmp_path, monkeypatch):
    dot = load_experiment("rl_dotproduct")
    argv = [
        "--seeds", "3", "--stage1-tasks", "Sum,DotProduct", "--chunk", "512",
        "--stage1-max", "512", "--stage2-max", "512", "--eval-episodes", "1",
        "--final-episodes", "1", "--switch-at", "0.0", "--work", str(tmp_path / "w"),
        "--out", str(tmp_path / "rows.json"),
    ]  # fmt: skip
    # a STOP file in the work folder ends the run after its current chunk ...
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "STOP").touch()
    with pytest.raises(SystemExit, match="stopped after a chunk"):
        dot.main(argv)
    assert not (tmp_path / "rows.json").exists()
    state = json.loads((tmp_path / "w" / "seed3" / "state.json").read_text())
    assert len(state["stage1"]["chunks"]) == 1 and "stage2" not in state
    # ... and the same command without it resumes from there
    (tmp_path / "w" / "STOP").unlink()
    dot.main(argv)
    (row,) = json.loads((tmp_path / "rows.json").read_text())
    # switch-at 0: the rule holds after the first chunk; stage 2 stops at its budget
    assert row["switch_at_timesteps"] == 512 and row["switch_reason"] == "rule"
    assert len(row["stage1"]["chunks"]) == 1 and row["stage2_timesteps"] == 512
    assert row["total_timesteps"] == 1024
    t = row["transformer"]
    assert t["longest"] == 64 and set(t["generalisation"]) >= {"1", "64"}
    assert isinstance(t["program_longest"], str)
    # the MLP policy gets the same total budget
    assert row["mlp"]["timesteps"] == 1024
    assert (tmp_path / "w" / "seed3" / "stage2" / "checkpoint.zip").is_file()

    # a rerun resumes from the recorded state: nothing is trained again
    def no_training(*a, **k):
        raise AssertionError("a finished stage was trained again")

    monkeypatch.setattr(dot, "train", no_training)
    dot.main(argv)
    assert json.loads((tmp_path / "rows.json").read_text()) == [row]
    table = dot.markdown([row])
    assert "| 3 | transformer | 512 (rule) | 512 (budget) | 1024 |" in table
    lines = dot.progress(tmp_path / "w").splitlines()
    assert "| 3 | stage1 | 512 | Sum " in lines[2] and "DotProduct" in lines[2]
    assert lines[3].startswith("| 3 | stage2 | 512 | DotProduct ")


def test_dotproduct_length_invariant_flag_reaches_the_policy_kwargs_and_the_table(tmp_path):
    import yaml

    dot = load_experiment("rl_dotproduct")
    for on in (True, False):
        path = dot.write_hyperparams(tmp_path, 3, length_invariant=on)
        data = yaml.safe_load(path.read_text())
        kwargs = data["policy-transformer"]["policy_kwargs"]
        assert kwargs.get("length_invariant", False) is on
        assert data["default"]["n_eval_episodes"] == 3
    row = {
        "seed": 0, "length_invariant": True, "switch_at_timesteps": 1, "switch_reason": "rule",
        "stage2_timesteps": 2, "stage2_reason": "budget", "total_timesteps": 3,
        "transformer": {"success_rate": 1.0, "accuracy_longest": 1.0, "longest": 64},
        "transformer_wall_s": 5.0,
    }  # fmt: skip
    assert "| 0 | transformer (length-invariant) | 1 (rule) |" in dot.markdown([row])


def test_dotproduct_equal_failure_returns_flag_reaches_the_hyperparameters_and_the_table(
    tmp_path,
):
    import yaml
    from sb3_contrib import MaskablePPO

    from agents.rl.hyperparams import load_hyperparams

    dot = load_experiment("rl_dotproduct")
    entries = ["default", "policy-transformer", "AlgInd/DotProduct-v0"]
    for on in (True, False):
        path = dot.write_hyperparams(tmp_path, 3, True, equal_failure_returns=on)
        merged = load_hyperparams(MaskablePPO, entries, path)  # what train() reads
        assert merged["env_kwargs"].get("fault_penalty", 1.0) == (0.0 if on else 1.0)
        assert merged.get("bootstrap_truncation", True) is (not on)
        mlp = load_hyperparams(MaskablePPO, ["default", "AlgInd/DotProduct-v0"], path)
        assert mlp["env_kwargs"].get("fault_penalty", 1.0) == (0.0 if on else 1.0)
        assert yaml.safe_load(path.read_text())["policy-transformer"]["policy_kwargs"][
            "length_invariant"
        ]
    # --call-limit-terminal: the bootstrap setting alone
    path = dot.write_hyperparams(tmp_path, 3, True, call_limit_terminal=True)
    merged = load_hyperparams(MaskablePPO, entries, path)
    assert merged["bootstrap_truncation"] is False
    assert merged["env_kwargs"].get("fault_penalty", 1.0) == 1.0
    row = {
        "seed": 0, "length_invariant": True, "equal_failure_returns": True,
        "switch_at_timesteps": 1, "switch_reason": "rule", "stage2_timesteps": 2,
        "stage2_reason": "budget", "total_timesteps": 3,
        "transformer": {"success_rate": 1.0, "accuracy_longest": 1.0, "longest": 64},
        "transformer_wall_s": 5.0,
    }  # fmt: skip
    assert "| 0 | transformer (length-invariant, equal failures) | 1 (rule) |" in dot.markdown(
        [row]
    )
