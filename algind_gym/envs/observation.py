"""Observation spaces of :class:`~algind_gym.envs.SkillCompositionEnv` (documented there).

Both views have a fixed size that does not depend on the instance length: ``"state"``
shows a fixed window of memory, ``"compact"`` a fixed window of every data entry. Values
are float32, clipped to float32's finite range. Every entry is a flat vector (what
Stable-Baselines3's ``MultiInputPolicy`` expects); :attr:`ObservationBuilder.shapes` gives
the shape to reshape each one to, e.g. ``obs["cells"].reshape(K, -1)``.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from algind_gym.envs.actions import HALT, ActionTable
from algind_gym.machine.layout import DESCRIPTOR_WIDTH
from algind_gym.machine.state import MachineState
from algind_gym.tasks.workspace import Workspace

_F32 = np.finfo(np.float32).max


def _box(shape: tuple[int, ...], low: float = -_F32, high: float = _F32) -> spaces.Box:
    return spaces.Box(low=low, high=high, shape=(int(np.prod(shape)),), dtype=np.float32)


class ObservationBuilder:
    """Builds the observation space once and fills observations from machine states."""

    def __init__(
        self,
        probe: Workspace,
        actions: ActionTable,
        *,
        max_calls: int,
        mode: str,
        memory_window: int | None,
        data_window: int,
    ) -> None:
        lay = probe.image.layout
        self.actions, self.mode, self.max_calls = actions, mode, max_calls
        self.n_registers = len(lay.register_names)
        self.n_pointers = lay.n_pointers
        self.memory_window = lay.memory_size if memory_window is None else int(memory_window)
        self.data_window = int(data_window)
        self.data_entries = [
            i
            for i, p in enumerate(probe.image.pointers)
            if p.type in ("scalar", "vector", "matrix")
        ]
        k = probe.batch
        calls = _box(
            (max_calls, 1 + actions.max_arity),
            -1.0,
            float(max(actions.n_pointers, len(actions.skills) + 1)),
        )
        types = _box((self.n_pointers,), 0.0, 4.0)
        self.shapes: dict[str, tuple[int, ...]] = {
            "pointer_types": (self.n_pointers,),
            "calls": (max_calls, 1 + actions.max_arity),
        }
        if mode == "state":
            width = self.n_registers + DESCRIPTOR_WIDTH * self.n_pointers + self.memory_window
            self.shapes["cells"] = (k, width)
        else:
            self.shapes["registers"] = (k, self.n_registers)
            self.shapes["pointers"] = (self.n_pointers, DESCRIPTOR_WIDTH)
            self.shapes["data"] = (k, self.n_pointers, self.data_window)
        bounded = {"pointer_types": types, "calls": calls}
        self.space = spaces.Dict(
            {key: bounded.get(key) or _box(shp) for key, shp in self.shapes.items()}
        )

    def _calls(self, history: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
        out = np.full((self.max_calls, 1 + self.actions.max_arity), -1.0, dtype=np.float32)
        for i, (skill, binds) in enumerate(history[-self.max_calls :]):
            out[i, 0] = (
                len(self.actions.skills) if skill == HALT else self.actions.skills.index(skill)
            )
            out[i, 1 : 1 + len(binds)] = binds
        return out

    def observe(self, state: MachineState, ws: Workspace, history) -> dict[str, np.ndarray]:
        lay = state.layout
        cells = state.cells
        ptr = lay.block("pointers")
        table = cells[0, ptr.start : ptr.end].reshape(self.n_pointers, DESCRIPTOR_WIDTH)
        out = {"pointer_types": table[:, 3].astype(np.float32), "calls": self._calls(history)}
        if self.mode == "state":
            mem = lay.block("memory")
            window = np.zeros((state.batch, self.memory_window))
            n = min(self.memory_window, mem.size)
            window[:, :n] = cells[:, mem.start : mem.start + n]
            parts = [cells[:, : self.n_registers], cells[:, ptr.start : ptr.end], window]
            out["cells"] = np.clip(np.concatenate(parts, axis=1), -_F32, _F32).astype(np.float32)
        else:
            data = np.zeros((state.batch, self.n_pointers, self.data_window))
            for i in self.data_entries:
                addr, rows, cols, _ = table[i]
                n = min(int(rows * cols), self.data_window)
                data[:, i, :n] = cells[:, int(addr) : int(addr) + n]
            out["registers"] = np.clip(cells[:, : self.n_registers], -_F32, _F32).astype(np.float32)
            out["pointers"] = table.astype(np.float32)
            out["data"] = np.clip(data, -_F32, _F32).astype(np.float32)
        return {key: v.reshape(-1) for key, v in out.items()}
