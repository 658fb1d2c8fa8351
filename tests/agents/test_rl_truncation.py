"""The ``bootstrap_truncation`` option: an episode cut at the call limit as terminal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from sb3_contrib import MaskablePPO

from agents.rl.evaluate import read_model_meta
from agents.rl.hyperparams import HyperparamsError
from agents.rl.train import train
from agents.rl.vec_env import GymnasiumVecEnv

KWARGS = {
    "n_examples": 2,
    "max_calls": 2,
    "observation_mode": "compact",
    "action_encoding": "discrete",
}
YAML = """
default:
  n_envs: 4
  n_steps: 32
  batch_size: 64
  n_epochs: 1
  eval_freq: 100000
  n_eval_episodes: 1
  env_kwargs:
    observation_mode: compact
    action_encoding: discrete
    n_examples: 2
    max_calls: 2
"""


TRAIN = MaskablePPO.train


def _same(a, b) -> bool:
    """Equal, for (nested dicts of) arrays and plain values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def _steps(bootstrap: bool, n: int = 24):
    """``n`` steps of 4 Copy envs with random valid non-HALT actions (same seeds)."""
    venv = GymnasiumVecEnv(
        gym.make_vec("AlgInd/Copy-v0", num_envs=4, **KWARGS), bootstrap_truncation=bootstrap
    )
    venv.seed(3)
    halt = gym.make("AlgInd/Copy-v0", **KWARGS).unwrapped.actions.halt_index
    obs = [venv.reset()]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        masks = np.stack(venv.env_method("action_masks"))
        masks[:, halt] = False  # never HALT: every episode runs to the call limit
        acts = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        o, r, d, infos = venv.step(acts)
        obs.append(o)
        out.append((r, d, infos))
    return obs, out


def test_default_passes_truncation_on_and_the_option_reports_every_end_as_terminal():
    base_obs, base = _steps(True)
    opt_obs, opt = _steps(False)
    assert all(_same(a, b) for a, b in zip(base_obs, opt_obs, strict=True))
    cut = 0
    for (r0, d0, i0), (r1, d1, i1) in zip(base, opt, strict=True):
        assert np.array_equal(r0, r1) and np.array_equal(d0, d1)
        for e in range(len(d0)):
            flag = i0[e].pop("TimeLimit.truncated", None)
            assert i1[e].pop("TimeLimit.truncated", None) is (False if d0[e] else None)
            cut += bool(flag)
            assert _same(i0[e], i1[e])  # every other info, the terminal observation included
    assert cut > 0  # the default did report truncations (at max_calls 2 without HALT)


def _first_rollout(tmp_path, monkeypatch, name: str, extra: str = "") -> dict:
    """Train 128 timesteps (one rollout of 4 x 32) and return that rollout's buffer."""
    seen: dict = {}

    def record(self):
        b = self.rollout_buffer
        seen.update(
            rewards=b.rewards.copy(), actions=b.actions.copy(), starts=b.episode_starts.copy()
        )
        TRAIN(self)

    monkeypatch.setattr(MaskablePPO, "train", record)
    path = tmp_path / f"{name}.yml"
    path.write_text(YAML + extra)
    out = tmp_path / name
    train("maskable_ppo", "Copy", timesteps=128, seed=1, hyperparams=path, out=out)
    seen["meta"] = read_model_meta(out / "model.zip")
    return seen


def test_training_with_the_option_drops_only_the_bootstrap_at_truncated_ends(tmp_path, monkeypatch):
    base = _first_rollout(tmp_path, monkeypatch, "base")
    opt = _first_rollout(tmp_path, monkeypatch, "opt", "  bootstrap_truncation: false\n")
    assert base["meta"]["hyperparams"]["bootstrap_truncation"] is True
    assert opt["meta"]["hyperparams"]["bootstrap_truncation"] is False
    # the same actions (same seed, the policy is not updated within the first rollout)
    assert np.array_equal(base["actions"], opt["actions"])
    assert np.array_equal(base["starts"], opt["starts"])
    diff = base["rewards"] != opt["rewards"]
    assert diff.any()  # SB3 added gamma * V(terminal observation) somewhere by default
    # ... and only on a step that ended an episode (the next row starts a new one)
    ends = np.zeros_like(diff)
    ends[:-1] = base["starts"][1:] > 0.5
    ends[-1] = True  # the last row's ends are not visible in the buffer
    assert not (diff & ~ends).any()


def test_bootstrap_truncation_must_be_a_boolean(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(YAML + "  bootstrap_truncation: maybe\n")
    with pytest.raises(HyperparamsError, match="bootstrap_truncation must be true or false"):
        train("maskable_ppo", "Copy", timesteps=128, hyperparams=path)
