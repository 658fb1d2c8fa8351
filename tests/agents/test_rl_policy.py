"""The task-agnostic transformer policy: one size for every task, exact masks, SB3 use."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

import torch

from agents import solve, validate_result
from agents.rl.evaluate import make_eval_env, rollout
from agents.rl.policies import MaskableTransformerPolicy, TransformerActorCriticPolicy
from agents.rl.tables import MultiTaskEnv, TablesActions, make_env
from agents.rl.train import resolve_env_ids, train
from algind_gym.envs import composition
from envs_registry import algind_env_ids

pytestmark = pytest.mark.skipif(
    "tables" not in getattr(composition, "OBSERVATION_MODES", ()),
    reason="needs the tables observation",
)
TABLES = {"observation_mode": "tables", "action_encoding": "multidiscrete", "n_examples": 2}


def _policy(env, cls=MaskableTransformerPolicy):
    return cls(env.observation_space, env.action_space, lambda _: 3e-4)


def _obs_tensor(obs):
    return {k: torch.as_tensor(v[None]) for k, v in obs.items()}


def test_one_parameter_count_for_every_registered_task_and_only_valid_actions():
    counts = {}
    torch.manual_seed(0)
    for env_id in algind_env_ids():
        env = make_env(env_id, TABLES)
        policy = _policy(env)
        counts[env_id] = sum(p.numel() for p in policy.parameters())
        obs, _ = env.reset(seed=0)
        # every sampled action passes the environment's exact binding rule
        base = env.unwrapped
        for _ in range(3):
            with torch.no_grad():
                a = policy.net.act(policy._obs(_obs_tensor(obs)))[0][0].numpy()
            skill, binds = base.decode(env.action(a))
            assert base.actions.is_valid(skill, binds), (env_id, skill, binds)
    assert len(set(counts.values())) == 1, counts


def test_log_prob_of_sampled_actions_matches_evaluate_and_entropy_is_finite():
    env = make_env("AlgInd/DotProduct-v0", TABLES)
    policy = _policy(env)
    obs, _ = env.reset(seed=1)
    batch = {k: torch.as_tensor(np.repeat(v[None], 16, 0)) for k, v in obs.items()}
    with torch.no_grad():
        actions, values, log_prob = policy(batch)
        v2, lp2, entropy = policy.evaluate_actions(batch, actions.float())
    assert torch.allclose(log_prob, lp2, atol=1e-5) and torch.allclose(values, v2)
    assert torch.isfinite(entropy).all() and (entropy > 0).all()
    # slots beyond the chosen skill's arity are fixed to pointer 0
    arity = env.unwrapped.actions.arity
    for a in actions.numpy():
        if a[0] < len(arity):
            assert (a[1 + arity[a[0]] :] == 0).all()


def test_policy_refuses_an_observation_without_tables():
    env = make_eval_env({"env_kwargs": {"observation_mode": "compact"}}, "AlgInd/VectorAdd-v0")
    with pytest.raises(ValueError, match="observation_mode='tables'"):
        _policy(env, TransformerActorCriticPolicy)


def test_multitask_env_samples_tasks_per_episode():
    ids = resolve_env_ids(level=1)
    assert "AlgInd/VectorAdd-v0" in ids and "AlgInd/Sum-v0" not in ids
    env = MultiTaskEnv(["AlgInd/VectorAdd-v0", "AlgInd/Sum-v0"], **TABLES)
    env.reset(seed=0)
    seen = {env.reset()[1]["env_id"] for _ in range(20)}
    assert seen == {"AlgInd/VectorAdd-v0", "AlgInd/Sum-v0"}
    assert isinstance(env.env, TablesActions)


def test_ppo_and_maskable_ppo_train_the_transformer_on_two_tasks(tmp_path):
    hp = tmp_path / "tr.yml"
    hp.write_text(
        "default:\n  n_envs: 2\n  n_steps: 16\n  batch_size: 32\n  n_epochs: 1\n"
        "  eval_freq: 100000\n  n_eval_episodes: 1\n  env_kwargs:\n    n_examples: 2\n"
        "policy-transformer:\n  env_kwargs:\n    observation_mode: tables\n"
        "    action_encoding: multidiscrete\n"
    )
    for algo in ("ppo", "maskable_ppo"):
        out = tmp_path / algo
        res = train(
            algo, "VectorAdd,Sum", policy="transformer", timesteps=32, hyperparams=hp, out=out
        )
        assert set(res.summary["per_env"]) == {"AlgInd/VectorAdd-v0", "AlgInd/Sum-v0"}
        meta = res.model.algind_meta
        run = rollout(res.model, algo, make_eval_env(meta, "AlgInd/Sum-v0"), seed=0)
        assert run["invalid_actions"] == 0  # the observation's masks are exact
        # one network for any task: a solve agent on a task it was not trained on
        r = solve("Copy", agent=algo, model=str(out / "model.zip"), budget=12, seed=0)
        validate_result(r.to_dict())
        assert r.actions_evaluated == 12 or r.success


@pytest.mark.slow
def test_maskable_ppo_with_the_transformer_solves_vector_add():
    """With the shipped settings (experiments/hyperparams/maskable_ppo.yml, policy-transformer:
    call_cost 0, dataflow masks). Measured on a shared 2-core machine: 8,192 timesteps gave
    success 0.42 (the scratch pool made the action space ~14x larger than when this test
    used 8,192), 24,576 gave 1.00 and accuracy 1.0 at 64 (about 8 minutes)."""
    res = train("maskable_ppo", "VectorAdd", policy="transformer", timesteps=24_576)
    s = res.summary
    assert s["success_rate"] >= 0.9, s
    assert s["generalisation"]["64"] == 1.0, s


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="not reached by the uniform mix: with the shipped settings, 25k timesteps of "
    "VectorMul, Sum and DotProduct reach greedy success 1.0 / 1.0 / 0.0 (a hand-switched "
    "second stage on DotProduct alone reached 1.0 once; experiments/rl_dotproduct.py's "
    "rules fixed in advance: 1 seed of 3 at >= 0.9, whose chunked mix reached DotProduct "
    "1.0 at 30,720 timesteps, not rerun here); see experiments/results/rl_notes.md",
)
def test_transformer_trained_with_vector_mul_and_sum_solves_dot_product():
    """One network on VectorMul, Sum and DotProduct (a task per episode); DotProduct alone
    is a two-call needle that neither policy finds in this budget."""
    res = train("maskable_ppo", "VectorMul,Sum,DotProduct", policy="transformer", timesteps=30_000)
    dp = res.summary["per_env"]["AlgInd/DotProduct-v0"]
    assert dp["success_rate"] >= 0.9, dp
    assert dp["generalisation"]["64"] == 1.0, dp


def _allowed_names(policy, env, obs, skill: str, slot: int) -> set[str]:
    """Pointer names the policy may bind to ``slot`` of ``skill`` in ``obs``."""
    base = env.unwrapped
    o = policy._obs(_obs_tensor(obs))
    enc = policy.net.encode(o)
    s = base.actions.skills.index(skill)
    allowed = enc["allowed"][0, s, slot]
    return {base.actions.pointer_names[p] for p in np.flatnonzero(allowed.numpy())}


def test_dataflow_masks_reads_of_unwritten_buffers_until_a_call_writes_them():
    env = make_env("AlgInd/DotProduct-v0", TABLES)
    policy = _policy(env)
    obs, _ = env.reset(seed=0)
    # fold(fn, vector in, scalar init in, scalar out): reads only what holds a value
    assert _allowed_names(policy, env, obs, "fold@1", 1) == {"x", "y"}
    assert _allowed_names(policy, env, obs, "fold@1", 2) == {"zero", "one"}
    assert _allowed_names(policy, env, obs, "fold@1", 3) == {"out", "tmp_s0", "tmp_s1"}
    base = env.unwrapped
    zipmap = base.actions.skills.index("zipmap@1")
    binds = [base.actions.pointer_names.index(n) for n in ("&s_mul@1", "x", "y", "tmp_v0")]
    obs, *_ = env.step(np.array([zipmap, *binds, 0, 0, 0, 0]))
    assert _allowed_names(policy, env, obs, "fold@1", 1) == {"x", "y", "tmp_v0"}
    # without the dataflow refinement the masks are the observation's own
    plain = MaskableTransformerPolicy(
        env.observation_space, env.action_space, lambda _: 3e-4, dataflow=False
    )
    assert _allowed_names(plain, env, obs, "fold@1", 1) == {"x", "y", "tmp_v0", "tmp_v1"}
    with torch.no_grad():
        for _ in range(5):  # sampled actions are valid under the environment's rule
            a = policy.net.act(policy._obs(_obs_tensor(obs)))[0][0].numpy()
            skill, b = base.decode(env.action(a))
            assert base.actions.is_valid(skill, b)


def test_without_masks_the_policy_acts_in_the_full_product_but_never_on_padding_rows():
    env = make_env("AlgInd/DotProduct-v0", TABLES)
    torch.manual_seed(0)
    masked = _policy(env, TransformerActorCriticPolicy)
    torch.manual_seed(0)
    plain = TransformerActorCriticPolicy(
        env.observation_space, env.action_space, lambda _: 3e-4, use_masks=False
    )
    # the option changes no parameter: the same network, the same size
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in masked.parameters())
    base = env.unwrapped
    obs, _ = env.reset(seed=0)
    # fold's vector-in slot: every pointer row of the task, inputs and outputs alike
    assert _allowed_names(plain, env, obs, "fold@1", 1) == set(base.actions.pointer_names)
    assert _allowed_names(masked, env, obs, "fold@1", 1) == {"x", "y"}
    batch = {k: torch.as_tensor(np.repeat(v[None], 256, 0)) for k, v in obs.items()}
    with torch.no_grad():
        actions = plain.net.act(plain._obs(batch))[0].numpy()
    valid = []
    for a in actions:
        skill, binds = base.decode(env.action(a))  # no padding row: the mapping accepts it
        valid.append(base.actions.is_valid(skill, binds))
    # most of DotProduct's skill x pointer product is invalid (2,440 valid first actions)
    assert valid.count(False) > len(valid) // 2
    # an invalid action costs the penalty and the episode goes on (no crash)
    n_skills = len(base.actions.skills)
    bad = next(a for a, ok in zip(actions, valid, strict=True) if not ok and a[0] < n_skills)
    _, reward, terminated, _, info = env.step(bad)
    assert str(info.get("error") or "").startswith("invalid action")
    assert reward < 0 and not terminated
