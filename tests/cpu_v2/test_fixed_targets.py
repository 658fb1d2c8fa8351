"""``sparse.fixed_targets`` (the code generator's decode of many query streams at once) gives
``sparse.fixed_target``'s cell for every row, in both dtypes."""

from __future__ import annotations

import numpy as np

from algind_gym.cpu.fuzz import fuzz_layout
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.sparse import NEVER, fixed_target, fixed_targets, sparse_layers


def test_fixed_targets_decode_every_row_as_fixed_target(dtype):
    c = compile_circuit(fuzz_layout(), dtype)
    n, k = c.meta["n_cells"], c.meta["n_bits"]
    rng = np.random.default_rng(0)
    heads = [h for layer in sparse_layers(c, dtype) for h in layer.read + layer.write]
    assert heads
    width = max(ch for h in heads for ch, _, _ in h.q) + 1
    xs = rng.choice([0.0, 1.0, -1.0, 0.5, 3.0, -7.0, 1e30, -0.0], size=(300, width))
    xs[:40] = rng.integers(0, n + 4, size=(40, width))  # addresses, some past the last cell
    xs = xs.astype(dtype)
    hit = 0
    for h in heads:
        got = fixed_targets(h, xs, n, k, dtype)
        want = [fixed_target(h, x, n, k, dtype) for x in xs]
        assert got.tolist() == want, h.name
        hit += sum(t != NEVER for t in want)
    assert hit > 0  # some rows select a cell
