"""Observation spaces of :class:`~algind_gym.envs.SkillCompositionEnv` (documented there).

Every view has a fixed size that does not depend on the instance length: ``"state"``
shows a fixed window of memory, ``"compact"`` a fixed window of every data entry, and
``"tables"`` (:mod:`algind_gym.envs.tables`) fixed-size tables that do not depend on the
task either. Values are float32, clipped to float32's finite range. In ``"state"`` and
``"compact"`` every entry is a flat vector (what Stable-Baselines3's ``MultiInputPolicy``
expects); :attr:`ObservationBuilder.shapes` gives the shape to reshape each one to, e.g.
``obs["cells"].reshape(K, -1)``. ``"tables"`` entries keep their shapes.

:meth:`ObservationBuilder.observe_many` fills the observations of many episodes at once
(array operations per episode length, :mod:`algind_gym.envs.batch`); a single env is a
batch of one, so single and vector envs observe the same values.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from algind_gym.envs.actions import ActionTable
from algind_gym.envs.batch import data_summary, groups
from algind_gym.envs.tables import TableSpec, symlog
from algind_gym.machine.layout import DESCRIPTOR_WIDTH
from algind_gym.tasks.workspace import Workspace

_F32 = np.finfo(np.float32).max


def _box(shape: tuple[int, ...], low: float = -_F32, high: float = _F32) -> spaces.Box:
    return spaces.Box(low=low, high=high, shape=(int(np.prod(shape)),), dtype=np.float32)


def _f32(v: np.ndarray) -> np.ndarray:
    """``v`` as float32, clipped to float32's finite range (cast first: the cast rounds a
    value beyond the range to +-inf or to the bound, and the clip maps both to the bound)."""
    with np.errstate(over="ignore"):
        out = np.asarray(v).astype(np.float32)
    return np.clip(out, -_F32, _F32, out=out)


def _stacked(envs, stacked: dict[str, np.ndarray] | None, key: str) -> np.ndarray:
    """The envs' per-episode array ``key`` stacked: the caller's, else from the envs."""
    if stacked is not None:
        return stacked[key]
    return np.stack([getattr(e, f"_{key}") for e in envs])


class ObservationBuilder:
    """Builds the observation space once and fills observations from machine rows."""

    def __init__(
        self,
        probe: Workspace,
        actions: ActionTable,
        *,
        max_calls: int,
        mode: str,
        memory_window: int | None,
        data_window: int,
        tables: TableSpec | None = None,
    ) -> None:
        lay = probe.image.layout
        self.actions, self.mode, self.max_calls, self.k = actions, mode, max_calls, probe.batch
        self.n_registers = len(lay.register_names)
        self.n_pointers = lay.n_pointers
        self.memory_window = lay.memory_size if memory_window is None else int(memory_window)
        self.data_window = int(data_window)
        self.tables = tables
        ptr, mem = lay.block("pointers"), lay.block("memory")
        self._types = slice(ptr.start + 3, ptr.end, DESCRIPTOR_WIDTH)
        # the same cells in a "state" observation's row (registers first, then the table)
        regs = self.n_registers
        self._types_in_state = slice(regs + 3, regs + ptr.end - ptr.start, DESCRIPTOR_WIDTH)
        self._pointer_block = slice(ptr.start, ptr.end)
        # pointer table and memory are adjacent blocks: one slice holds both
        self._ptr_mem = slice(ptr.start, mem.start + min(self.memory_window, mem.size))
        self._compact_index: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if mode == "tables":
            self.space = spaces.Dict(tables.spaces())
            self.shapes = {k: s.shape for k, s in self.space.spaces.items()}
            return
        self.shapes: dict[str, tuple[int, ...]] = {
            "pointer_types": (self.n_pointers,),
            "calls": (max_calls, 1 + actions.max_arity),
        }
        if mode == "state":
            width = self.n_registers + DESCRIPTOR_WIDTH * self.n_pointers + self.memory_window
            self.shapes["cells"] = (self.k, width)
        else:
            self.shapes["registers"] = (self.k, self.n_registers)
            self.shapes["pointers"] = (self.n_pointers, DESCRIPTOR_WIDTH)
            self.shapes["data"] = (self.k, self.n_pointers, self.data_window)
        calls = _box(
            self.shapes["calls"], -1.0, float(max(actions.n_pointers, len(actions.skills) + 1))
        )
        bounded = {"pointer_types": _box((self.n_pointers,), 0.0, 4.0), "calls": calls}
        self.space = spaces.Dict(
            {key: bounded.get(key) or _box(shp) for key, shp in self.shapes.items()}
        )

    # ----------------------------------------------------------------- batch
    def observe_many(
        self,
        envs,
        cells: np.ndarray,
        lengths: np.ndarray | None = None,
        stacked: dict[str, np.ndarray] | None = None,
        pointer_tables: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Observations of ``envs``, whose machines are the rows of ``cells`` in order
        (env ``i`` has rows ``i*K .. (i+1)*K``); each key gets a leading axis of
        ``len(envs)``. A caller that keeps them in arrays passes the envs' episode
        ``lengths`` and ``stacked`` per-episode arrays (``"calls"``, ``"written"``,
        ``"skill_calls"``: the envs' ``_calls``, ``_written``, ``_skill_calls`` stacked;
        optionally ``"out_fraction"`` (padded, :class:`EpisodeColumns
        <algind_gym.envs.columns.EpisodeColumns>`), ``"t"`` and ``"potential"``; read, not
        kept). ``pointer_tables``: for ``"state"``, a caller that knows the machines'
        pointer tables passes ``(values, stale)``: per env the pointer table that its
        machines hold (``(n, DESCRIPTOR_WIDTH * n_pointers)``, already float32 as
        :func:`_f32` converts it) and ``(n, K)`` bool, the machines whose table may differ
        from it (read from ``cells``); the other machines' tables are not read."""
        n = len(envs)
        rows = np.arange(n * self.k).reshape(n, self.k)
        if self.mode == "tables":
            return self._tables(envs, cells, rows, lengths, stacked)
        cells3 = cells.reshape(n, self.k, -1)
        out = {"calls": _stacked(envs, stacked, "calls").copy()}
        if self.mode == "state":
            regs = self.n_registers
            cells_obs = np.empty((n, self.k, self.shapes["cells"][1]), dtype=np.float32)
            got = cells3[:, :, self._ptr_mem]
            end = regs + self._ptr_mem.stop - self._ptr_mem.start
            with np.errstate(over="ignore"):  # cast in place, then clip as _f32 does
                cells_obs[:, :, :regs] = cells3[:, :, :regs]
                if pointer_tables is None:
                    cells_obs[:, :, regs:end] = got
                else:  # (the tables are most of a machine's cells here: not read)
                    values, stale = pointer_tables
                    p = self._pointer_block
                    at = regs + p.stop - p.start
                    cells_obs[:, :, regs:at] = values[:, None, :]
                    cells_obs[:, :, at:end] = cells3[:, :, p.stop : self._ptr_mem.stop]
                    if stale.any():
                        i, j = np.nonzero(stale)
                        cells_obs[i, j, regs:at] = cells3[i, j, p]
            cells_obs[:, :, end:] = 0.0
            out["cells"] = np.clip(cells_obs, -_F32, _F32, out=cells_obs)
            # the type fields of machine 0's pointer table, already converted above (the
            # machines' rows are read once)
            types = np.ascontiguousarray(cells_obs[:, 0, self._types_in_state])
            out = {"pointer_types": types, **out}  # (the keys in the space's order)
        else:
            out = {"pointer_types": _f32(cells3[:, 0, self._types]), **out}
            out["registers"] = _f32(cells3[:, :, : self.n_registers])
            out["pointers"] = _f32(cells3[:, 0, self._pointer_block])
            data = np.zeros((n, self.k, self.n_pointers, self.data_window), dtype=np.float32)
            for length, group in groups(envs, lengths).items():
                idx, ok = self._compact_cols(envs[group[0]].ws, length)
                got = cells[rows[group][:, :, None, None], idx[None, None]]
                data[group] = np.where(ok, _f32(got), np.float32(0))
            out["data"] = data
        return {key: v.reshape(n, -1) for key, v in out.items()}

    def _compact_cols(self, ws: Workspace, length: int) -> tuple[np.ndarray, np.ndarray]:
        if length not in self._compact_index:
            idx = np.zeros((self.n_pointers, self.data_window), dtype=np.int64)
            ok = np.zeros_like(idx, dtype=bool)
            for p, entry in enumerate(ws.image.pointers):
                if entry.name in ws.image.buffers:
                    addr, buf = ws.image.buffers[entry.name]
                    m = min(buf.size, self.data_window)
                    idx[p, :m], ok[p, :m] = np.arange(addr, addr + m), True
            self._compact_index[length] = (idx, ok)
        return self._compact_index[length]

    def _tables(self, envs, cells: np.ndarray, rows: np.ndarray, lengths, stacked):
        t = self.tables
        n, n_p, n_s = len(envs), t.n_pointers, t.n_skills
        pointers = np.repeat(t.pointers[None], n, axis=0)
        for group in groups(envs, lengths).values():
            index = envs[group[0]]._index
            pointers[group, :n_p, 10:12] = index.shape_features
            summary = data_summary(cells, rows[group], index)
            pointers[np.ix_(group, index.data_p, [13, 14, 15])] = _f32(symlog(summary))
            if stacked is not None and "out_fraction" in stacked:
                out_frac = stacked["out_fraction"][group, : index.out_p.size]
            else:
                out_frac = np.stack([envs[i]._out_fraction for i in group])
            pointers[np.ix_(group, index.out_p, [16])] = out_frac[:, :, None]
        pointers[:, :n_p, 17] = _stacked(envs, stacked, "written")
        skills = np.repeat(t.skills[None], n, axis=0)
        skills[:, :n_s, 7] = _stacked(envs, stacked, "skill_calls")
        if stacked is not None and "t" in stacked and lengths is not None:
            calls, potential = stacked["t"], stacked["potential"]
            glob = np.stack(
                [calls, self.max_calls - calls, potential, np.log2(1.0 + lengths)], axis=1
            ).astype(np.float32)
        else:
            glob = np.array(
                [[e.t, e.max_calls - e.t, e.potential, np.log2(1.0 + e.ws.length)] for e in envs],
                dtype=np.float32,
            )
        return {
            "pointers": pointers,
            "skills": skills,
            "skill_mask": np.repeat(t.skill_mask[None], n, axis=0),
            "slot_class": np.repeat(t.slot_class[None], n, axis=0),
            "class_mask": np.repeat(t.class_mask[None], n, axis=0),
            "globals": glob,
        }
