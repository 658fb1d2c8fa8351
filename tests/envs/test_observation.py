"""The ``"state"`` and ``"compact"`` observations against their definition, cell by cell."""

import numpy as np
import pytest

from algind_gym.envs import SkillCompositionEnv

F32 = np.finfo(np.float32).max


def _f32(v):
    with np.errstate(over="ignore"):
        return np.clip(np.asarray(v, dtype=np.float64).astype(np.float32), -F32, F32)


@pytest.mark.parametrize("mode", ["state", "compact"])
def test_observation_converts_every_cell_as_defined(mode):
    """Registers, pointer table and memory window of each machine (``"state"``), the type
    fields of machine 0's pointer table: float32 clamped to its finite range, NaN kept,
    also for values beyond float32 and infinities; zeros past the memory block."""
    env = SkillCompositionEnv(
        "DotProduct", backend="reference", n_examples=3, memory_window=64, observation_mode=mode
    )
    env.reset(seed=0)
    lay = env.state.layout
    rng = np.random.default_rng(0)
    n = 4
    cells = rng.normal(size=(n * 3, lay.n_cells)) * 10.0 ** rng.integers(
        -60, 60, (n * 3, lay.n_cells)
    )
    cells[0, :40] = np.nan
    cells[1, :40] = np.inf
    cells[2, :1400] = -np.inf
    cells[3, :1400] = np.nextafter(np.float64(F32), np.inf)  # rounds to F32, not to inf
    envs = [env] * n
    obs = env._obs.observe_many(envs, cells, np.full(n, env.ws.length))
    ptr, mem = lay.block("pointers"), lay.block("memory")
    types = _f32(cells.reshape(n, 3, -1)[:, 0, ptr.start + 3 : ptr.end : 4])
    np.testing.assert_array_equal(obs["pointer_types"], types)
    assert obs["pointer_types"].flags.c_contiguous
    if mode == "state":
        regs = len(lay.register_names)
        want = np.zeros((n * 3, regs + ptr.end - ptr.start + 64), dtype=np.float32)
        want[:, :regs] = _f32(cells[:, :regs])
        want[:, regs : regs + mem.end - ptr.start] = _f32(cells[:, ptr.start : mem.end])
        got = obs["cells"].reshape(n * 3, -1)
        assert got.tobytes() == want.tobytes()  # bit for bit (NaN and -0.0 included)
        assert mem.size < 64  # (the window reaches past the memory block: zeros there)
