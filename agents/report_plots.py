"""The curriculum report's pictures, drawn with matplotlib from ``results.json`` alone.

* :func:`plot_hierarchy`: the learned skill hierarchy (the paper's figure 2b): one row per
  generation, the built-in skills the learned programs use at the bottom, an arrow from each
  learned skill to every skill its program calls or passes (``&skill``), red where the
  skill used was itself learned.
* :func:`plot_progress`: tasks solved against actions evaluated (cumulative, in attempt
  order), generation boundaries dashed.
* :func:`plot_accuracy`: accuracy on fresh inputs against length for every solved task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from algind_gym.atomic import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig, path: Path) -> Path:
    """Save as PNG atomically (:func:`algind_gym.atomic.atomic_write`)."""
    try:
        return atomic_write(
            path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        )
    finally:
        plt.close(fig)


def program_dependencies(program: list[dict[str, Any]]) -> list[str]:
    """Skill keys a program calls or passes by pointer, in first-use order."""
    out: dict[str, None] = {}
    for step in program:
        out[step["skill"]] = None
        for b in step["bindings"]:
            if isinstance(b, str) and b.startswith("&"):
                out[b[1:]] = None
    return list(out)


def _name(key: str) -> str:
    return key.split("@")[0]


def plot_hierarchy(state: dict[str, Any], path: Path) -> Path:
    """Learned skills by generation with arrows to the skills their programs use."""
    learned: list[tuple[int, str, list[str]]] = []
    for g in state["generations"]:
        for a in g["attempts"]:
            if a["skill"]:
                deps = [_name(k) for k in program_dependencies(a["result"]["program"])]
                learned.append((g["generation"], _name(a["skill"]), deps))
    names = {n for _, n, _ in learned}
    base: dict[str, None] = {}
    for _, _, deps in learned:
        for d in deps:
            if d not in names:
                base[d] = None
    rows: dict[int, list[str]] = {0: list(base)}
    for gen, name, _ in learned:
        rows.setdefault(gen, []).append(name)
    pos: dict[str, tuple[float, float]] = {}
    width = max((len(v) for v in rows.values()), default=1)

    def place(y: int, members: list[str]) -> None:
        for i, n in enumerate(members):
            pos[n] = ((i + 0.5) * width / max(len(members), 1), float(y))

    for y, members in rows.items():
        place(y, members)
    # built-in skills under the skills that use them (mean x of their users): fewer crossings
    users: dict[str, list[float]] = {b: [] for b in base}
    for _, name, deps in learned:
        for d in deps:
            if d in users:
                users[d].append(pos[name][0])
    rows[0].sort(key=lambda b: sum(users[b]) / len(users[b]))
    place(0, rows[0])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * width), 1.6 * max(len(rows), 1) + 1))
    for _, name, deps in learned:
        for d in deps:
            (x0, y0), (x1, y1) = pos[name], pos[d]
            learned_dep = d in names  # the hierarchy proper: a learned skill reused
            ax.annotate(
                "",
                xy=(x1, y1 + 0.12),
                xytext=(x0, y0 - 0.12),
                arrowprops={
                    "arrowstyle": "->",
                    "color": "C3" if learned_dep else "0.7",
                    "lw": 1.4 if learned_dep else 0.7,
                },
                zorder=2 if learned_dep else 1,
            )
    for n, (x, y) in pos.items():
        colour = "#dde8f5" if y == 0 else "#f5e3c8"
        ax.text(
            x,
            y,
            n,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.3", "fc": colour, "ec": "0.4"},
        )
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.6, max(rows) + 0.6)
    ax.set_yticks(sorted(rows))
    ax.set_yticklabels(["built-in" if y == 0 else f"generation {y}" for y in sorted(rows)])
    ax.set_xticks([])
    for s in ("top", "right", "bottom"):
        ax.spines[s].set_visible(False)
    ax.set_title("Learned skill hierarchy (arrow: calls or passes; red: a learned skill reused)")
    return _save(fig, path)


def plot_progress(state: dict[str, Any], path: Path) -> Path:
    """Cumulative tasks solved against cumulative actions evaluated."""
    xs, ys, bounds = [0], [0], []
    actions = solved = 0
    for g in state["generations"]:
        bounds.append(actions)
        for a in g["attempts"]:
            actions += a["result"]["actions_evaluated"]
            solved += bool(a["skill"])
            xs.append(actions)
            ys.append(solved)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.step(xs, ys, where="post", color="C0", label="hierarchical (growing library)")
    for i, b in enumerate(bounds):
        ax.axvline(b, color="0.7", ls="--", lw=0.8)
        ax.text(b, max(ys) + 0.3, f"g{i + 1}", fontsize=7, color="0.4")
    ax.set_xlabel("actions evaluated (cumulative)")
    ax.set_ylabel("tasks solved")
    ax.set_ylim(0, max(ys) + 1)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Tasks solved against actions evaluated")
    return _save(fig, path)


def plot_accuracy(state: dict[str, Any], path: Path) -> Path:
    """Accuracy on fresh inputs against length, one line per solved task."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for g in state["generations"]:
        for a in g["attempts"]:
            r = a["result"]
            if not a["skill"]:
                continue
            lengths = sorted(r["generalisation"], key=int)
            ax.plot(
                [int(n) for n in lengths],
                [r["generalisation"][n] for n in lengths],
                marker="o",
                ms=3,
                lw=1,
                label=r["task"],
            )
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("length (training lengths, test lengths, 8x the longest training length)")
    ax.set_ylabel("accuracy on fresh inputs")
    ax.set_title("Accuracy against length of the learned programs")
    if ax.lines:
        ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)
