"""The training loop of the gradient composer: Adam on alpha and W^in, a population of
members in the same batched calls, schedules, and the exact checks after every iteration.

Per program length (a :class:`Level`) and restart: P members (:mod:`agents.gradient.population`)
get their logits; every iteration draws K fresh examples, runs the soft forward for all
members at once, and takes one Adam step on the sum of the members' objectives. Schedules
over a restart's n iterations:

* temperature ``tau_start -> tau_end`` (exponential, :func:`~agents.gradient.soft.anneal`),
  for the plain softmax or the straight-through Gumbel-softmax samples (``gumbel``);
* learning rate ``lr -> lr_end`` (cosine, ``torch.optim.lr_scheduler.CosineAnnealingLR``);
* entropy: ``- c_i H`` is added to the objective with ``c_i`` going linearly from
  ``+entropy`` to ``-entropy`` (``H``: the mean entropy of the softmaxes of alpha and W^in):
  first keep the distributions broad (explore), then push them to commit, so that the
  argmax program is what the mixture computes.

The objective (defaults; each can be switched off, which gives the paper's plain form):

* the loss is the relative squared error of the task's outputs (:func:`~agents.gradient.soft.loss_fn`),
  optimised as ``log(1 + loss)`` so that one wild iteration cannot stall Adam;
* ``expected_last``: the last step's ops are judged one by one (the objective averaged
  over the last step's alternatives, :func:`~agents.gradient.soft.expected_loss`) rather
  than as one mixture; the earlier steps stay mixtures (equation 2);
* ``scaled_loss``: plus a correlation term (:func:`~agents.gradient.soft.scaled_loss_fn`)
  that rewards the share of the right result in a mixture;
* ``fresh_bias``: reading slots start biased towards buffers an earlier step wrote.

Why: with the plain objective, a right op of a first step reaches the loss only as a
small share of a scratch buffer beside ~30 other writers' results, so every step drifts to
*skip* or to a constant (the output 0 has relative loss 1, any noisy mixture more).

After every iteration the members' argmax programs (best member by loss first) and then up
to ``top_k`` further discretisations of the best member
(:func:`~agents.gradient.dag.top_programs`) are run exactly (:func:`~agents.gradient.verify.check`).
``stats["success_source"]`` says which kind verified -- ``"argmax"`` (training made it the
argmax of some member) or ``"top-k"`` (found by the listing) -- with ``success_member``,
``success_rank`` (0 = an argmax) and ``iterations_to_success``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents.api import SolveContext
from agents.gradient import soft
from agents.gradient.dag import Plan, channel_zeros, top_programs, usage
from agents.gradient.monitor import Monitor
from agents.gradient.ops import SoftStep
from agents.gradient.population import exploit, member, ranked, repeat_rows
from agents.gradient.soft import (
    OUT_OF_RANGE,
    StepParams,
    anneal,
    entropy,
    expected_loss,
    init_params,
    relax,
    scaled_loss_fn,
    soft_forward,
)
from agents.gradient.verify import argmax_program, check, program_key, prune
from agents.result import Program
from algind_gym.machine.isa import Fault
from algind_gym.tasks import Workspace


@dataclass
class Level:
    """What one program length trains: its steps, their alpha inits, and the private
    channels' plan (None: the shared-buffer form)."""

    depth: int
    steps: list[SoftStep]
    alpha_init: list[np.ndarray | None]
    plan: Plan | None = None


def mean_entropy(params: list[StepParams], tau: float) -> torch.Tensor:
    """Per member ``(P,)``: the mean entropy (nats) of softmax(logits / tau) over every
    alpha and W^in of the program (differentiable)."""
    hs = []
    for par in params:
        for t in par.tensors():
            p = torch.softmax(t / tau, -1)
            hs.append(-(p * torch.log_softmax(t / tau, -1)).sum(-1))
    return torch.stack(hs).mean(0)


def train(
    cfg: Any,
    ctx: SolveContext,
    levels: list[Level],
    monitor: Monitor,
    k: int,
    length: int,
    dtype: torch.dtype,
    state_fn,
    defined_fn,
) -> Program | None:
    """Train each level (program length) in turn, an equal share of the iterations each,
    the remainder to the last; return the first verified program, or None.

    Args:
        cfg: the :class:`~agents.gradient.composer.GradientComposer` (its options).
        state_fn: ``ws -> (state, expected)`` (the composer's initial soft state).
        defined_fn: ``ws -> set`` of buffers defined when a program starts.
    """
    stats = ctx.stats
    stats.update(iterations=0, restarts_run=0, nonfinite_losses=0, faults={}, checked=0)
    stats.update(population=cfg.population, exploited=0)
    clock = {"cpu": 0.0, "backward": 0.0, "start": time.perf_counter()}
    tried: dict[tuple, float] = {}
    used = 0
    pop = cfg.population
    for n, level in enumerate(levels):
        steps, plan = level.steps, level.plan
        monitor.relabel([["skip"] + [op.label for op in step.ops] for step in steps])
        stats["depth"] = level.depth
        limit = cfg.iterations if n == len(levels) - 1 else used + cfg.iterations // len(levels)
        for r in range(cfg.restarts):
            cap = (limit - used) // (cfg.restarts - r)
            if cap < 1:
                continue
            stats["restarts_run"] += 1
            gen = torch.Generator().manual_seed(int(ctx.seed) * 1009 + r)
            params = [
                init_params(step.ops, gen, a0, cfg.noise, cfg.w_noise, population=pop)
                for step, a0 in zip(steps, level.alpha_init, strict=True)
            ]
            tensors = [t for p in params for t in p.tensors()]
            opt = torch.optim.Adam(tensors, lr=cfg.lr, betas=(0.9, cfg.beta2))
            lr_end = cfg.lr if cfg.lr_end is None else cfg.lr_end
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cap, 1), lr_end)
            best, since, bad = float("inf"), 0, 0
            score = torch.zeros(pop, dtype=torch.float64)  # running mean of member losses
            for i in range(cap):
                tau = anneal(cfg.tau_start, cfg.tau_end, i, cap)
                ws = Workspace(
                    ctx.library, ctx.task, length, batch=k, seed=int(ctx.rng.integers(2**31 - 1))
                )
                state, expected = state_fn(ws)
                state = repeat_rows(state, pop)
                defined = defined_fn(ws)
                if plan is not None:
                    state.update(channel_zeros(plan, pop * k, dtype))
                final, fstats = soft_forward(
                    state,
                    steps,
                    params,
                    tau,
                    cfg.gumbel,
                    gen,
                    defined,
                    cfg.fresh_bias,
                    branches=cfg.expected_last,
                    balanced=plan is not None,
                )
                loss = soft.loss_fn(final, expected).reshape(-1).expand(pop)
                plain = 1.0 if not cfg.plain_ramp else (i + 1) / cap
                if cfg.expected_last:
                    objective = expected_loss(fstats.branches, expected, cfg.scaled_loss, plain)
                else:
                    objective = plain * torch.log1p(loss)
                    if cfg.scaled_loss:
                        objective = objective + cfg.scaled_loss * scaled_loss_fn(final, expected)
                if cfg.entropy:
                    coef = cfg.entropy * (1.0 - 2.0 * i / max(cap - 1, 1))
                    objective = objective - coef * mean_entropy(params, tau)
                clock["cpu"] += fstats.cpu_s
                clock["rows"] = clock.get("rows", 0) + fstats.rows
                clock["grad_rows"] = clock.get("grad_rows", 0) + fstats.grad_rows
                used += 1
                stats["iterations"] = used
                count_faults(stats, steps, fstats.faults)
                values = loss.detach().double()
                total = objective.sum()
                if not (bool(torch.isfinite(values).all()) and bool(torch.isfinite(total))):
                    # Never silent: counted, reported, and the update is skipped.
                    stats["nonfinite_losses"] += 1
                    bad += 1
                    stats["last_nonfinite"] = (
                        f"restart {r}, iteration {i}: loss {', '.join(map(str, values.tolist()))}, "
                        f"objective "
                        f"{float(total.detach())}"
                    )
                else:
                    bad = 0
                    opt.zero_grad()
                    t0 = time.perf_counter()
                    total.backward()
                    for t in tensors:  # an op with no row on the torch ops: its gradient is 0
                        if t.grad is None:
                            t.grad = torch.zeros_like(t)
                    clock["backward"] += time.perf_counter() - t0
                    opt.step()
                    sched.step()
                    score = values if i == 0 else 0.7 * score + 0.3 * values
                order = ranked(score)
                lead = member(params, order[0])
                programs, sources = candidates(cfg, plan, steps, params, order, defined)
                value = float(values[order[0]])
                train_s = time.perf_counter() - clock["start"]
                stats.update(
                    cpu_forward_s=clock["cpu"],
                    cpu_backward_s=clock["backward"],
                    train_s=train_s,
                    grad_row_share=clock["grad_rows"] / max(clock["rows"], 1),
                )
                stats["iterations_per_s"] = used / train_s if train_s > 0 else 0.0
                alphas = (
                    [relax(p.alpha, tau, False, gen).numpy() for p in lead]
                    if plan is None
                    else usage(plan, lead, tau, cfg.fresh_bias)
                )
                monitor.log(
                    used,
                    value,
                    tau,
                    alphas,
                    [entropy(torch.from_numpy(a)) for a in alphas],
                    programs[0][2] if programs else [],
                )
                ctx.charge(
                    actions=pop * sum(len(s.ops) for s in steps),
                    env_steps=len(steps),
                    instructions=fstats.instructions,
                )
                new = 0
                for m, rank, candidate in programs:
                    if not candidate or program_key(candidate) in tried:
                        continue
                    if sources[(m, rank)] == "top-k":
                        if new >= cfg.top_k:
                            break
                        new += 1
                    if check(ctx, candidate, tried, k):
                        stats.update(
                            iterations_to_success=used,
                            final_loss=value,
                            success_rank=rank,
                            success_member=m,
                            success_source=sources[(m, rank)],
                        )
                        return prune(ctx, candidate, tried, k)
                stats["final_loss"] = value
                if bad >= 3:
                    break  # the loss stays non-finite: this restart is dead
                if cfg.exploit_every and pop > 1 and (i + 1) % cfg.exploit_every == 0:
                    stats["exploited"] += len(exploit(params, opt, score, 0.25, cfg.w_noise, gen))
                if value < best * 0.99:
                    best, since = value, 0
                else:
                    since += 1
                    if since >= cfg.patience:
                        break
    return None


def candidates(
    cfg: Any,
    plan: Plan | None,
    steps: list[SoftStep],
    params: list[StepParams],
    order: list[int],
    defined: set[str],
) -> tuple[list[tuple[int, int, Program]], dict[tuple[int, int], str]]:
    """The programs to run exactly, in order: every member's argmax program (best member
    first), then the best member's further discretisations; each as ``(member, rank,
    program)`` with its source (``"argmax"`` for rank 0, else ``"top-k"``)."""
    out: list[tuple[int, int, Program]] = []
    extra: list[tuple[int, int, Program]] = []
    for m in order:
        par = member(params, m)
        if plan is None:
            listed = [argmax_program(steps, par, defined, cfg.fresh_bias)]
        else:
            listed = [p for _, p in top_programs(plan, par, cfg.fresh_bias)]
        if listed:
            out.append((m, 0, listed[0]))
        if m == order[0] and cfg.top_k:
            extra = [(m, rank, p) for rank, p in enumerate(listed) if rank > 0]
    sources = {(m, rank): "argmax" if rank == 0 else "top-k" for m, rank, _ in out + extra}
    return out + extra, sources


def count_faults(stats: dict[str, Any], steps: list[SoftStep], faults: list[np.ndarray]) -> None:
    """Add a forward pass's faults to ``stats["faults"]`` (op label -> fault name -> count)."""
    counts = stats["faults"]
    for step, f in zip(steps, faults, strict=True):
        for op, row in zip(step.ops, f, strict=True):
            for code in row[row != 0]:
                entry = counts.setdefault(op.full_label, {})
                name = "OUT_OF_RANGE" if code == OUT_OF_RANGE else Fault(int(code)).name
                entry[name] = entry.get(name, 0) + 1
