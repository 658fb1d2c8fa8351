"""The v1 kernel's prefetching variant changes no value (:mod:`algind_gym.cpu.kernel`).

``fused_range_prefetch`` is the same kernel as ``fused_range`` plus prefetch hints for the
next machine's lines; the drivers take it for calls on large rows out of cache
(``_prefetch_pays``). The other kernel tests run on small rows, so these run the
prefetching variant directly and through the driver on large rows, against the plain
variant and the reference interpreter, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from algind_gym.cpu import kernel as kernel_module
from algind_gym.cpu.fuzz import fuzz_layout, random_machines
from algind_gym.cpu.model import TransformerCPU
from algind_gym.machine import interpreter
from algind_gym.machine.layout import Layout, SkillBlockSpec
from tests.cpu.conftest import assert_same, bits

pytestmark = pytest.mark.skipif(not kernel_module.AVAILABLE, reason="needs numba")

BIG = Layout(  # rows of >= 4096 bytes in float32 (and float64)
    n_general=8,
    stack_size=12,
    n_pointers=4,
    memory_size=1100,
    skill_blocks=(SkillBlockSpec("main", 2, 96), SkillBlockSpec("sub", 1, 48)),
)


def _unrecorded(batch: int) -> np.ndarray:
    w = np.empty((batch, 4), np.int64)
    w[:, 0::2], w[:, 1::2] = 10**9, -1
    return w


@pytest.mark.parametrize(("start", "stride"), [(0, 1), (1, 3)])
def test_prefetch_variant_equals_plain_variant(dtype, start, stride):
    cpu = TransformerCPU(fuzz_layout(), dtype, kernel="numba")
    tables, split = cpu._kernel_tables(), cpu._split
    for seed in range(3):
        state = random_machines(48, seed, dtype, garbage=0.2)
        a, b = state.cells.copy(), state.cells.copy()
        wa, wb = _unrecorded(48), _unrecorded(48)
        stop = a.shape[0]
        ea = kernel_module.fused_range(a, start, stop, stride, 40, *tables, wa, split)
        eb = kernel_module.fused_range_prefetch(b, start, stop, stride, 40, *tables, wb, split)
        assert ea == eb == 0
        assert np.array_equal(bits(a), bits(b)), f"seed {seed}"
        assert np.array_equal(wa, wb), f"seed {seed}"
        untouched = np.ones(48, bool)
        untouched[start:stop:stride] = False
        assert np.array_equal(bits(a[untouched]), bits(state.cells[untouched]))
        assert not np.array_equal(bits(a), bits(state.cells))  # the machines ran


def test_prefetch_pays_only_on_large_rows_out_of_cache(dtype):
    small = random_machines(4096, 0, dtype).cells
    assert not kernel_module._prefetch_pays(small, 0, small.shape[0], 1)  # rows < 4 KiB
    big = np.zeros((256, BIG.n_cells), dtype)
    assert big.shape[1] * big.itemsize >= kernel_module.PREFETCH_ROW_BYTES
    assert kernel_module._prefetch_pays(big, 0, 256, 1)
    assert not kernel_module._prefetch_pays(big[:8], 0, 8, 1)  # 8 rows stay in cache


def test_driver_on_large_rows_matches_reference(dtype):
    """256 machines on rows over 4 KiB: the serial driver takes the prefetching variant."""
    state = random_machines(256, 5, dtype, garbage=0.1, layout=BIG)
    assert kernel_module._prefetch_pays(state.cells, 0, 256, 1)
    cpu = TransformerCPU(BIG, dtype, kernel="numba")
    got = state.copy()
    cpu.run_array(got.cells, 30)
    ref = state.copy()
    for _ in range(30):
        interpreter.step(ref)
    assert_same(ref, got, "prefetching driver")
