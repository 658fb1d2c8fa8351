"""Private channels: the soft program as a dataflow graph, and its k most probable programs.

With shared scratch buffers (the plain form of equation 2) every op of a step that can write
a vector mixes its result into the same few temporaries, weighted by alpha; the right first
op of a two-step program (DotProduct's ``zipmap(s_mul)``) is then about 1/60 of what the
next step reads, and predicting zero beats every such mixture
(experiments/results/gradient_table_session7_notes.md). Here each *inner* step (every step but the
last) gives each op's written slot a buffer of its own, a *channel* ``~t.v.j`` (step, op,
slot), holding that op's result unmixed. A later step's reading slot chooses softly among
the buffers it may read -- the task's inputs and constants and the channels of earlier
steps (the dataflow restriction: a buffer nobody has written is not a candidate) -- so the
inner step's alpha is replaced by the reading slots' W^in over channels: the alpha of
step ``t`` is, in effect, how much the later steps read each of its ops (:func:`usage`).
The last step is the paper's mixture: alpha over the ops that can write the task's outputs,
their written slots bound to the outputs.

A discrete program follows the reads back from the last step's op: each channel it reads
is the op that wrote it, placed earlier in the program and given a scratch buffer of the
channel's shape (:func:`allocate`). :func:`top_programs` lists such programs in the order
to try them: the argmax program, then every last-step op's most probable reads (probability
= alpha of the last op times the W^in softmax of every read, each channel read times its
producer's own reads); the composer runs a few new ones exactly after every iteration and
verifies any that is right (discretise and verify over several discretisations, not the
argmax alone; ``stats["checked"]`` counts them).

Why every last-step op and not alpha's top ones: measured on DotProduct from the built-in
library, the reading slots of ``reduce(s_add)`` and ``fold(s_add)`` rank the channel of
``zipmap(s_mul)`` first among the ~30 vector channels within a few iterations, while alpha
moves *away* from those two ops (judged on their soft inputs, a mixture of x, y and every
channel, they fit worse than ``reduce(s_mul)`` of an input does).

Inner-step ops whose reading slots can read only constants are left out
(:func:`constant_only`): at the first step they compute a constant.

Deviation from the paper: inner steps have no alpha of their own (every op of an inner step
runs and keeps its result), and skills with a read-and-written (``inout``) slot are not
inner-step ops (their result could not be kept apart from their input).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, replace

import numpy as np
import torch

from agents.gradient.ops import Op, ShapeClass, buffer_classes, enumerate_ops
from agents.gradient.soft import StepParams, read_bias
from agents.result import Program
from algind_gym.skills.image import MachineImage
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import TaskSpec

BEAM = 6
"""Candidates per reading slot, and programs per last-step op, while listing programs
(each op node and slot keeps ``2 * BEAM`` alternatives)."""


def channel_name(t: int, v: int, j: int) -> str:
    """The private buffer of step ``t``'s op ``v``, slot ``j`` (never a workspace name)."""
    return f"~{t}.{v}.{j}"


@dataclass
class Plan:
    """The candidate ops of a program of ``len(steps_ops)`` steps with private channels."""

    steps_ops: list[list[Op]]
    """Per step, its ops; the inner steps' written slots bind their channel, the last
    step's bind the task outputs."""
    channels: dict[str, tuple[int, int, int, ShapeClass]]
    """Channel name -> (step, op, slot, shape class)."""
    origin: dict[str, tuple[str, ...]]
    """Channel name -> the workspace buffers its slot could write (for :func:`allocate`)."""

    @property
    def depth(self) -> int:
        return len(self.steps_ops)


def readable(image: MachineImage, defined: set[str]) -> dict[ShapeClass, list[str]]:
    """The ``defined`` buffers of a workspace ``image`` by shape class (what a first step
    may read)."""
    classes = buffer_classes(image)
    out: dict[ShapeClass, list[str]] = {}
    for name in image.buffers:
        if name in defined:
            out.setdefault(classes[name], []).append(name)
    return out


def widen(ops: list[Op], image: MachineImage) -> list[Op]:
    """``ops`` with each reading slot's candidates replaced by every workspace buffer of its
    class (channels are not workspace buffers), for priors that score real bindings."""
    classes = buffer_classes(image)
    out = []
    for op in ops:
        slots = tuple(
            replace(s, candidates=tuple(n for n, c in classes.items() if c == s.shape))
            if s.skill is None and not s.written
            else s
            for s in op.slots
        )
        out.append(Op(op.skill, slots))
    return out


def build_plan(
    library: SkillLibrary,
    task: TaskSpec,
    image: MachineImage,
    depth: int,
    defined: set[str],
    skills: list[str] | None = None,
    exclude: set[str] = frozenset(),
    max_ops: int = 400,
) -> Plan:
    """The ops of each step of a ``depth``-step program (see the module docstring).

    Args:
        defined: buffers holding values when the program starts (inputs, constants).
        exclude: op labels (``Op.full_label``) left out at every step.
        max_ops: the most ops of one step (:func:`enumerate_ops` raises beyond).
    """
    read_from = readable(image, defined)
    consts = set(defined) - {a.name for a in task.args if a.role in ("in", "inout")}
    steps_ops: list[list[Op]] = []
    channels: dict[str, tuple[int, int, int, ShapeClass]] = {}
    origin: dict[str, tuple[str, ...]] = {}
    for t in range(depth - 1):
        ops = enumerate_ops(library, task, image, skills, max_ops, read_from, no_inout=True)
        ops = [op for op in ops if op.full_label not in exclude and not constant_only(op, consts)]
        private, written = [], {}
        for v, op in enumerate(ops):
            slots = []
            for j, s in enumerate(op.slots):
                if s.written:
                    name = channel_name(t, v, j)
                    channels[name] = (t, v, j, s.shape)
                    origin[name] = s.candidates
                    written.setdefault(s.shape, []).append(name)
                    s = replace(s, candidates=(name,))
                slots.append(s)
            private.append(Op(op.skill, tuple(slots)))
        steps_ops.append(private)
        read_from = {
            c: [*read_from.get(c, []), *written.get(c, [])] for c in {*read_from, *written}
        }
    outputs = set(task.outputs)
    final = enumerate_ops(library, task, image, skills, max_ops, read_from, outputs=outputs)
    steps_ops.append([op for op in final if op.full_label not in exclude])
    return Plan(steps_ops, channels, origin)


def constant_only(op: Op, constants: set[str]) -> bool:
    """Whether every reading slot of ``op`` can read only ``constants`` (its result is a
    constant, not a function of the inputs); an op without reading slots (``iota``) is not."""
    reads = [s for s in op.slots if s.skill is None and s.role != "out"]
    return bool(reads) and all(set(s.candidates) <= constants for s in reads)


def channel_zeros(plan: Plan, k: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The channels' initial soft state: zeros ``(k, size)`` (overwritten before any read)."""
    return {
        n: torch.zeros(k, cls[1] * cls[2], dtype=dtype) for n, (*_, cls) in plan.channels.items()
    }


def slot_logp(op: Op, par: StepParams, v: int, j: int, fresh: set[str], bias: float) -> np.ndarray:
    """log softmax of a reading slot's W^in plus the read bias the soft forward adds."""
    cands = op.slots[j].candidates
    logits = par.w_in[(v, j)].detach() if (v, j) in par.w_in else torch.zeros(len(cands))
    logits = logits.double() + read_bias(op, j, set(cands), fresh, bias, balanced=True)
    return torch.log_softmax(logits, 0).numpy()


Entry = tuple[int, int, tuple[str, ...]]
"""One step of a program before allocation: (step, op, bindings); bindings may be channels."""
PRODUCER_WEIGHT = 0.25
"""Weight of a producer's own log probability in a channel read's listing score: the list
follows the reading slot's choice of channel first and the producer's reads second. Two
slots of one producer that read the same mixture get the same gradient, so a producer's
W^in often settles on a symmetric choice (measured: ``zipmap(s_mul)`` reading x and x for
DotProduct's x * y); scored at full weight, its other reads fall out of the list."""

Fragment = tuple[float, tuple[Entry, ...]]
"""A log probability and the entries it needs (producers first)."""


def top_programs(
    plan: Plan,
    params: list[StepParams],
    fresh_bias: float,
    per_op: int = BEAM,
    beam: int = BEAM,
) -> list[tuple[float, Program]]:
    """Discrete programs to run exactly, in the order to try them: the argmax program
    first (empty when skip is the last step's argmax), then, for every op of the last step,
    its ``per_op`` most probable ways to read its inputs (a channel read includes its
    producer's own most probable reads) -- every op's best first, in order of alpha, then
    every op's second best, and so on. Each comes with its listing score: the log of
    alpha of the last op times the W^in softmax of every read, a producer's reads weighted
    by :data:`PRODUCER_WEIGHT`. Listing every op of the last step, not
    only alpha's top ones, is what lets W^in find a producer while alpha still favours ops
    whose soft inputs fit better (see the module docstring). Programs whose channels cannot
    all get a scratch buffer (:func:`allocate`) are left out."""
    fresh = set(plan.channels)
    memo: dict[tuple[int, int], list[Fragment]] = {}

    def node(t: int, v: int) -> list[Fragment]:
        """The ``beam`` most probable ways to run op ``v`` of step ``t`` with its inputs."""
        if (t, v) in memo:
            return memo[(t, v)]
        op, par = plan.steps_ops[t][v], params[t]
        per_slot: list[list[tuple[float, str, tuple[Entry, ...]]]] = []
        for j, s in enumerate(op.slots):
            if s.skill is not None:
                per_slot.append([(0.0, f"&{s.skill}", ())])
            elif s.role == "out":
                per_slot.append([(0.0, s.candidates[0], ())])
            else:
                logp = slot_logp(op, par, v, j, fresh, fresh_bias)
                opts = []
                for c in np.argsort(-logp, kind="stable")[:beam]:
                    name = s.candidates[int(c)]
                    if name in plan.channels:
                        pt, pv, _, _ = plan.channels[name]
                        opts += [
                            (float(logp[c]) + PRODUCER_WEIGHT * lp, name, f)
                            for lp, f in node(pt, pv)
                        ]
                    else:
                        opts.append((float(logp[c]), name, ()))
                # each channel brings its producer's alternatives (a producer's reads may
                # have settled on a symmetric wrong choice such as x * x for x * y)
                per_slot.append(heapq.nlargest(2 * beam, opts, key=lambda x: x[0]))
        frags: list[Fragment] = []
        for combo in itertools.product(*per_slot):
            needs = tuple(e for c in combo for e in c[2])
            frags.append((sum(c[0] for c in combo), (*needs, (t, v, tuple(c[1] for c in combo)))))
        memo[(t, v)] = heapq.nlargest(2 * beam, frags, key=lambda x: x[0])
        return memo[(t, v)]

    last = plan.depth - 1
    alpha = torch.log_softmax(params[last].alpha.detach().double(), 0).numpy()
    ranked: list[tuple[int, float, tuple[Entry, ...]]] = []
    for i in np.argsort(-alpha, kind="stable"):
        if i == 0:  # skip: the empty program
            ranked.append((0, float(alpha[0]), ()))
            continue
        for rank, (lp, f) in enumerate(node(last, int(i) - 1)[:per_op]):
            ranked.append((rank, float(alpha[i]) + lp, f))
    best = max(ranked, key=lambda x: x[1])
    ranked.sort(key=lambda x: (x[0], -x[1]))
    out: list[tuple[float, Program]] = []
    seen: set[tuple] = set()
    for _, lp, entries in [best, *ranked]:
        program = allocate(plan, entries)
        if program is None:
            continue
        key = tuple((sk, tuple(b)) for sk, b in program)
        if key in seen:
            continue
        seen.add(key)
        out.append((lp, program))
    return out


def allocate(plan: Plan, entries: tuple[Entry, ...]) -> Program | None:
    """A program from entries (each op once, in step order), every channel bound to a
    workspace buffer its slot could write, distinct per channel, a task output only when
    no scratch buffer is left; None when none is free."""
    steps: dict[tuple[int, int], tuple[str, ...]] = {}
    for t, v, names in entries:
        steps[(t, v)] = names
    outputs = {n for op in plan.steps_ops[-1] for s in op.slots if s.written for n in s.candidates}
    taken: set[str] = set()
    buffer: dict[str, str] = {}
    for (t, v), names in sorted(steps.items()):
        op = plan.steps_ops[t][v]
        for j, s in enumerate(op.slots):
            if s.written and names[j] in plan.channels:
                free = [n for n in plan.origin[names[j]] if n not in taken]
                free = [n for n in free if n not in outputs] or free
                if not free:
                    return None
                buffer[names[j]] = free[0]
                taken.add(free[0])
    program: Program = []
    for (t, v), names in sorted(steps.items()):
        program.append((plan.steps_ops[t][v].skill, [buffer.get(n, n) for n in names]))
    return program


def usage(plan: Plan, params: list[StepParams], tau: float, fresh_bias: float) -> list[np.ndarray]:
    """Per step, a distribution over ``[skip, *ops]`` to plot as alpha: the last step's
    softmax(alpha / tau); for an inner step, the probability that some later step's chosen
    op reads each op's channel (propagated back through the reads; skip = the rest)."""
    fresh = set(plan.channels)
    last = plan.depth - 1
    a = torch.softmax(params[last].alpha.detach().double() / tau, 0).numpy()
    weights = [np.zeros(len(ops)) for ops in plan.steps_ops]
    weights[last] = a[1:]
    for t in range(last, 0, -1):
        for v, op in enumerate(plan.steps_ops[t]):
            if weights[t][v] <= 0:
                continue
            for j in op.data_slots:
                s = op.slots[j]
                if s.role == "out":
                    continue
                p = np.exp(slot_logp(op, params[t], v, j, fresh, fresh_bias) / tau)
                p = p / p.sum()
                for c, name in enumerate(s.candidates):
                    if name in plan.channels:
                        pt, pv, _, _ = plan.channels[name]
                        weights[pt][pv] += weights[t][v] * p[c]
    out = []
    for t, w in enumerate(weights):
        if t == last:
            out.append(a)
            continue
        w = np.minimum(w, 1.0)
        total = w.sum()
        w = w / total if total > 1 else w
        out.append(np.concatenate([[max(0.0, 1.0 - w.sum())], w]))
    return out
