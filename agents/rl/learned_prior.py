"""`LearnedPrior`: the transformer policy as a search prior, trained by behaviour cloning.

:class:`LearnedPrior` follows the :class:`~agents.priors.Prior` protocol: at a search node
it rebuilds the node's tables observation (a tables environment of the task, its program
replayed on the model's own examples) and scores every candidate ``(skill, bindings)`` by
the policy's ``log pi(skill) + sum_j log pi(pointer_j | skill)``; the probabilities are
``softmax(log-prob / temperature)`` over the candidates asked for. Use it with MCTS::

    solve("DotProduct", agent="mcts", prior=LearnedPrior("prior.zip"), budget=500)

:func:`behaviour_clone` fits the policy to solved programs (maximum likelihood of each
program's actions, on several example draws per program) and saves it like a trained
model, so a model from ``algind-gym train --policy transformer`` or from cloning both
load here. Expert iteration is the loop "solve with the current prior, clone on the
programs solved so far, repeat" (:func:`expert_iteration`).

The prior looks at the node's *program*, not at the search's machines: replaying it on
the model's examples gives an observation of the same kind as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.result import Program

TABLES_ENV = {"observation_mode": "tables", "action_encoding": "multidiscrete"}


class LearnedPrior:
    """Candidate probabilities from a saved transformer-policy model (see the module docstring).

    Args:
        model: a ``model.zip`` trained with ``--policy transformer`` (or by cloning).
        temperature: softmax temperature over the candidates' log-probabilities.
    """

    name = "learned"

    def __init__(self, model: str | Path, temperature: float = 1.0) -> None:
        from agents.rl.evaluate import ModelError, load_model, read_model_meta

        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        meta = read_model_meta(model)
        if meta["policy"] != "transformer":
            raise ModelError(
                f"{model} has a {meta['policy']} policy, bound to its task; a prior needs a "
                "--policy transformer model"
            )
        self.meta, self.temperature = meta, float(temperature)
        self.net = load_model(model).policy.net.eval()
        self._envs: dict[Any, Any] = {}
        self._scores: dict[Any, np.ndarray] = {}

    def _env(self, task, library):
        from agents.rl.tables import TablesActions
        from algind_gym.envs import SkillCompositionEnv

        key = (task.name, id(library))
        if key not in self._envs:
            kwargs = {**self.meta.get("env_kwargs", {}), **TABLES_ENV}
            kwargs.pop("backend", None)
            self._envs[key] = TablesActions(SkillCompositionEnv(task, library, **kwargs))
        return self._envs[key]

    def log_probs(self, view) -> np.ndarray:
        """``log pi(a)`` of every discrete candidate of ``view.table`` at ``view.program``."""
        key = (view.task.name, id(view.table), tuple((s, tuple(b)) for s, b in view.program))
        if key in self._scores:
            return self._scores[key]
        env = self._env(view.task, view.library)
        base = env.unwrapped
        table = view.table
        if tuple(table.skills) != tuple(base.actions.skills) or (
            table.n_pointers != base.actions.n_pointers
        ):
            raise ValueError("the node's action table differs from the prior's env of this task")
        obs, _ = env.reset(seed=0)
        for skill, names in view.program:
            obs, *_ = base.step(base.encode(skill, list(names)))
        scores = candidate_log_probs(self.net, obs, table)
        self._scores[key] = scores
        return scores

    def __call__(self, view, actions: np.ndarray) -> np.ndarray:
        lp = self.log_probs(view)[np.asarray(actions, dtype=np.int64)]
        if not lp.size:
            return lp
        z = (lp - lp.max()) / self.temperature
        p = np.exp(z)
        return p / p.sum()


@torch.no_grad()
def candidate_log_probs(net, obs: dict[str, np.ndarray], table) -> np.ndarray:
    """The policy's log-probability of each candidate of ``table`` at observation ``obs``."""
    o = {k: torch.as_tensor(v[None]).float() for k, v in obs.items()}
    enc = net.encode(o)
    skill_lp = torch.log_softmax(net.skill_logits(o, enc), -1)[0].numpy()
    out = np.empty(len(table.candidates))
    arity = net.arity
    for lo in range(0, len(table.candidates), 512):
        chunk = table.candidates[lo : lo + 512]
        n = len(chunk)
        skills = torch.as_tensor([s for s, _ in chunk])
        ptrs = torch.zeros(n, arity, dtype=torch.long)
        for i, (_, binds) in enumerate(chunk):
            ptrs[i, : len(binds)] = torch.as_tensor(binds, dtype=torch.long)
        ob = {k: v.expand(n, *v.shape[1:]) for k, v in o.items()}
        en = {k: v.expand(n, *v.shape[1:]) for k, v in enc.items()}
        pl, used = net.pointer_logits(ob, en, skills, ptrs)
        lp = torch.log_softmax(pl, -1).gather(-1, ptrs.unsqueeze(-1)).squeeze(-1)
        out[lo : lo + n] = skill_lp[skills.numpy()] + (lp * used).sum(-1).numpy()
    return out


def demonstrations(
    examples: Sequence[tuple[str, Program]], env_kwargs: dict[str, Any], draws: int = 4
) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """``(tables observation, fixed action)`` pairs of each program, on ``draws`` example
    draws (a random training length each)."""
    from agents.rl.tables import make_env

    pairs = []
    for task, program in examples:
        from agents.api import resolve_task

        env = make_env(resolve_task(task).env_id, {**env_kwargs, **TABLES_ENV})
        base, arity = env.unwrapped, env.action_space.nvec.size - 1
        for d in range(draws):
            obs, _ = env.reset(seed=d)
            for skill, names in program:
                native = np.asarray(base.encode(skill, list(names)))
                action = np.zeros(1 + arity, dtype=np.int64)
                action[: native.size] = native
                pairs.append((obs, action))
                obs, *_ = base.step(native)
    return pairs


def behaviour_clone(
    examples: Sequence[tuple[str, Program]],
    out: str | Path,
    *,
    model: str | Path | None = None,
    epochs: int = 200,
    learning_rate: float = 3e-3,
    draws: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the transformer policy to solved programs and save it as a model.

    Args:
        examples: ``(task name, program)`` pairs (e.g. every :class:`SolveResult` solved).
        out: where to save the model (``model.zip`` layout, atomic write).
        model: start from this model (default: a fresh network).
        epochs: full-batch gradient steps on ``-log pi(action | observation)``.
        draws: example draws per program.

    Returns:
        ``{"model", "pairs", "loss", "accuracy"}``: the training pairs, the final mean
        negative log-likelihood and the fraction of pairs whose greedy action is the
        demonstrated one.
    """
    from agents.rl.train import save_model, thread_counts

    with thread_counts(1):
        return _clone(examples, out, model, epochs, learning_rate, draws, seed, save_model)


def _clone(examples, out, model, epochs, learning_rate, draws, seed, save_model) -> dict:
    """:func:`behaviour_clone`'s body (run with one torch and numba thread)."""
    from sb3_contrib import MaskablePPO

    import algind_gym
    from agents.api import resolve_task
    from agents.rl.policies import MaskableTransformerPolicy
    from agents.rl.tables import make_env

    torch.manual_seed(seed)
    env_kwargs = {"n_examples": 2, **TABLES_ENV}
    if model is not None:
        from agents.rl.evaluate import load_model

        ppo = load_model(model)
        env_kwargs = {**ppo.algind_meta["env_kwargs"], **TABLES_ENV}
    else:
        env = make_env(resolve_task(examples[0][0]).env_id, env_kwargs)
        ppo = MaskablePPO(MaskableTransformerPolicy, env, seed=seed, device="cpu")
    pairs = demonstrations(examples, env_kwargs, draws)
    obs = {k: torch.as_tensor(np.stack([o[k] for o, _ in pairs])).float() for k in pairs[0][0]}
    actions = torch.as_tensor(np.stack([a for _, a in pairs]))
    net = ppo.policy.net
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    net.train()
    for _ in range(epochs):
        _, log_prob, _ = net.evaluate(obs, actions)
        loss = -log_prob.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        greedy = net.act(obs, deterministic=True)[0]
        nll = float(-net.evaluate(obs, actions)[1].mean())
    ppo.algind_meta = {
        "algo": "maskable_ppo",
        "policy": "transformer",
        "env_ids": [resolve_task(t).env_id for t, _ in examples],
        "env_kwargs": env_kwargs,
        "hyperparams": {"behaviour_cloning": {"epochs": epochs, "learning_rate": learning_rate}},
        "library_version": algind_gym.__version__,
        "seed": seed,
    }
    path = save_model(ppo, out)
    return {
        "model": str(path),
        "pairs": len(pairs),
        "loss": nll,
        "accuracy": float((greedy == actions).all(-1).float().mean()),
    }


def expert_iteration(
    tasks: Sequence[str], out: str | Path, *, rounds: int = 2, budget: int = 500, seed: int = 0
) -> list[dict[str, Any]]:
    """Solve every task with MCTS (uniform prior, then the learned one), clone the policy on
    all programs solved so far, repeat; returns one record per round."""
    from agents.api import solve

    solved: dict[str, Program] = {}
    prior: Any = "uniform"
    history = []
    for r in range(rounds):
        results = {t: solve(t, agent="mcts", prior=prior, budget=budget, seed=seed) for t in tasks}
        for t, res in results.items():
            if res.success:
                solved[t] = res.program
        record = {
            "round": r,
            "prior": prior if isinstance(prior, str) else "learned",
            "actions": {t: res.actions_evaluated for t, res in results.items()},
            "solved": sorted(t for t, res in results.items() if res.success),
        }
        if solved:
            record["clone"] = behaviour_clone(list(solved.items()), out, seed=seed)
            prior = LearnedPrior(out)
        history.append(record)
    return history
