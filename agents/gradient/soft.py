"""The soft program: alpha and W^in for T steps, and the paper's forward pass (equations 2-3).

``S(i+1) = sum_s alpha_s F_s(W_in(s, S(i), t) S(i))``: the state ``S`` is every workspace
buffer's values on the K examples (task arguments, scratch, constants); at step ``t`` each
op's data slots read a softmax(W^in)-weighted mixture of the buffers of their shape class,
all ops run in one batched CPU call (:class:`~agents.gradient.ops.SoftStep`), and the next
state is the softmax(alpha)-weighted mixture of the ops' resulting states. An op's result
state is ``S`` with each buffer ``p`` its written slot may target replaced by
``S[p] + w_p (r - S[p])`` (a soft pointer write with weight ``w_p`` = W^in of that slot).

Alpha has one extra entry per step, *skip* (the state passes unchanged), so a program of T
steps can express a shorter one; a discretised skip is dropped from the program.

Objectives: :func:`loss_fn` (relative squared error), :func:`scaled_loss_fn` (correlation)
and :func:`expected_loss` (the last step's ops judged one by one, from the per-op states
that ``soft_forward(..., branches=True)`` keeps); the composer's docstring says which it uses.

Faults: an op whose machine faults on an example (division by zero, a soft value used as an
address, ...) gets weight 0 for that example and the remaining weights are renormalised, so
its garbage never enters the state; skip never faults, so the normaliser is never 0. A
result that is finite but beyond :data:`VALUE_LIMIT` times the inputs' scale is masked the
same way (recorded as ``OUT_OF_RANGE``). A non-finite loss can still arise (float32 overflow of a mixture): the
composer then skips the update, counts it in ``stats["nonfinite_losses"]`` and says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from agents.gradient.ops import Op, SoftStep

SKIP = "skip"
VALUE_LIMIT = 100.0
"""An op result with an element beyond ``VALUE_LIMIT * max(1, largest |input|)`` of its
example (e.g. a division by a near-zero mixture) is treated like a fault for that example:
it would swamp the mixture and the loss. Relative to the inputs' scale, so that U(-1, 1)
reals and base-10 digits are judged alike."""
OUT_OF_RANGE = -1
"""Pseudo fault code recorded for such results (machine fault codes are >= 1)."""


@dataclass
class StepParams:
    """Logits of one step: alpha over ``[skip, *ops]``, W^in per (op, data slot)."""

    alpha: torch.Tensor
    w_in: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    def tensors(self) -> list[torch.Tensor]:
        return [self.alpha, *self.w_in.values()]


def init_params(
    ops: list[Op],
    generator: torch.Generator,
    alpha_init: np.ndarray | None,
    noise: float,
    w_noise: float | None = None,
    population: int | None = None,
) -> StepParams:
    """Logits with seeded noise (restarts differ); ``alpha_init`` over ``[skip, *ops]``.

    ``w_noise`` (default ``noise``): std of W^in's initial logits. Larger than alpha's, it
    breaks the symmetry of two slots of one op that read the same candidates: at equal
    mixtures their gradients are equal (``zipmap(s_mul)`` for x * y sits on a saddle
    between x * x and y * y).

    ``population``: P members with their own noise, as a leading axis of every tensor
    (alpha ``(P, n_ops + 1)``, W^in ``(P, m)``; :mod:`agents.gradient.population`); None
    gives one member without that axis."""
    n = len(ops) + 1
    lead = () if population is None else (population,)
    base = torch.zeros(n, dtype=torch.float64) if alpha_init is None else torch.tensor(alpha_init)
    alpha = (
        base + noise * torch.randn(*lead, n, generator=generator, dtype=torch.float64)
    ).requires_grad_()
    w_in = {}
    for v, op in enumerate(ops):
        for j in op.data_slots:
            m = len(op.slots[j].candidates)
            if m > 1:
                std = noise if w_noise is None else w_noise
                logits = std * torch.randn(*lead, m, generator=generator, dtype=torch.float64)
                w_in[(v, j)] = logits.requires_grad_()
    return StepParams(alpha, w_in)


def relax(
    logits: torch.Tensor, tau: float, gumbel: bool, generator: torch.Generator
) -> torch.Tensor:
    """softmax(logits / tau) over the last axis, or a straight-through Gumbel-softmax sample
    (hard forward, soft gradient) when ``gumbel``."""
    if not gumbel:
        return torch.softmax(logits / tau, -1)
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp_(1e-12, 1 - 1e-12)
    soft = torch.softmax((logits - torch.log(-torch.log(u))) / tau, -1)
    hard = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
    return hard - soft.detach() + soft


def entropy(p: torch.Tensor) -> float:
    """Entropy (nats) of a probability vector."""
    q = p.detach().clamp_min(1e-30)
    return float(-(q * q.log()).sum())


@dataclass
class ForwardStats:
    """Per forward pass: faults per op per step, instructions and CPU time."""

    faults: list[np.ndarray]
    instructions: int = 0
    cpu_s: float = 0.0
    rows: int = 0
    """Rows of the batched calls (every op's K examples, all steps)."""
    grad_rows: int = 0
    """Of those, the rows that ran on the torch ops with autograd (:meth:`SoftStep.run`)."""
    branches: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = field(default_factory=list)
    """With ``branches=True``: the last step's alternatives, ``(weight (K,), state)`` for
    skip and for every op that ran on some example (weights sum to 1 per example)."""


def soft_forward(
    state: dict[str, torch.Tensor],
    steps: list[SoftStep],
    params: list[StepParams],
    tau: float,
    gumbel: bool | str,
    generator: torch.Generator,
    defined: set[str] | None = None,
    fresh_bias: float = 0.0,
    branches: bool = False,
    balanced: bool = False,
) -> tuple[dict[str, torch.Tensor], ForwardStats]:
    """Run the T soft steps from ``state`` (name -> ``(K, size)``); return the final state.

    ``defined``: the buffers holding defined values before the first step (inputs and
    constants); a slot that reads reads only those and buffers that an earlier step may have
    written (:func:`read_bias`), never uninitialised memory. None: every buffer is defined.
    ``fresh_bias``: added to the W^in logits of the buffers an earlier step may have written
    (see :func:`read_bias`). ``branches``: also keep the last step's per-op states
    (:attr:`ForwardStats.branches`, for :func:`expected_loss`). ``balanced``: see
    :func:`read_bias`. A step with ``private`` set (:mod:`agents.gradient.dag`) stores each
    op's result unmixed in its channel (0 where the op faulted); its alpha is not used.
    ``gumbel``: straight-through Gumbel-softmax samples (:func:`relax`) for alpha and W^in
    (True or ``"all"``) or for W^in only (``"reads"``: every slot reads one buffer in the
    forward pass, while the ops of a step stay an exact softmax(alpha) expectation).
    """
    stats = ForwardStats([])
    dtype = next(iter(state.values())).dtype
    rows = next(iter(state.values())).shape[0]
    members = params[0].alpha.shape[0] if params[0].alpha.dim() == 2 else 1
    defined = set(state) if defined is None else set(defined)
    scale = torch.stack([state[n].detach().abs().amax(1) for n in sorted(defined)]).amax(0)
    limit = VALUE_LIMIT * scale.clamp_min(1.0)[:, None]  # (K, 1)
    fresh: set[str] = set()
    for step, par in zip(steps, params, strict=True):
        hard_alpha = gumbel is True or gumbel == "all"
        a = per_row(relax(par.alpha, tau, hard_alpha, generator).to(dtype), rows).T  # (n+1, R|1)
        inputs: dict[tuple[int, int], torch.Tensor] = {}
        mix: dict[tuple[int, int], torch.Tensor] = {}
        for v, op in enumerate(step.ops):
            for j in op.data_slots:
                cands = op.slots[j].candidates
                if (v, j) in par.w_in:
                    logits = par.w_in[(v, j)] + read_bias(
                        op, j, defined, fresh, fresh_bias, balanced
                    )
                    w = relax(logits, tau, bool(gumbel), generator).to(dtype)
                    stacked = torch.stack([state[c] for c in cands])
                    if w.dim() == 1:
                        inputs[(v, j)] = torch.einsum("c,cks->ks", w, stacked)
                    else:  # one W^in per member: rows p*K .. p*K+K-1 are member p's
                        stacked = stacked.reshape(len(cands), members, -1, stacked.shape[-1])
                        mixed = torch.einsum("pc,cpks->pks", w, stacked)
                        inputs[(v, j)] = mixed.reshape(rows, -1)
                    mix[(v, j)] = per_row(w, rows)
                else:
                    mix[(v, j)] = torch.ones(1, 1, dtype=dtype)
                    inputs[(v, j)] = state[cands[0]]
        run = step.run(inputs)
        stats.faults.append(run.faults)
        stats.instructions += run.instructions
        stats.cpu_s += run.cpu_s
        stats.rows += step.batch
        stats.grad_rows += run.grad_rows
        ok_np = run.faults == 0  # (n_ops, K)
        for v, outs in enumerate(run.outputs):
            for r in outs.values():  # out-of-range results count as faults (see module doc)
                wild = (~torch.isfinite(r.detach()) | (r.detach().abs() > limit)).any(1)
                hit = wild.numpy() & ok_np[v]
                run.faults[v][hit] = OUT_OF_RANGE
                ok_np[v] &= ~hit
        ok = torch.from_numpy(ok_np)
        if getattr(step, "private", False):
            state = dict(state)
            for v, op in enumerate(step.ops):
                for j, result in run.outputs[v].items():
                    name = op.slots[j].candidates[0]
                    state[name] = torch.where(ok[v][:, None], result, torch.zeros_like(result))
                    defined.add(name)
                    fresh.add(name)
            continue
        weights = a[1:] * ok.to(dtype)  # (n_ops, R)
        norm = a[0] + weights.sum(0)  # (K,) > 0: skip never faults
        weights = weights / norm
        new = dict(state)
        last = branches and step is steps[-1]
        if last:
            stats.branches.append((a[0] / norm, state))
        for v, op in enumerate(step.ops):
            if not bool(ok[v].any()):
                continue
            branch = dict(state) if last else None
            for j, result in run.outputs[v].items():
                for c, name in enumerate(op.slots[j].candidates):
                    old = state[name]
                    r = torch.where(ok[v][:, None], result, old)
                    delta = mix[(v, j)][:, c, None] * (r - old)
                    new[name] = new[name] + weights[v][:, None] * delta
                    if branch is not None:
                        branch[name] = branch[name] + delta
                    defined.add(name)
                    fresh.add(name)
            if branch is not None:
                stats.branches.append((weights[v], branch))
        state = new
    return state, stats


def per_row(w: torch.Tensor, rows: int) -> torch.Tensor:
    """Weights ``(c,)`` as ``(1, c)``, or one member's weights per row: ``(P, c)`` ->
    ``(rows, c)`` (member p owns rows ``p*K .. p*K+K-1``, ``K = rows // P``)."""
    if w.dim() == 1:
        return w[None, :]
    return w.repeat_interleave(rows // w.shape[0], 0)


def read_bias(
    op: Op,
    slot: int,
    defined: set[str],
    fresh: set[str] = frozenset(),
    fresh_bias: float = 0.0,
    balanced: bool = False,
) -> torch.Tensor:
    """0 for the candidates a slot may load, -inf for uninitialised buffers when the slot
    reads (role ``in``/``inout``); a write-only slot may target any candidate. A slot with no
    defined candidate keeps them all (its op then reads garbage and the loss says so).

    A reading slot adds ``fresh_bias`` to the candidates in ``fresh`` (buffers an earlier
    step may have written): a dataflow prior that a later step consumes what an earlier one
    produced, so the first steps get a gradient through the later ones' choices. It uses
    nothing about the task but which buffers the program itself may have written.

    ``balanced`` (private channels, :mod:`agents.gradient.dag`): the bias of a fresh
    candidate is ``fresh_bias + log(n_old / n_fresh)``, so that the fresh buffers *as a
    group* get ``exp(fresh_bias)`` times the weight of the others as a group, however many
    channels there are."""
    cands = op.slots[slot].candidates
    bias = torch.zeros(len(cands), dtype=torch.float64)
    if op.slots[slot].role == "out":
        return bias
    undefined = torch.tensor([c not in defined for c in cands])
    if bool(undefined.all()):
        return bias
    is_fresh = torch.tensor([c in fresh for c in cands], dtype=bias.dtype)
    if balanced:
        n_fresh = float(is_fresh.sum())
        n_old = len(cands) - n_fresh
        if n_fresh and n_old:
            bias = bias + (fresh_bias + math.log(n_old / n_fresh)) * is_fresh
    elif fresh_bias:
        bias = bias + fresh_bias * is_fresh
    return bias.masked_fill(undefined, float("-inf"))


REL_EPS = 1e-2
"""Added to the oracle's mean square in :func:`loss_fn` (outputs that are all zero)."""


def _by_member(x: torch.Tensor, rows: int) -> torch.Tensor:
    """``(P*K, s)`` state rows -> ``(P, K, s)``, with ``K = rows`` (the oracle's rows)."""
    return x.reshape(-1, rows, x.shape[-1])


def loss_fn(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> torch.Tensor:
    """Relative squared error of the task's outputs against the oracle, per member: per
    output, the mean squared error over elements and examples divided by the oracle's mean
    square (plus :data:`REL_EPS`); averaged over the outputs. 1 is the error of predicting
    zeros. Shape ``(P,)``: the state holds P members' rows over the oracle's K examples
    (``P = 1`` without a population)."""
    terms = [
        ((_by_member(state[n], len(want)) - want) ** 2).mean((1, 2)) / ((want**2).mean() + REL_EPS)
        for n, want in expected.items()
    ]
    return torch.stack(terms).mean(0)


def scaled_loss_fn(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> torch.Tensor:
    """:func:`loss_fn` after the best affine fit ``c p + d`` with ``c >= 0`` of each output
    (over elements and examples): ``1 - max(0, corr(p, t))^2``, 1 when ``p`` is constant;
    per member ``(P,)``.

    A soft mixture that holds the right result only as a small share beside other ops'
    results (and constants such as the pool's ``one``) has a plain loss above 1 (worse than
    skipping), but a scaled loss below 1; so it rewards the share of the right op in a
    mixture instead of pulling every step to *skip*. It cannot tell ``out = s x + d`` from
    ``out = x``: the composer adds the plain loss."""
    terms = []
    for n, want in expected.items():
        p = _by_member(state[n], len(want)).flatten(1)
        t = want.reshape(-1)
        p, t = p - p.mean(1, keepdim=True), t - t.mean()
        corr = (p @ t) / (p.norm(dim=1) * t.norm() + 1e-6)
        terms.append(1 - corr.clamp_min(0) ** 2)
    return torch.stack(terms).mean(0)


def expected_loss(
    branches: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
    expected: dict[str, torch.Tensor],
    scaled: float,
    plain: float = 1.0,
) -> torch.Tensor:
    """The objective averaged over the last step's alternatives instead of taken of their
    mixture: ``sum_b w_b (plain log(1 + loss(S_b)) + scaled * scaled_loss(S_b))`` with ``w_b`` the
    branch's weight averaged over a member's examples; per member ``(P,)``.

    Of a mixture, an op's result is judged together with what the other ops add, so a
    right op with a small weight is drowned by uncorrelated results and every weight drifts
    to the least noisy choice (*skip*); judged one by one, each op of the last step is
    compared with the others on its own result (a relaxation of the expected loss of the
    program distribution over the last step; the earlier steps stay mixtures)."""
    k = len(next(iter(expected.values())))
    terms = []
    for w, st in branches:
        value = plain * torch.log1p(loss_fn(st, expected))
        if scaled:
            value = value + scaled * scaled_loss_fn(st, expected)
        terms.append(w.reshape(-1, k).mean(1) * value)
    return torch.stack(terms).sum(0)


def anneal(start: float, end: float, i: int, n: int) -> float:
    """Exponential temperature schedule from ``start`` (i = 0) to ``end`` (i = n - 1)."""
    if n <= 1:
        return end
    return start * math.exp(math.log(end / start) * i / (n - 1))
