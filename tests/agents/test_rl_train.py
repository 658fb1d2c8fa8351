"""RL training entry points: every algorithm end to end, save/reload, resume, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

import algind_gym
from agents import solve, validate_result
from agents.rl.evaluate import (
    ModelError,
    load_model,
    make_eval_env,
    read_model_meta,
    rollout,
)
from agents.rl.hyperparams import HyperparamsError
from agents.rl.masked_dqn import MaskedDQN
from agents.rl.train import TrainingCallback, train
from algind_gym.cli import main

SMALL = """
default:
  n_envs: 4
  eval_freq: 100000
  n_eval_episodes: 1
  env_kwargs:
    observation_mode: compact
    action_encoding: discrete
    n_examples: 2
"""
ALGO_SMALL = {
    "ppo": "  n_steps: 32\n  batch_size: 64\n  n_epochs: 1\n",
    "a2c": "  n_steps: 8\n",
    "maskable_ppo": "  n_steps: 32\n  batch_size: 64\n  n_epochs: 1\n",
    "dqn": "  learning_starts: 32\n  buffer_size: 1000\n  batch_size: 16\n  train_freq: 1\n",
}


def small_yaml(tmp_path, algo: str, extra: str = "") -> str:
    path = tmp_path / f"{algo}.yml"
    path.write_text(SMALL + ALGO_SMALL[algo] + extra)
    return str(path)


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "maskable_ppo"])
def test_each_algo_trains_saves_reloads_and_replays_the_same_actions(tmp_path, algo):
    out = tmp_path / "run"
    res = train(algo, "Copy", timesteps=128, hyperparams=small_yaml(tmp_path, algo), out=out)
    s = res.summary
    assert s["timesteps"] >= 128 and s["algo"] == algo
    assert set(s["generalisation"]) == {"1", "2", "4", "8", "16", "64", "128"}
    assert (out / "model.zip").is_file() and (out / "checkpoint.zip").is_file()
    assert any((out / "tb").rglob("events.out.tfevents*"))
    meta = read_model_meta(out / "model.zip")
    assert meta["library_version"] == algind_gym.__version__
    assert meta["hyperparams"]["n_envs"] == 4
    loaded = load_model(out / "model.zip")
    env = make_eval_env(meta, "AlgInd/Copy-v0")
    for seed in range(3):
        a = rollout(res.model, algo, env, seed=seed)["actions"]
        b = rollout(loaded, algo, env, seed=seed)["actions"]
        assert a == b


def test_masked_dqn_never_chooses_a_masked_action(tmp_path):
    res = train("dqn", "VectorAdd", timesteps=64, hyperparams=small_yaml(tmp_path, "dqn"))
    model: MaskedDQN = res.model
    env = make_eval_env(model.algind_meta, "AlgInd/VectorAdd-v0")
    obs, _ = env.reset(seed=0)
    mask = env.action_masks()
    model.exploration_rate = 1.0  # every choice exploratory
    explored = {int(model.predict(obs, action_masks=mask)[0]) for _ in range(200)}
    assert all(mask[a] for a in explored) and len(explored) > 10
    greedy, _ = model.predict(obs, deterministic=True, action_masks=mask)
    assert mask[int(greedy)]
    # the replay buffer keeps each transition's next-state mask for the TD target
    buf = model.replay_buffer
    assert buf.next_masks[: buf.pos].sum(axis=-1).min() == mask.sum()


def test_trained_policy_is_a_solve_agent(tmp_path):
    out = tmp_path / "run"
    train(
        "maskable_ppo",
        "VectorAdd",
        timesteps=64,
        hyperparams=small_yaml(tmp_path, "maskable_ppo"),
        out=out,
    )
    r = solve("VectorAdd", agent="maskable_ppo", model=str(out / "model.zip"), budget=40, seed=1)
    validate_result(r.to_dict())
    assert r.agent == "maskable_ppo" and 1 <= r.actions_evaluated <= 40
    with pytest.raises(ValueError, match="trained with maskable_ppo; use --agent maskable_ppo"):
        solve("VectorAdd", agent="ppo", model=str(out / "model.zip"), budget=5)
    with pytest.raises(ValueError, match="needs a trained model"):
        solve("VectorAdd", agent="ppo", budget=5)


def test_interrupted_training_keeps_its_checkpoint_and_resumes(tmp_path, monkeypatch):
    hp_path = Path(small_yaml(tmp_path, "ppo"))
    hp_path.write_text(hp_path.read_text().replace("eval_freq: 100000", "eval_freq: 128"))
    out = tmp_path / "run"
    calls = {"n": 0}
    original = TrainingCallback.evaluate

    def interrupt_second(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(TrainingCallback, "evaluate", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        train("ppo", "Copy", timesteps=1024, hyperparams=hp_path, out=out)
    monkeypatch.undo()
    ckpt = out / "checkpoint.zip"
    saved_at = load_model(ckpt).num_timesteps
    assert 128 <= saved_at < 1024
    with pytest.raises(ValueError, match="--resume"):
        train("ppo", "Copy", timesteps=1024, hyperparams=hp_path, out=out)
    res = train("ppo", "Copy", timesteps=1024, hyperparams=hp_path, out=out, resume=True)
    assert res.summary["timesteps"] >= 1024
    assert load_model(out / "model.zip").num_timesteps == res.summary["timesteps"]


def test_bad_yaml_gets_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text("default:\n  n_steps: [1, 2\n")
    with pytest.raises(HyperparamsError, match=r"not valid YAML at line \d+"):
        train("ppo", "VectorAdd", hyperparams=bad)
    bad.write_text("default:\n  n_stepz: 32\n")
    with pytest.raises(HyperparamsError, match=r"unknown hyperparameter\(s\) \['n_stepz'\]"):
        train("ppo", "VectorAdd", hyperparams=bad)
    bad.write_text("default: 3\n")
    with pytest.raises(HyperparamsError, match="entry 'default' must be a mapping"):
        train("ppo", "VectorAdd", hyperparams=bad)
    bad.write_text("default:\n  policy_kwargs: 'dict(net_arch=[64])'\n")
    with pytest.raises(HyperparamsError, match="must be a mapping"):
        train("ppo", "VectorAdd", hyperparams=bad)
    bad.write_text("default:\n  n_steps: [1, 2\n")
    assert main(["train", "--algo", "ppo", "--env", "VectorAdd", "--hyperparams", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_incompatible_choices_name_the_fix(tmp_path):
    hp = tmp_path / "md.yml"
    hp.write_text("default:\n  env_kwargs:\n    action_encoding: multidiscrete\n")
    with pytest.raises(ValueError, match="DQN needs action_encoding='discrete'"):
        train("dqn", "VectorAdd", hyperparams=hp)
    with pytest.raises(ValueError, match="observation_mode: tables"):
        train(
            "maskable_ppo",
            "VectorAdd",
            policy="transformer",
            hyperparams=small_yaml(tmp_path, "maskable_ppo"),
        )
    with pytest.raises(ValueError, match="--policy transformer"):
        train("ppo", ["VectorAdd", "Copy"], hyperparams=small_yaml(tmp_path, "ppo"))
    with pytest.raises(ValueError, match="unknown algorithm"):
        train("sac", "VectorAdd")


def test_a_model_from_another_library_version_is_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    train("ppo", "VectorAdd", timesteps=64, hyperparams=small_yaml(tmp_path, "ppo"), out=out)
    monkeypatch.setattr(algind_gym, "__version__", "9.9.9")
    with pytest.raises(ModelError, match=r"trained with algind-gym 0\.1\.0, this is 9\.9\.9"):
        load_model(out / "model.zip")
    assert main(["evaluate", str(out / "model.zip")]) == 2
    assert "retrain it" in capsys.readouterr().err


def test_cli_train_json_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--algo", "maskable_ppo", "--env", "VectorAdd", "--timesteps", "64"]
    argv += ["--hyperparams", small_yaml(tmp_path, "maskable_ppo"), "--out", str(out), "--json"]
    rc = main(argv)
    summary = json.loads(capsys.readouterr().out)
    assert rc in (0, 1) and rc == (0 if summary["success_rate"] >= 0.9 else 1)
    for key in ("success_rate", "timesteps", "wall_time_s", "timesteps_to_first_success"):
        assert key in summary
    assert set(summary["generalisation"]) >= {"8", "64"}
    rc = main(["evaluate", str(out / "model.zip"), "--length", "32", "--episodes", "2", "--json"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["episodes"] == 2 and {r["length"] for r in res["runs"]} == {32}
    assert all(isinstance(r["program_text"], str) for r in res["runs"])
    assert np.isclose(res["success_rate"], np.mean([r["success"] for r in res["runs"]]))


def test_init_fine_tunes_from_a_saved_model_and_refuses_other_spaces(tmp_path):
    hp = tmp_path / "tr.yml"
    hp.write_text(
        "default:\n  n_envs: 2\n  n_steps: 16\n  batch_size: 32\n  n_epochs: 1\n"
        "  learning_rate: 0.0\n  eval_freq: 100000\n  n_eval_episodes: 1\n"
        "  env_kwargs:\n    n_examples: 2\n"
        "policy-transformer:\n  env_kwargs:\n    observation_mode: tables\n"
        "    action_encoding: multidiscrete\n"
    )
    first = train(
        "maskable_ppo",
        "Copy",
        policy="transformer",
        timesteps=32,
        hyperparams=hp,
        out=tmp_path / "a",
        seed=1,
    )
    # another task, another seed, learning rate 0: the weights stay the loaded ones
    second = train(
        "maskable_ppo",
        "VectorAdd",
        policy="transformer",
        timesteps=32,
        hyperparams=hp,
        out=tmp_path / "b",
        seed=2,
        init=tmp_path / "a" / "model.zip",
    )
    want, got = first.model.policy.state_dict(), second.model.policy.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert read_model_meta(tmp_path / "b" / "model.zip")["init"].endswith("model.zip")
    fresh = train(
        "maskable_ppo", "VectorAdd", policy="transformer", timesteps=32, hyperparams=hp, seed=2
    )
    assert not all(torch.equal(want[k], fresh.model.policy.state_dict()[k]) for k in want)
    with pytest.raises(ModelError, match="pass --policy transformer"):
        train(
            "maskable_ppo",
            "VectorAdd",
            timesteps=32,
            hyperparams=small_yaml(tmp_path, "maskable_ppo"),
            init=tmp_path / "a" / "model.zip",
        )
    train("ppo", "Copy", timesteps=64, hyperparams=small_yaml(tmp_path, "ppo"), out=tmp_path / "c")
    with pytest.raises(ModelError, match="fine-tune across tasks with --policy transformer"):
        train(
            "ppo",
            "VectorAdd",
            timesteps=64,
            hyperparams=small_yaml(tmp_path, "ppo"),
            init=tmp_path / "c" / "model.zip",
        )


def test_train_restores_torch_and_numba_thread_counts_on_return_and_on_error(tmp_path, monkeypatch):
    import numba

    import agents.rl.train as train_module

    # counts that differ from train's 1 (numba's as far as its pool allows; the autouse
    # fixture of tests/conftest.py restores the worker's counts after the test)
    torch.set_num_threads(3)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    want = (3, numba.config.NUMBA_NUM_THREADS)
    seen = []

    class Spy(TrainingCallback):
        def _on_step(self) -> bool:
            seen.append((torch.get_num_threads(), numba.get_num_threads()))
            return super()._on_step()

    monkeypatch.setattr(train_module, "TrainingCallback", Spy)
    hp = small_yaml(tmp_path, "maskable_ppo")
    train("maskable_ppo", "Copy", timesteps=32, hyperparams=hp)
    assert seen and set(seen) == {(1, 1)}
    assert (torch.get_num_threads(), numba.get_num_threads()) == want
    with pytest.raises(ValueError, match="unknown policy"):
        train("maskable_ppo", "Copy", policy="nope", hyperparams=hp)
    assert (torch.get_num_threads(), numba.get_num_threads()) == want


TRANSFORMER = """
policy-transformer:
  env_kwargs:
    observation_mode: tables
    action_encoding: multidiscrete
"""


@pytest.mark.parametrize(
    "algo,policy", [("maskable_ppo", "mlp"), ("maskable_ppo", "transformer"), ("dqn", "mlp")]
)
def test_batched_rollouts_are_the_sequential_episodes(tmp_path, algo, policy):
    from agents.rl.evaluate import rollouts

    hp = small_yaml(tmp_path, algo, TRANSFORMER)
    res = train(algo, "VectorAdd", policy=policy, timesteps=64, hyperparams=hp)
    meta = res.model.algind_meta
    envs = [make_eval_env(meta, "AlgInd/VectorAdd-v0", 8) for _ in range(4)]
    batched = rollouts(res.model, algo, envs, seeds=[5, 6, 7, 8], length=8)
    one = make_eval_env(meta, "AlgInd/VectorAdd-v0", 8)
    sequential = [rollout(res.model, algo, one, seed=s, length=8) for s in (5, 6, 7, 8)]
    keys = ("actions", "success", "program_text", "return", "invalid_actions")
    assert [{k: r[k] for k in keys} for r in batched] == [
        {k: r[k] for k in keys} for r in sequential
    ]
    with pytest.raises(ValueError, match="one seed per environment"):
        rollouts(res.model, algo, envs, seeds=[1])
