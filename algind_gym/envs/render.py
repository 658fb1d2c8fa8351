"""Pictures and text of a machine state, for ``render_mode="rgb_array"`` and ``"ansi"``.

The picture lays the cells of one machine out row by row (``width`` cells a row), one
``scale`` x ``scale`` square per cell. Each top-level block has its own hue; a cell's
brightness grows with ``|value|`` (log-scaled so both 1e-3 and 1e3 are visible) and
negative values are drawn in the complementary hue. Block boundaries are white bars, so
a viewer sees registers, stack, pointer table, memory and code at a glance.
"""

from __future__ import annotations

import numpy as np

from algind_gym.machine.isa import Fault
from algind_gym.machine.layout import DESCRIPTOR_WIDTH, DataType, Layout

# one RGB hue per top-level block, in layout order
BLOCK_COLOURS = np.array(
    [
        [230, 80, 80],  # registers
        [240, 170, 60],  # stack
        [90, 200, 120],  # pointer table
        [80, 140, 240],  # memory
        [170, 110, 220],  # code
    ],
    dtype=np.float64,
)


def state_to_rgb(
    layout: Layout, cells: np.ndarray, *, width: int = 64, scale: int = 4
) -> np.ndarray:
    """Render one machine's cells (shape ``(n_cells,)``) as a ``uint8`` ``(H, W, 3)`` image.

    Example:
        >>> from algind_gym.machine.state import MachineState
        >>> s = MachineState.zeros(Layout(), batch=1)
        >>> img = state_to_rgb(s.layout, s.cells[0])
        >>> img.dtype, img.shape[2]
        (dtype('uint8'), 3)
    """
    if cells.shape != (layout.n_cells,):
        raise ValueError(
            f"expected one machine's cells of shape ({layout.n_cells},), got {cells.shape}"
        )
    v = np.asarray(cells, dtype=np.float64)
    magnitude = np.clip(np.log10(1.0 + np.abs(v)) / 3.0, 0.0, 1.0)  # 0 .. ~1000 -> 0 .. 1
    base = BLOCK_COLOURS[layout.block_ids]
    colour = np.where((v < 0)[:, None], 255.0 - base, base)
    dim = 0.15 + 0.85 * magnitude[:, None]
    rgb = colour * dim
    rgb[v == 0] = 20.0  # empty cells are near black

    rows = -(-layout.n_cells // width)
    grid = np.zeros((rows * width, 3))
    grid[: layout.n_cells] = rgb
    img = grid.reshape(rows, width, 3)
    img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    # white bar at the first cell of every block (a block boundary)
    for block in layout.blocks.values():
        r, c = divmod(block.start, width)
        img[r * scale : (r + 1) * scale, c * scale : c * scale + max(1, scale // 4)] = 255.0
    return img.astype(np.uint8)


def describe_pointer_table(
    layout: Layout, cells: np.ndarray, names: list[str] | None = None
) -> list[str]:
    """One line per non-empty pointer-table entry: index, name, type, shape, address."""
    lines = []
    for i in range(layout.n_pointers):
        a = layout.pointer(i)
        addr, rows, cols, typ = cells[a : a + DESCRIPTOR_WIDTH]
        if typ == DataType.EMPTY:
            continue
        name = names[i] if names and i < len(names) else ""
        kind = DataType(int(typ)).name.lower()
        lines.append(f"  p{i:<2} {name:<10} {kind:<7} {int(rows)}x{int(cols)} @ {int(addr)}")
    return lines


def describe_registers(layout: Layout, cells: np.ndarray) -> str:
    parts = []
    for i, name in enumerate(layout.register_names):
        v = cells[i]
        if name == "fault":
            parts.append(f"fault={Fault(int(v)).name}")
        else:
            parts.append(f"{name}={v:g}")
    return " ".join(parts)
