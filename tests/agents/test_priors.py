"""Priors: the protocol, the uniform prior, the language-model description prior."""

from __future__ import annotations

import numpy as np
import pytest

import agents.priors as priors
from agents import MCTS, NodeView, Prior, UniformPrior, make_prior, solve
from algind_gym.envs import SkillCompositionEnv
from algind_gym.skills import builtin_library

LM_REASON = "the [lm] extra is not installed: pip install 'algind-gym[lm]'"
needs_lm = pytest.mark.skipif(not priors.language_model_available(), reason=LM_REASON)


def view_of(task: str) -> tuple[NodeView, np.ndarray]:
    env = SkillCompositionEnv(task, builtin_library(), backend="reference", n_examples=2)
    env.reset(seed=0)
    return NodeView.from_env(env), np.flatnonzero(env.actions.valid)


def test_uniform_prior_follows_the_protocol():
    view, actions = view_of("VectorAdd")
    p = UniformPrior()(view, actions)
    assert isinstance(UniformPrior(), Prior)
    assert (
        p.shape == actions.shape and np.allclose(p, 1 / actions.size) and abs(p.sum() - 1) < 1e-12
    )


def test_make_prior_names_and_errors():
    assert isinstance(make_prior("uniform"), UniformPrior)
    custom = UniformPrior()
    assert make_prior(custom) is custom
    with pytest.raises(ValueError, match=r"unknown prior 'lm'.*description"):
        make_prior("lm")


def test_missing_language_model_names_the_extra(monkeypatch):
    monkeypatch.setattr(priors, "language_model_available", lambda: False)
    monkeypatch.setattr(priors, "_EMBEDDER", None)
    with pytest.raises(ImportError, match=r"pip install 'algind-gym\[lm\]'"):
        priors.DescriptionPrior()


@needs_lm
def test_description_prior_prefers_the_described_skill():
    view, actions = view_of("VectorMul")
    p = make_prior("description")(view, actions)
    assert p.shape == actions.shape and abs(p.sum() - 1.0) < 1e-9 and (p > 0).all()
    names = view.pointer_names
    top = [view.table.decode_discrete(int(a)) for a in actions[np.argsort(-p)[:3]]]
    # elementwise multiplication of two vectors: zipmap with s_mul ranks first
    skill, binds = top[0]
    assert skill.startswith("zipmap") and names[binds[0]].startswith("&s_mul")
    sharper = priors.DescriptionPrior(temperature=0.01)(view, actions)
    assert sharper.max() > p.max()


@needs_lm
def test_description_prior_needs_fewer_evaluations_than_uniform():
    # "Multiply a vector by a scalar: out[i] = s * x[i]": mapc(&s_mul, x, s, out) ranks
    # first, so the first chunk of 8 holds it; the uniform order needs more chunks
    runs = {
        prior: solve("Scale", agent=MCTS(prior=prior, batch_size=8), budget=400, seed=0)
        for prior in ("uniform", "description")
    }
    assert runs["description"].success and runs["uniform"].success
    assert runs["description"].actions_evaluated < runs["uniform"].actions_evaluated


def test_dataflow_prior_favours_fresh_values_and_the_output():
    view, actions = view_of("DuplicatedInput")
    prior = make_prior("dataflow")
    assert np.allclose(prior(view, actions), 1 / actions.size)  # nothing computed yet
    view.program = [("iota", ["i"])]
    p = prior(view, actions)
    names = view.pointer_names

    def prob(skill: str, binds: list[str]) -> float:
        a = view.env.encode(skill, binds)
        return float(p[np.searchsorted(actions, a)])

    uses_i = prob("mapc", ["&s_mul", "i", "two", "idx"])
    ignores_i = prob("mapc", ["&s_mul", "x", "two", "idx"])
    uses_i_for_out = prob("gather", ["x", "i", "out"])
    assert uses_i_for_out > uses_i > ignores_i
    assert "i" in names and abs(p.sum() - 1) < 1e-9


def test_product_of_priors_and_option_routing():
    view, actions = view_of("VectorAdd")
    both = make_prior("uniform+dataflow", strength=1.0)
    assert np.allclose(both(view, actions), 1 / actions.size)
    with pytest.raises(ValueError, match="takes no option"):
        make_prior("uniform", strength=1.0)
