"""`SkillCompositionEnv`: one curriculum task as a Gymnasium environment.

The environment is a thin layer over :class:`~algind_gym.tasks.workspace.Workspace` (the one
way to run an action): it samples a length, generates K examples, turns agent actions into
``(skill, bindings)`` (:mod:`algind_gym.envs.actions`), runs them on the K machines in
lockstep with the chosen backend, and scores the outputs. Execution is split into
``_plan`` / ``_execute`` / ``_finish`` so that :class:`~algind_gym.envs.vector.AlgIndVectorEnv`
can run the actions of many environments in one batched CPU call with the same code.

Capacity: machines are laid out for ``max(length, max_length)`` (``max_length`` defaults to
the largest training length), so every training length shares one layout (one batch in
the vector env) and the observation has a fixed size.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from algind_gym.envs.actions import HALT, ActionTable, build_action_table
from algind_gym.envs.batch import EpisodeIndex, score_many
from algind_gym.envs.observation import ObservationBuilder
from algind_gym.envs.render import describe_pointer_table, describe_registers, state_to_rgb
from algind_gym.envs.tables import DEFAULT_CAPS, TableSpec
from algind_gym.machine.isa import Fault
from algind_gym.machine.state import MachineState
from algind_gym.skills.builtin import builtin_library
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks.spec import TaskSpec, get_task
from algind_gym.tasks.workspace import Workspace, shallow_copy

REWARD_MODES = ("dense", "sparse")
ACTION_ENCODINGS = ("discrete", "multidiscrete")
OBSERVATION_MODES = ("state", "compact", "tables")
MAX_CALLS_LIMIT = 1_000
"""The largest ``max_calls`` accepted (the ``calls`` observation has a row per call)."""
MAX_LENGTH_LIMIT = 1_024
"""Lengths above ``max(MAX_LENGTH_LIMIT, max_length, the task's test lengths)`` are refused
at reset: one call's instruction budget and memory grow with the length."""
FINISHED_WARNING = (
    "You are calling 'step()' even though this environment has already returned "
    "terminated = True or truncated = True. You should always call 'reset()' once you "
    "receive 'terminated = True' or 'truncated = True' -- this step does nothing."
)


class SkillCompositionEnv(gym.Env):
    """Compose library skills into a program that solves one task on K examples at once.

    ## Description

    The paper's composition learning problem (Sindhi & Budvytis, section 3.2.3) as an MDP.
    A machine state holds the task's inputs, free space for outputs and temporaries, a
    pointer table describing every piece of data, and the code of every library skill.
    Each step the agent picks a skill and which pointer-table entries to load into its
    argument slots; the Transformer CPU (or the reference interpreter) runs the skill to
    completion on K example machines in lockstep (the CPU's batch dimension), so a program
    only scores if it is right on all K different inputs. An episode is one attempt at a
    program; the calls made so far are the program (``info["program"]``).

    ## Action Space

    ``action_encoding="discrete"`` (default): ``Discrete(n)``, one index per candidate
    ``(skill, bindings)`` plus HALT (the last index). ``"multidiscrete"``:
    ``MultiDiscrete([n_skills + 1, n_pointers, ...])``, the skill (HALT last) then one
    pointer per slot. Masks: :meth:`action_masks` and ``info["action_mask"]`` (exact for
    "discrete"; see :mod:`algind_gym.envs.actions`).

    ## Observation Space

    ``observation_mode="state"`` (default), a ``Dict`` of flat float32 vectors (the shapes
    below are ``env.observation_shapes``; reshape with them):

    * ``cells``: ``(K, n_registers + 4 * n_pointers + memory_window)`` float32: per machine,
      the registers, the pointer table ``[addr, rows, cols, type]`` and the first
      ``memory_window`` cells of memory (inputs, outputs and temporaries; zero padded).
      Stack (empty between calls) and code (constant per library) are left out.
    * ``pointer_types``: ``(n_pointers,)`` the ``type`` code of each entry (0 empty,
      1 scalar, 2 vector, 3 matrix, 4 skill).
    * ``calls``: ``(max_calls, 1 + max_arity)`` the actions so far as
      ``[skill, pointers...]`` (multidiscrete form), -1 where empty.

    ``observation_mode="compact"``: ``registers`` ``(K, n_registers)``, ``pointers``
    ``(n_pointers, 4)``, ``data`` ``(K, n_pointers, window)`` (the first ``window``
    elements of every data entry, length independent), ``pointer_types`` and ``calls``.

    ``observation_mode="tables"``: task- and library-agnostic, one fixed shape for every
    task (caps ``table_caps``, default pointer_cap 128, skill_cap 64, arity_cap 8,
    class_cap 32; about 32 KB per observation): ``pointers`` ``(P, 18)`` (per
    pointer-table entry: type, role, shape, data mean/min/max over the K machines, fraction
    of output elements right, written-yet flag), ``skills`` ``(S, 72)`` (per skill: kind,
    level, arity, calls so far, per-slot type and role), ``skill_mask`` ``(S,)``,
    ``slot_class`` ``(S, A)``, ``class_mask`` ``(C, P)`` (per-slot pointer masks, factored
    by slot class) and ``globals`` ``(4,)``. The component masks allow exactly the valid
    actions. Layout: :mod:`algind_gym.envs.tables`.

    Libraries that want one flat ``Box`` (RLlib's default encoders, for instance) wrap the
    env in ``gymnasium.wrappers.FlattenObservation``; the masks stay in ``info``.

    ## Rewards

    ``reward_mode="dense"``: potential-based, the change in the fraction of output elements
    within the task's tolerance, averaged over the K examples. ``"sparse"``: 1 when every
    output of every example is right. Both subtract ``call_cost`` per executed call. A
    masked (invalid) action costs ``invalid_penalty`` and changes nothing; a fault costs
    ``fault_penalty`` and ends the episode.

    ## Starting State

    Fresh machines with the library installed, K examples of the task at a length drawn
    uniformly from ``lengths`` (default: the task's training lengths) or given by
    ``reset(options={"length": n})`` (an integer from 0 up to
    ``max(1024, max_length, the task's test lengths)``), outputs and temporaries as
    :meth:`Workspace.reset <algind_gym.tasks.workspace.Workspace.reset>` leaves them.

    ## Episode End

    Terminated on success, on HALT and on a fault (``info["fault"]`` names it). Truncated
    after ``max_calls`` steps (also when the last step terminates, as gymnasium's
    ``TimeLimit`` does). The env counts calls itself: ``max_calls`` is the one limit
    (``gym.make(id, max_calls=N)`` sets it; the registered spec adds no ``TimeLimit``),
    and :meth:`restore` rewinds it. Stepping a finished episode warns (gymnasium's
    CartPole wording), does nothing and repeats the end flags; call :meth:`reset`.

    ## Search

    :meth:`snapshot` / :meth:`restore` save and restore everything the rest of an episode
    depends on (machines bit for bit, call count, history, RNG); a snapshot stores only the
    machine cells that differ from the workspace's fresh machine, so code is shared, not
    copied. :meth:`state_key` is a hashable key of the K machines' data.

    ## Arguments

    ``task`` (name, id or :class:`TaskSpec`), ``library`` (default: built-in atomic skills and
    combinators), ``n_examples`` (K, 8), ``max_calls`` (T, 6), ``lengths``, ``max_length``,
    ``backend`` (a name of :data:`algind_gym.cpu.BACKENDS` or ``OPT_IN_BACKENDS``; default
    ``"transformer"``),
    ``reward_mode``, ``action_encoding``, ``observation_mode``, ``call_cost`` (0.01),
    ``invalid_penalty`` (0.1), ``fault_penalty`` (1.0), ``memory_window``, ``data_window``,
    ``dtype`` (float64), ``render_mode`` (``"ansi"`` or ``"rgb_array"``), ``table_caps``
    (``observation_mode="tables"`` only). Bad values raise ``ValueError`` at construction,
    naming the argument and what it accepts (``max_calls`` 1..1000, ``n_examples``
    1..4096, a backend of :data:`algind_gym.cpu.BACKENDS`, a cap the task fits in).
    :meth:`encode` raises a ``ValueError`` naming the slot for a binding the mask refuses.

    ## Vectorized Environment

    ``gym.make_vec(id, num_envs, vectorization_mode="vector_entry_point")`` gives
    :class:`~algind_gym.envs.vector.AlgIndVectorEnv`: all environments' K machines run in
    one batched CPU call per step; scoring, observations and autoresets run as array
    operations over all sub-environments, with next-step autoreset.

    ## Version History

    * v0: initial version.

    Example:
        >>> env = SkillCompositionEnv("VectorAdd", backend="reference", n_examples=2)
        >>> obs, info = env.reset(seed=0)
        >>> a = env.encode("zipmap", ["&s_add", "x", "y", "out"])
        >>> obs, reward, terminated, truncated, info = env.step(a)
        >>> terminated, info["success"]
        (True, True)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 2}

    def __init__(
        self,
        task: str | TaskSpec = "VectorAdd",
        library: SkillLibrary | None = None,
        *,
        n_examples: int = 8,
        max_calls: int = 6,
        lengths: tuple[int, ...] | None = None,
        max_length: int | None = None,
        backend: str = "transformer",
        reward_mode: str = "dense",
        action_encoding: str = "discrete",
        observation_mode: str = "state",
        call_cost: float = 0.01,
        invalid_penalty: float = 0.1,
        fault_penalty: float = 1.0,
        memory_window: int | None = None,
        data_window: int = 8,
        dtype: Any = np.float64,
        render_mode: str | None = None,
        table_caps: dict[str, int] | None = None,
    ) -> None:
        self._init_args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.task = task if isinstance(task, TaskSpec) else get_task(task)
        self.library = library if library is not None else builtin_library()
        _check_choice("reward_mode", reward_mode, REWARD_MODES)
        _check_choice("action_encoding", action_encoding, ACTION_ENCODINGS)
        _check_choice("observation_mode", observation_mode, OBSERVATION_MODES)
        if render_mode is not None:
            _check_choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))
        _check_backend(backend)
        _check_int("n_examples", n_examples, 1, 4096)
        _check_int("max_calls", max_calls, 1, MAX_CALLS_LIMIT)
        self.lengths = tuple(lengths) if lengths else self.task.train_lengths
        if any(n < 0 for n in self.lengths):
            raise ValueError(f"lengths must be non-negative, got {self.lengths}")
        self.max_length = int(max_length) if max_length is not None else max(self.lengths)
        self.n_examples, self.max_calls = int(n_examples), int(max_calls)
        self.backend, self.reward_mode = backend, reward_mode
        self.action_encoding, self.observation_mode = action_encoding, observation_mode
        self.call_cost, self.invalid_penalty = float(call_cost), float(invalid_penalty)
        self.fault_penalty, self.dtype, self.render_mode = float(fault_penalty), dtype, render_mode

        self._workspaces: dict[int, Workspace] = {}  # the first workspace of each length
        probe = self._workspace(self.max_length, seed=0)
        self._probe_image = probe.image
        self.actions: ActionTable = build_action_table(probe.image, self.task)
        self.tables = None
        if observation_mode == "tables":
            caps = dict(DEFAULT_CAPS)
            for key, v in (table_caps or {}).items():
                _check_choice("table_caps key", key, tuple(DEFAULT_CAPS))
                caps[key] = _check_int(f"table_caps[{key!r}]", v, 1, 100_000)
            self.tables = TableSpec(self.actions, self.library, **caps)
        elif table_caps:
            raise ValueError("table_caps only applies to observation_mode='tables'")
        self._skill_pos = {k: i for i, k in enumerate(self.actions.skills)}
        self._writes = [
            tuple(j for j, a in enumerate(slots) if a.role in ("out", "inout"))
            for slots in self.actions.slots
        ]
        self._indexes: dict[int, EpisodeIndex] = {}
        self._texts: dict[tuple[str, tuple[int, ...]], str] = {}  # program_text() lines
        self._rows = np.arange(self.n_examples)[None]
        self._fault_col = probe.image.layout.register("fault")
        self._obs = ObservationBuilder(
            probe,
            self.actions,
            max_calls=self.max_calls,
            mode=observation_mode,
            memory_window=memory_window,
            data_window=data_window,
            tables=self.tables,
        )
        self.observation_space = self._obs.space
        self.observation_shapes = self._obs.shapes
        if action_encoding == "discrete":
            self.action_space = spaces.Discrete(self.actions.n_discrete)
        else:
            self.action_space = spaces.MultiDiscrete(self.actions.multidiscrete_nvec())
        self.ws: Workspace | None = None
        self.state: MachineState | None = None

    # ---------------------------------------------------------------- helpers
    def _workspace(self, length: int, seed: int) -> Workspace:
        """The workspace of ``length`` with the examples of ``seed``. The first one of a
        length is built (image, layout, linked code); later ones are shallow copies of it,
        refilled with the new examples (:meth:`Workspace.refill`, which gives what a new
        workspace would, sharing the image): a reset then costs about the examples. Every
        call returns a new object, so a snapshot's workspace never changes."""
        first = self._workspaces.get(length)
        if first is not None:
            ws = shallow_copy(first)
            try:
                ws.refill(seed)
                return ws
            except ValueError:  # examples of another shape than the first one's: build anew
                pass
        ws = Workspace(
            self.library,
            self.task,
            length,
            batch=self.n_examples,
            seed=seed,
            dtype=self.dtype,
            capacity=self.max_length,
        )
        self._workspaces.setdefault(length, ws)
        return ws

    def encode(self, skill: str, bindings: list[int | str]) -> int | np.ndarray:
        """The action for ``skill`` with ``bindings`` (pointer names or indices); HALT: ``("HALT", [])``.

        Raises:
            ValueError: the action breaks the binding rule the masks use
                (:meth:`~algind_gym.envs.actions.ActionTable.binding_error`); the message
                names the slot, the pointer given, its type and role, and what the slot
                accepts, or the expected number of bindings.
        """
        if skill == HALT:
            key, binds = HALT, ()
        else:
            try:
                key = self.library.get(skill).key
            except (KeyError, TypeError):
                raise ValueError(
                    f"unknown skill {skill!r}; this env's skills are {', '.join(self.actions.skills)}"
                ) from None
            binds = tuple(self._pointer(key, j, b, len(bindings)) for j, b in enumerate(bindings))
        error = self.actions.binding_error(key, binds)
        if error is not None:
            raise ValueError(f"cannot encode ({skill}, {list(bindings)}): {error}")
        if self.action_encoding == "discrete":
            return self.actions.candidate_index(key, binds)
        vec = np.zeros(1 + self.actions.max_arity, dtype=np.int64)
        vec[0] = len(self.actions.skills) if key == HALT else self.actions.skills.index(key)
        vec[1 : 1 + len(binds)] = binds
        return vec

    def _pointer(self, key: str, j: int, name: int | str, n_given: int) -> int:
        """Pointer index of binding ``j`` of ``key`` given by name or index."""
        if not isinstance(name, str):
            return name
        try:
            return self._probe_image.pointer_index(name)
        except KeyError:
            s = self.actions.skills.index(key) if key in self.actions.skills else None
            if s is not None and n_given != self.actions.arity[s]:
                return -1  # the count error is reported instead
            where = f"{self.actions._slot(s, j)}" if s is not None else f"binding {j}"
            raise ValueError(
                f"cannot encode ({key}, ...): {where}: no pointer entry {name!r}; entries are "
                f"{', '.join(self.actions.pointer_names)}"
            ) from None

    def decode(self, action) -> tuple[str, tuple[int, ...]]:
        """``(skill key or "HALT", bindings)`` of an action of this env's action space."""
        if self.action_encoding == "discrete":
            return self.actions.decode_discrete(int(action))
        return self.actions.decode_multidiscrete(np.asarray(action))

    def action_masks(self) -> np.ndarray:
        """Boolean mask of valid actions (sb3-contrib's ``MaskablePPO`` convention)."""
        if self.action_encoding == "discrete":
            return self.actions.discrete_mask()
        return self.actions.multidiscrete_mask()

    # ------------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "length" in options:
            length = _check_int(
                "reset(options={'length': ...})",
                options["length"],
                0,
                max(MAX_LENGTH_LIMIT, self.max_length, *self.task.test_lengths),
            )
        else:
            length = self._draw_length()
        example_seed = int(self.np_random.integers(2**63 - 1))
        self.ws = self._workspace(length, example_seed)
        self._ws_recipe = (length, example_seed)
        self.state = self.ws.reset()
        self._begin_episode()
        score_many([self], self.state.cells, self._rows)
        self.potential = self._scored[0]
        return self._observation(), self._info()

    def _draw_length(self) -> int:
        """A training length, uniformly (the same draw as ``np_random.choice(lengths)``)."""
        return int(self.lengths[int(self.np_random.integers(len(self.lengths)))])

    def _begin_episode(self) -> None:
        """Fresh episode bookkeeping for ``self.ws`` (the caller scores the machines). The
        vector env does the same for many episodes at once
        (:meth:`AlgIndVectorEnv._begin_episodes
        <algind_gym.envs.vector.AlgIndVectorEnv._begin_episodes>` and
        :meth:`EpisodeColumns.begin <algind_gym.envs.columns.EpisodeColumns.begin>`)."""
        length = self.ws.length
        if length not in self._indexes:
            self._indexes[length] = EpisodeIndex.of(self.ws)
        self._index = self._indexes[length]
        self._want = self._index.expected(self.ws)
        self.history: list[tuple[str, tuple[int, ...]]] = []
        self._template = None
        self._calls = np.full((self.max_calls, 1 + self.actions.max_arity), -1.0, np.float32)
        self._written = np.zeros(self.actions.n_pointers, dtype=bool)
        self._skill_calls = np.zeros(len(self.actions.skills), dtype=np.float32)
        self.t = 0
        self._text: str | None = ""  # program_text(), extended per call (None: recompute)
        self.instructions = self.step_instructions = 0
        self.fault = Fault.NONE
        self.success = self.finished = False
        self._ended = (False, False)
        self.last_error: str | None = None

    def step(self, action):
        if self.ws is None:
            raise RuntimeError("call reset() before step()")
        if self.finished:
            gym.logger.warn(FINISHED_WARNING)
            return self._observation(), 0.0, self._ended[0], self._ended[1], self._info()
        if not self.action_space.contains(
            np.asarray(action) if self.action_encoding != "discrete" else action
        ):
            raise gym.error.InvalidAction(
                f"action {action!r} is not in the action space {self.action_space}"
            )
        plan = self._plan(action)
        steps, fault, error = 0, Fault.NONE, None
        if plan is not None:
            result = self.ws.execute(self.state, plan[0], plan[1], self.backend)
            steps, error = int(result.steps.sum()), result.error
            faults = result.faults[result.faults != Fault.NONE]
            fault = int(faults[0]) if faults.size else 0
            score_many([self], self.state.cells, self._rows)
        reward, terminated, truncated = self._finish(plan, steps, fault, error)
        return self._observation(), reward, terminated, truncated, self._info()

    def _plan(self, action) -> tuple[str, tuple[int, ...]] | None:
        """Decode ``action``; None when nothing should run (HALT or an invalid action)."""
        skill, binds = self.decode(action)
        self._pending = (skill, binds)
        if skill == HALT or not self.actions.is_valid(skill, binds):
            return None
        return skill, binds

    def _finish(
        self, plan, steps: int, fault: int, error: str | None, record: bool = True
    ) -> tuple[float, bool, bool]:
        """Book a step: ``steps`` instructions, the first ``fault`` of the K machines and the
        binding ``error`` of the call (if it ran; then it has been scored). ``record=False``:
        the caller writes the call into ``_calls``, ``_skill_calls`` and ``_written`` (the
        vector env does so for all its sub-environments at once)."""
        skill, binds = self._pending
        self.t += 1
        self.step_instructions = steps
        reward, terminated = 0.0, False
        if skill == HALT:
            terminated = True
            self.last_error = None
        elif plan is None:
            reward -= self.invalid_penalty
            self.last_error = f"invalid action: {skill} {list(binds)}"
        else:
            self.history.append((skill, binds))
            if self._text is not None:
                line = self._call_text(skill, binds)
                self._text = f"{self._text}\n{line}" if self._text else line
            if record:
                s = self._skill_pos[skill]
                self._calls[len(self.history) - 1, : 1 + len(binds)] = (s, *binds)
                self._skill_calls[s] += 1
                for j in self._writes[s]:
                    self._written[binds[j]] = True
            self.instructions += self.step_instructions
            reward -= self.call_cost
            if fault:
                self.fault = Fault(fault)
                self.last_error = error or f"fault {self.fault.name}"
                reward -= self.fault_penalty
                terminated = True
            else:
                potential, self.success = self._scored
                if self.reward_mode == "dense":
                    reward += potential - self.potential
                elif self.success:
                    reward += 1.0
                self.potential = potential
                terminated = self.success
        # as gymnasium's TimeLimit does: the call limit truncates even on the last call's success
        truncated = self.t >= self.max_calls
        self.finished, self._ended = terminated or truncated, (terminated, truncated)
        return float(reward), terminated, truncated

    # ----------------------------------------------------------- observation
    def _observation(self) -> dict[str, np.ndarray]:
        obs = self._obs.observe_many([self], self.state.cells)
        return {key: v[0] for key, v in obs.items()}

    def _info(self) -> dict[str, Any]:
        return {**self._info_values(), "action_mask": self.action_masks()}

    def _info_values(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "fault": None if self.fault == Fault.NONE else self.fault.name,
            "error": self.last_error,
            "program": self.program_text(),
            "calls": len(self.history),
            "instructions": self.instructions,
            "step_instructions": self.step_instructions,
            "length": self.ws.length,
            "potential": self.potential,
        }

    def program_text(self) -> str:
        """The calls made so far, one line each: ``skill(pointer names)``."""
        if self._text is None:
            self._text = "\n".join(self._call_text(s, b) for s, b in self.history)
        return self._text

    def _call_text(self, skill: str, binds: tuple[int, ...]) -> str:
        text = self._texts.get((skill, binds))  # (shared with the vector env's copies)
        if text is None:
            names = self.actions.pointer_names  # the same at every length
            text = f"{skill}({', '.join([names[p] for p in binds])})"
            if len(self._texts) < 100_000:
                self._texts[skill, binds] = text
        return text

    @property
    def program(self) -> list[tuple[str, list[str]]]:
        """The calls made so far as ``(skill, [pointer names])`` (what :func:`compile_task_program` takes)."""
        names = self.ws.pointer_names
        return [(s, [names[p] for p in b]) for s, b in self.history]

    # ----------------------------------------------------------- snapshots
    def _fresh_row(self) -> np.ndarray:
        """One machine of this episode's workspace as built (code installed), shared by
        every snapshot of the episode."""
        if self._template is None:
            self._template = self.ws.image.new_state(1, self.dtype).cells[0]
            self._template.flags.writeable = False
        return self._template

    def snapshot(self) -> dict[str, Any]:
        """Everything the rest of the episode depends on (for tree search).

        That is the K machines, the call count that truncation uses, the history, the
        flags and the RNG. Machines are stored as the columns in which any machine differs
        from the workspace's fresh machine (registers, pointer table, data, stack cells in
        use, skill slots that were written), so a snapshot costs about the data it must
        save: the code and the fresh machine are shared, not copied. Stepping the env
        afterwards never changes a snapshot, and one may be restored any number of times.
        """
        base = self._fresh_row()
        cells = self.state.cells
        cols = np.flatnonzero((cells != base).any(axis=0))
        return {
            "ws": self.ws,
            "ws_recipe": self._ws_recipe,
            "base": base,
            "cols": cols,
            "values": cells[:, cols],
            "t": self.t,
            "history": list(self.history),
            "instructions": self.instructions,
            "step_instructions": self.step_instructions,
            "fault": self.fault,
            "success": self.success,
            "ended": self._ended,
            "potential": self.potential,
            "last_error": self.last_error,
            "arrays": {k: getattr(self, k).copy() for k in _EPISODE_ARRAYS},
            "index": (self._index, self._want, self._scored),
            "rng": self.np_random.bit_generator.state,
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Return to a :meth:`snapshot`: same workspace, machines (bit for bit), call count,
        history and RNG. Writes the machines in place when the layout is unchanged."""
        self.ws, self._ws_recipe = snap["ws"], snap["ws_recipe"]
        base, layout = snap["base"], self.ws.image.layout
        if self.state is None or self.state.layout != layout:
            cells = np.repeat(base[None], self.n_examples, axis=0)
            cells[:, snap["cols"]] = snap["values"]
            self.state = MachineState(layout, cells)
        else:
            cells = self.state.cells
            cells[:] = base
            cells[:, snap["cols"]] = snap["values"]
        self._template = base
        self.t, self.history = snap["t"], list(snap["history"])
        self._text = None
        self.instructions, self.fault = snap["instructions"], snap["fault"]
        self.step_instructions = snap["step_instructions"]
        self.success, self.potential = snap["success"], snap["potential"]
        self._ended = snap["ended"]
        self.finished = any(self._ended)
        self.last_error = snap["last_error"]
        for k, v in snap["arrays"].items():
            mine = getattr(self, k, None)
            if k in _CALL_ARRAYS and mine is not None and mine.shape == v.shape:
                mine[...] = v  # in place: a vector env's sub-environment keeps its views
            else:
                setattr(self, k, v.copy())
        self._index, self._want, self._scored = snap["index"]
        self.np_random.bit_generator.state = snap["rng"]

    def state_key(self) -> bytes:
        """A hashable key of the data of the K machines: equal keys, equal data.

        The exact bytes of every buffer of the pointer table's memory (inputs, outputs,
        scratch, constants) of all K machines, then their fault codes. Registers,
        instruction counters, stack leftovers and the call count are left out, so two
        programs that leave the same data give the same key (e.g. for a transposition
        table in tree search). Different episodes' examples differ, so their keys do.
        """
        mem = self.ws.image.layout.block("memory")
        end = max((a + b.size for a, b in self.ws.image.buffers.values()), default=mem.start)
        data = np.ascontiguousarray(self.state.cells[:, mem.start : end])
        return data.tobytes() + self.state.faults.tobytes()

    # ------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        """Constructor arguments plus the episode; tasks are stored by name (their generators
        may be lambdas) and the workspace is rebuilt from its length and seed."""
        init = dict(self._init_args)
        if isinstance(init["task"], TaskSpec):
            init["task"] = init["task"].name
        snap = None
        if self.ws is not None:
            snap = self.snapshot()
            snap.pop("ws")
            snap.pop("base")
        rng = self._np_random.bit_generator.state if self._np_random is not None else None
        return {"init": init, "snapshot": snap, "rng": rng}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__init__(**data["init"])
        if data["rng"] is not None:
            self._np_random, _ = seeding.np_random(0)
            self._np_random.bit_generator.state = data["rng"]
        if data["snapshot"] is not None:
            snap = dict(data["snapshot"])
            snap["ws"] = self._workspace(*snap["ws_recipe"])
            self.ws = snap["ws"]
            self._template = None
            snap["base"] = self._fresh_row()
            self.restore(snap)

    # ------------------------------------------------------------- rendering
    def render(self):
        if self.render_mode is None:
            gym.logger.warn(
                "render() called without a render_mode; pass render_mode='ansi' or 'rgb_array'"
            )
            return None
        if self.ws is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "rgb_array":
            return state_to_rgb(self.ws.image.layout, self.state.cells[0])
        return self._render_ansi()

    def _render_ansi(self) -> str:
        lay, cells = self.ws.image.layout, self.state.cells[0]
        outs = self.ws.outputs(self.state)
        lines = [
            f"{self.task.env_id}  length={self.ws.length}  call {self.t}/{self.max_calls}  "
            f"potential={self.potential:.3f}  success={self.success}",
            "registers (machine 0): " + describe_registers(lay, cells),
            "pointer table:",
            *describe_pointer_table(lay, cells, self.ws.pointer_names),
            "outputs vs expected (machine 0):",
        ]
        for name in self.task.outputs:
            got = np.asarray(outs[name][0]).ravel()[:12]
            want = np.asarray(self.ws.expected[0][name]).ravel()[:12]
            lines.append(f"  {name}: got {np.array2string(got, precision=3)}")
            lines.append(f"  {' ' * len(name)}  want {np.array2string(want, precision=3)}")
        lines.append("program so far:")
        lines += [f"  {ln}" for ln in self.program_text().splitlines()] or ["  (empty)"]
        if self.last_error:
            lines.append(f"last error: {self.last_error}")
        return "\n".join(lines) + "\n"


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


_CALL_ARRAYS = ("_calls", "_written", "_skill_calls")
"""Per-episode arrays written per call (in a vector env, views of its arrays)."""
_EPISODE_ARRAYS = (*_CALL_ARRAYS, "_out_fraction")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, else a ValueError naming ``name`` and the range."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be >= {low} and <= {high}, got {value}")
    return int(value)


def _check_backend(backend: Any) -> None:
    if not isinstance(backend, str):
        if not callable(getattr(backend, "run", None)):
            raise ValueError(f"backend must be a name or an object with .run, got {backend!r}")
        return
    if backend != "reference":
        from algind_gym.cpu.backend import BACKENDS, OPT_IN_BACKENDS

        _check_choice("backend", backend, BACKENDS + OPT_IN_BACKENDS)
