"""`GradientComposer`: the paper's soft mixture of skills (section 3.2.3, equations 2-4),
trained by gradient descent through the Transformer CPU.

A program of T steps; per step, logits alpha over the candidate ops (a library skill with
its skill-typed arguments and data shapes fixed, :mod:`agents.gradient.ops`) plus *skip*,
and per op and data slot logits W^in over the type-compatible workspace buffers of the
slot's shape. The forward pass (:func:`agents.gradient.soft.soft_forward`) loads each slot
with a softmax(W^in)-weighted mixture, runs every op of the step on the K examples in one
batched call of the torch-kernel Transformer CPU (autograd through the data path), and mixes
the results with softmax(alpha). :mod:`agents.gradient.train` trains alpha and W^in with
Adam on K fresh examples per iteration (objective, schedules, a population of members in
the same calls, :mod:`agents.gradient.population`); :mod:`agents.gradient.verify` runs the
discretised programs exactly and verifies them. This module sets the run up: the candidate
ops of every step, the probe that excludes ops faulting on soft inputs, one
:class:`~agents.gradient.train.Level` per program length, the initial soft state.

Private channels (default, ``private=True``; :mod:`agents.gradient.dag`): every op of an
inner step writes a buffer of its own instead of mixing its result into shared scratch
buffers by alpha, reading slots load only buffers that hold values (inputs, constants,
earlier steps' channels), and later steps' W^in choose among the channels; the last step
is the alpha mixture above. ``private=False`` gives the shared-buffer form.
``init="description"`` starts alpha from the description prior (equation 4;
:mod:`agents.gradient.prior`).

Restrictions (documented deviations): training runs at one length (default: the smallest
training length >= 3, with all ops of a step sharing that layout); the last step only holds
ops that can write a task output, and their written slots bind only task outputs
(:func:`~agents.gradient.ops.to_outputs`); ops whose machines fault on every example of the
first (uniform) forward pass -- e.g. ``gather`` with soft indices -- are excluded and listed
in ``stats["excluded_ops"]``; the soft run uses float32 cells by default (the verification
is exact float64).

Accounting: every iteration charges ``ctx`` one action per op run (all steps, all members),
T env steps and the instructions the CPU executed, so budgets compare with the search
agents'; ``stats["iterations"]`` counts iterations.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.api import Agent, SolveContext, register_agent
from agents.gradient.dag import build_plan, readable, widen
from agents.gradient.monitor import Monitor
from agents.gradient.ops import Op, SoftStep, enumerate_ops
from agents.gradient.population import repeat_rows
from agents.gradient.soft import init_params, soft_forward
from agents.gradient.train import Level, train
from agents.result import Program
from algind_gym.cpu.backend import make_backend
from algind_gym.machine.isa import Fault
from algind_gym.tasks import TaskSpec, Workspace

INITS = ("uniform", "description")


DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64)}


def training_length(task: TaskSpec) -> int:
    """The smallest training length >= 3 (enough elements to tell most skills apart), else
    the longest training length."""
    longer = [n for n in task.train_lengths if n >= 3]
    return min(longer) if longer else max(task.train_lengths)


@register_agent("gradient")
class GradientComposer(Agent):
    """Soft composition trained by gradient descent (see the module docstring).

    Args:
        steps: T, program steps (>= 1).
        iterations: N, gradient iterations over all restarts.
        init: ``"uniform"`` (alpha logits 0) or ``"description"`` (the description prior).
        restarts: sequential restarts (new seeds); each gets an equal share of the
            remaining iterations.
        population: P members trained side by side as extra rows of the same batched
            CPU calls (:mod:`agents.gradient.population`); every member's argmax program
            is checked after each iteration.
        exploit_every: every this many iterations the worst quarter of the members is
            replaced by a perturbed copy of the best (0: never).
        lr: Adam learning rate (at the start of a restart).
        lr_end: learning rate at the end of a restart (cosine schedule; None: constant).
        entropy: weight of the entropy schedule (``+entropy`` -> ``-entropy`` over a
            restart, :mod:`agents.gradient.train`; 0: off).
        beta2: Adam's second-moment decay; lower than torch's 0.999 so that the step size
            follows a gradient that shrinks as an op's weight shrinks (short runs).
        examples: K examples per member and iteration (default :func:`default_examples`).
        length: training length (default :func:`training_length`).
        tau_start, tau_end: softmax temperature, annealed exponentially per restart
            (default 1 -> 0.1). Without annealing the mixture settles on blends of ops that
            fit the examples while their argmax program does not (DotProduct from four
            skills: relative loss 0.09, wrong program); ``tau_end=tau_start`` turns it off.
        gumbel: straight-through Gumbel-softmax instead of the plain softmax: True for
            alpha and W^in, ``"reads"`` for W^in only (each slot reads one buffer in the
            forward pass; see :func:`~agents.gradient.soft.soft_forward`).
        noise: std of the logits' random initialisation (what differs between restarts).
        w_noise: std of W^in's initial logits (see :func:`~agents.gradient.soft.init_params`).
        fresh_bias: initial W^in logit bonus of buffers an earlier step may have written.
        scaled_loss: weight of the correlation term (0 turns it off).
        expected_last: judge the last step's ops one by one (False: the mixture's loss).
        deepen: train programs of 1, 2, ..., T steps in turn (an equal share of the
            iterations each), so a task that one step solves is not trained as T steps
            (whose later steps start biased to read what the earlier ones wrote); False:
            only T steps.
        plain_ramp: weight the plain loss (i + 1) / n over a restart's n iterations, so
            that the correlation term leads first (default off).
        prior_scale: alpha logits = ``prior_scale * log prior`` for ``init="description"``.
        patience: iterations without a 1% loss improvement that end a restart.
        skills: restrict the library to these skills (names or keys); default all.
        private: private channels (:mod:`agents.gradient.dag`): every op of an inner step
            keeps its result in a buffer of its own and later steps' W^in choose among
            them; reading slots load only defined buffers (dataflow). False: the plain form,
            inner ops mixed by alpha into shared scratch buffers.
        top_k: the most programs not run before that are run exactly after an iteration
            besides the members' argmax programs (private channels): the best member's
            other most probable discretisations (:func:`~agents.gradient.dag.top_programs`);
            0 checks the argmax programs only (what training alone finds).
        max_ops: the most ops of one step (more is a clear error, or ends the deepening).
        dtype: ``"float32"`` (default) or ``"float64"`` cells for the soft run.
        hybrid: every row's values on the exact (numba) kernel and only the rows that carry
            a gradient on the torch ops (:meth:`~agents.gradient.ops.SoftStep.run`; same
            losses and gradients, less time); False: every row on the torch ops.
        split: the torch rows keep the skills' code outside autograd
            (:class:`~algind_gym.cpu.model.SplitCells`; same losses and gradients bit for bit,
            less time); False: whole cells (for benchmarks).
        narrow: with ``split`` on the hybrid run, only the cells the exact run wrote and the
            inputs in autograd (:meth:`~agents.gradient.step.SoftStep._data_mask`; same
            values and gradients); False: every cell but the code.
        out: folder for the alpha plot (``alpha.png``) and TensorBoard logs (``tb/``).
        verbose: show a rich progress bar and the timing summary on stderr.
    """

    def __init__(
        self,
        steps: int = 2,
        iterations: int = 100,
        init: str = "uniform",
        restarts: int = 1,
        population: int = 4,
        exploit_every: int = 4,
        lr: float = 0.5,
        lr_end: float | None = 0.05,
        entropy: float = 0.0,
        beta2: float = 0.95,
        examples: int | None = None,
        length: int | None = None,
        tau_start: float = 1.0,
        tau_end: float = 0.1,
        gumbel: bool | str = False,
        noise: float = 0.1,
        w_noise: float = 1.0,
        prior_scale: float = 2.0,
        fresh_bias: float = 2.0,
        scaled_loss: float = 1.0,
        expected_last: bool = True,
        plain_ramp: bool = False,
        patience: int = 25,
        deepen: bool = True,
        skills: list[str] | None = None,
        private: bool = True,
        top_k: int = 16,
        max_ops: int = 400,
        dtype: str = "float32",
        hybrid: bool = True,
        split: bool = True,
        narrow: bool = True,
        out: str | None = None,
        verbose: bool = False,
    ) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps (T) must be an integer >= 1, got {steps!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {restarts}")
        if examples is not None and examples < 1:
            raise ValueError(f"examples must be >= 1, got {examples}")
        if not 0 < tau_end <= tau_start:
            raise ValueError(f"need 0 < tau_end <= tau_start, got {tau_end}, {tau_start}")
        if gumbel not in (False, True, "reads"):
            raise ValueError(f"gumbel must be False, True or 'reads', got {gumbel!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.steps, self.iterations, self.init, self.restarts = steps, iterations, init, restarts
        self.lr, self.beta2, self.examples, self.length = lr, beta2, examples, length
        self.tau_start, self.tau_end, self.gumbel, self.noise = tau_start, tau_end, gumbel, noise
        self.w_noise = w_noise
        self.prior_scale, self.patience, self.dtype = prior_scale, patience, dtype
        self.fresh_bias, self.scaled_loss = fresh_bias, scaled_loss
        self.expected_last, self.plain_ramp = expected_last, plain_ramp
        self.deepen = deepen
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if isinstance(population, bool) or not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be an integer >= 1, got {population!r}")
        if exploit_every < 0:
            raise ValueError(f"exploit_every must be >= 0, got {exploit_every}")
        self.population, self.exploit_every = population, exploit_every
        self.lr_end, self.entropy = lr_end, entropy
        self.private, self.top_k, self.max_ops = private, top_k, max_ops
        self.skills = ",".join(skills) if skills else None
        self.out, self.verbose = out, verbose
        self.hybrid, self.split, self.narrow = hybrid, split, narrow

    # ----------------------------------------------------------------- set-up
    def _ops(self, ctx: SolveContext, ws: Workspace) -> tuple[list[Op], list[Op]]:
        """All ops, and the ops that can write a task output (the last step's); with
        private channels, only ops that read defined buffers (the first step's)."""
        skills = self.skills.split(",") if self.skills else None
        read_from = readable(ws.image, defined_buffers(ws)) if self.private else None
        outputs = set(ctx.task.outputs)
        final = enumerate_ops(
            ctx.library, ctx.task, ws.image, skills, self.max_ops, read_from, outputs=outputs
        )
        if not final:
            raise ValueError(
                f"task {ctx.task.name}: no skill of the library can write its output(s) "
                f"{list(ctx.task.outputs)} (no type-compatible written slot); add a skill "
                "that produces that type or check the task's signature"
            )
        if self.private and self.steps == 1:
            return [], final  # no inner step
        try:
            ops = enumerate_ops(
                ctx.library, ctx.task, ws.image, skills, self.max_ops, read_from, self.private
            )
        except ValueError as e:
            if not self.private:
                raise
            ctx.stats["deepening_stopped"] = f"T = 2: {e}"
            return [], final  # programs of one step only
        return ops, final

    def _state(self, ws: Workspace, dtype: torch.dtype) -> tuple[dict, dict]:
        """Initial soft state (every buffer, ``(K, size)``) and the oracle's outputs.

        Outputs and scratch start at zero here, not at the machine's uninitialised values:
        a mixture keeps a share (skip, unchosen buffers) of what a buffer held, and values
        of +-1000 there would swamp the loss. Slots never *read* them (see
        :func:`~agents.gradient.soft.read_bias`), and the discretised program is verified
        on real machines, uninitialised memory included, so nothing can lean on the zeros.
        """
        machines = ws.reset()
        defined = defined_buffers(ws)
        state = {
            n: torch.tensor(ws.image.read(machines, n).reshape(ws.batch, -1), dtype=dtype)
            * (1.0 if n in defined else 0.0)
            for n in ws.image.buffers
        }
        expected = {
            n: torch.tensor(
                np.stack([np.asarray(e[n], dtype=np.float64).reshape(-1) for e in ws.expected]),
                dtype=dtype,
            )
            for n in ctx_outputs(ws)
        }
        return state, expected

    # ----------------------------------------------------------------- search
    def search(self, ctx: SolveContext) -> Program | None:
        np_dtype, dtype = DTYPES[self.dtype]
        length = self.length or training_length(ctx.task)
        k = self.examples or default_examples(ctx, length, self.population)
        probe_ws = Workspace(ctx.library, ctx.task, length, batch=k, seed=ctx.seed)
        ops, final = self._ops(ctx, probe_ws)
        backend = make_backend("transformer-torch")

        def build(op_list: list[Op]) -> SoftStep:
            # rows per op: every member's K examples (agents.gradient.population)
            rows = k * self.population
            step = SoftStep(ctx.library, op_list, rows, probe_ws.max_steps, backend, np_dtype)
            step.hybrid, step.split, step.narrow = self.hybrid, self.split, self.narrow
            return step

        # Probe: a uniform forward pass; ops faulting on every example are excluded.
        excluded: dict[str, str] = {}
        for op_list in (ops, final):
            if not op_list:
                continue
            probe = build(op_list)
            state = repeat_rows(self._state(probe_ws, dtype)[0], self.population)
            gen = torch.Generator().manual_seed(0)
            par = init_params(op_list, gen, None, 0.0, population=self.population)
            with torch.no_grad():
                _, fstats = soft_forward(state, [probe], [par], 1.0, False, torch.Generator())
            ctx.charge(actions=len(op_list), env_steps=1, instructions=fstats.instructions)
            for op, f in zip(op_list, fstats.faults[0], strict=True):
                if (f > 0).all():  # machine faults on every example (not just out of range)
                    excluded[op.full_label] = Fault(int(np.bincount(f).argmax())).name
        ops = [op for op in ops if op.full_label not in excluded]
        final = [op for op in final if op.full_label not in excluded]
        ctx.stats.update(
            n_ops=len(ops),
            n_final_ops=len(final),
            excluded_ops=excluded,
            training_length=length,
            examples=k,
        )
        if not final:
            raise ValueError(
                f"task {ctx.task.name}: every op that can write {list(ctx.task.outputs)} "
                f"faults on soft inputs ({excluded}); no differentiable path to the outputs"
            )
        depths = list(range(1, self.steps + 1)) if self.deepen else [self.steps]
        if self.private:
            if not ops:
                depths = [1]
            levels = self._private_levels(ctx, probe_ws, depths, set(excluded), build)
        else:
            soft_steps = [build(ops), build(final)] if self.steps > 1 else [None, build(final)]
            inits = self._alpha_init(ctx, [ops, final] if self.steps > 1 else [final], length)
            if self.steps == 1:
                inits = [None, *inits]
            levels = [
                Level(
                    d,
                    [soft_steps[0]] * (d - 1) + [soft_steps[1]],
                    [inits[0]] * (d - 1) + [inits[1]],
                )
                for d in depths
            ]
        monitor = Monitor(self.out, [], self.verbose)
        try:
            return train(
                self,
                ctx,
                levels,
                monitor,
                k,
                length,
                dtype,
                lambda ws: self._state(ws, dtype),
                defined_buffers,
            )
        finally:
            monitor.close(ctx)

    def _private_levels(
        self, ctx: SolveContext, ws: Workspace, depths: list[int], excluded: set[str], build
    ) -> list[Level]:
        """One :class:`Level` per program length with private channels
        (:mod:`agents.gradient.dag`); a length whose steps exceed ``max_ops`` ops ends the
        list (reported in ``stats["deepening_stopped"]``)."""
        defined = defined_buffers(ws)
        levels: list[Level] = []
        for depth in depths:
            try:
                plan = build_plan(
                    ctx.library,
                    ctx.task,
                    ws.image,
                    depth,
                    defined,
                    self.skills.split(",") if self.skills else None,
                    excluded,
                    self.max_ops,
                )
            except ValueError as e:
                if not levels:
                    raise
                ctx.stats["deepening_stopped"] = f"T = {depth}: {e}"
                break
            if not plan.steps_ops[-1]:
                continue  # no op of the last step can read what it needs
            steps = [build(o) for o in plan.steps_ops]
            for step in steps[:-1]:
                step.private = True
            inits: list[np.ndarray | None] = [None] * depth
            if self.init == "description":
                widened = widen(plan.steps_ops[-1], ws.image)
                inits[-1] = self._alpha_init(ctx, [widened], ws.length)[0]
            levels.append(Level(depth, steps, inits, plan))
        ctx.stats["ops_per_step"] = {lv.depth: [len(s.ops) for s in lv.steps] for lv in levels}
        if not levels:
            raise ValueError(
                f"task {ctx.task.name}: no op can write {list(ctx.task.outputs)} from "
                "buffers a program has written (dataflow)"
            )
        return levels

    def _alpha_init(
        self, ctx: SolveContext, steps_ops: list[list[Op]], length: int
    ) -> list[np.ndarray | None]:
        if self.init == "uniform":
            return [None] * len(steps_ops)
        from agents.gradient.prior import description_alpha

        out = []
        for op_list in steps_ops:
            prior, source = description_alpha(ctx, op_list, length)
            out.append(self.prior_scale * np.log(prior))
        ctx.stats["prior_source"] = source
        return out


def default_examples(ctx: SolveContext, length: int, population: int = 1) -> int:
    """K per member and iteration: at least 4, and enough for 8 output values over all
    ``population`` members (one member alone: 8 for a scalar output, whose loss and
    correlation over 4 numbers are mostly noise; the members' running mean losses average
    over iterations), at most the solve's ``n_examples``."""
    ws = Workspace(ctx.library, ctx.task, length, batch=1, seed=ctx.seed)
    cells = sum(np.asarray(ws.expected[0][n]).size for n in ctx.task.outputs)
    return max(1, min(ctx.n_examples, max(4, -(-8 // max(cells * population, 1)))))


def ctx_outputs(ws: Workspace) -> tuple[str, ...]:
    return ws.task.outputs


def defined_buffers(ws: Workspace) -> set[str]:
    """Buffers holding defined values when a program starts: the task's inputs and the
    constants (outputs and scratch hold uninitialised memory)."""
    roles = ws.pointer_roles
    return {
        n
        for n, r in zip(ws.pointer_names, roles, strict=True)
        if r in ("input", "inout", "constant")
    }
