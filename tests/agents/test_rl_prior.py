"""LearnedPrior: behaviour cloning on solved programs, then a prior for MCTS."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from agents import solve
from agents.priors import NodeView, Prior
from agents.rl.evaluate import ModelError
from agents.rl.learned_prior import LearnedPrior, behaviour_clone
from agents.rl.train import train
from algind_gym.cli import main
from algind_gym.envs import SkillCompositionEnv, composition

pytestmark = pytest.mark.skipif(
    "tables" not in getattr(composition, "OBSERVATION_MODES", ()),
    reason="needs the tables observation",
)
SUM = ("Sum", [("fold", ["&s_add", "x", "zero", "out"])])


def test_cloned_prior_ranks_the_demonstrated_program_first_and_guides_mcts(tmp_path, capsys):
    path = tmp_path / "prior.zip"
    info = behaviour_clone([SUM], path, epochs=60)
    assert info["accuracy"] == 1.0 and info["pairs"] == 4
    prior = LearnedPrior(path)
    assert isinstance(prior, Prior)
    env = SkillCompositionEnv("Sum", n_examples=2)
    env.reset(seed=5)
    valid = np.flatnonzero(env.actions.valid)
    p = prior(NodeView.from_env(env), valid)
    assert p.shape == valid.shape and np.isclose(p.sum(), 1.0)
    want = env.encode("fold", ["&s_add", "x", "zero", "out"])
    assert valid[np.argmax(p)] == want
    learned = solve("Sum", agent="mcts", prior=prior, budget=200, seed=0)
    assert learned.success and learned.actions_evaluated <= 32  # the first chunk
    # the same from the command line
    argv = ["solve", "Sum", "--agent", "mcts", "--budget", "200", "--json", "--prior"]
    assert main([*argv, "learned", "--prior-model", str(path)]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["success"] and cli["actions_evaluated"] == learned.actions_evaluated
    assert main([*argv, "learned+dataflow", "--prior-model", str(path)]) == 0
    capsys.readouterr()


def test_cli_learned_prior_errors_name_the_fix(tmp_path, capsys):
    argv = ["solve", "Sum", "--agent", "mcts", "--budget", "5"]
    assert main([*argv, "--prior", "learned"]) == 2
    assert "--prior learned needs --prior-model FILE" in capsys.readouterr().err
    assert main([*argv, "--prior", "uniform", "--prior-model", "x.zip"]) == 2
    assert "only with --prior learned" in capsys.readouterr().err
    assert main([*argv, "--prior", "learned", "--prior-model", str(tmp_path / "no.zip")]) == 2
    assert "no model file" in capsys.readouterr().err


def test_prior_needs_a_transformer_model(tmp_path):
    hp = tmp_path / "hp.yml"
    hp.write_text(
        "default:\n  n_envs: 2\n  n_steps: 8\n  batch_size: 16\n  n_eval_episodes: 1\n"
        "  env_kwargs:\n    observation_mode: compact\n    n_examples: 2\n"
    )
    train("maskable_ppo", "VectorAdd", timesteps=16, hyperparams=hp, out=tmp_path / "run")
    with pytest.raises(ModelError, match="--policy transformer"):
        LearnedPrior(tmp_path / "run" / "model.zip")
