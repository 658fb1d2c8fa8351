"""Inspecting a gradient composer run: TensorBoard, a progress bar, a plot of alpha.

Per iteration the :class:`Monitor` records the loss, the temperature, the entropy of every
step's alpha and the current argmax program. With an output folder it writes them to
TensorBoard (``OUT/tb``, ``torch.utils.tensorboard``) and, when the run ends, a plot of each
step's alpha over iterations (``OUT/alpha.png``, matplotlib; written to a temporary file in
the same folder and renamed, so an existing plot is never left half-written). With
``progress`` a rich progress bar shows the iteration, loss, entropy and program, and the
end prints iterations/s and the share of the time spent inside the CPU (forward runs and
the backward pass through them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from algind_gym.atomic import atomic_write

TOP = 6
"""Ops per step drawn in the alpha plot (those with the highest peak weight) besides skip."""


class Monitor:
    """Collects per-iteration figures; see the module docstring.

    Args:
        out: output folder, or None (nothing written).
        labels: per step, the alpha entries' labels (``skip`` first).
        progress: show a progress bar on stderr.
    """

    def __init__(self, out: str | os.PathLike | None, labels: list[list[str]], progress: bool):
        self.out = Path(out) if out is not None else None
        self.labels = labels
        self.history: list[list[np.ndarray]] = []
        self.losses: list[float] = []
        self.writer = None
        if self.out is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.out.mkdir(parents=True, exist_ok=True)
            self.writer = SummaryWriter(log_dir=str(self.out / "tb"))
        self.console = Console(stderr=True)
        self.bar: Progress | None = None
        if progress:
            self.bar = Progress(
                TextColumn("[bold]gradient[/] it {task.completed}"),
                BarColumn(),
                TextColumn(
                    "loss {task.fields[loss]:.3g} H {task.fields[h]:.2f} {task.fields[prog]}"
                ),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self._task = self.bar.add_task("train", total=None, loss=float("nan"), h=0.0, prog="")

    def relabel(self, labels: list[list[str]]) -> None:
        """Start the alpha history afresh for a program of another length (the plot shows
        the last length trained; TensorBoard keeps every iteration)."""
        self.labels = labels
        self.history = []

    def log(
        self,
        iteration: int,
        loss: float,
        tau: float,
        alphas: list[np.ndarray],
        entropies: list[float],
        program: list,
    ) -> None:
        """Record one iteration."""
        self.history.append([a.copy() for a in alphas])
        self.losses.append(loss)
        text = "; ".join(f"{s}({', '.join(b)})" for s, b in program) or "(empty)"
        if self.writer is not None:
            self.writer.add_scalar("loss", loss, iteration)
            self.writer.add_scalar("tau", tau, iteration)
            for t, h in enumerate(entropies):
                self.writer.add_scalar(f"alpha_entropy/step{t}", h, iteration)
            self.writer.add_text("argmax_program", text, iteration)
        if self.bar is not None:
            self.bar.update(
                self._task, completed=iteration, loss=loss, h=float(np.mean(entropies)), prog=text
            )

    def close(self, ctx: Any) -> None:
        """Stop the bar, print the timing summary, flush TensorBoard, save the plot."""
        stats = ctx.stats
        if self.bar is not None:
            self.bar.stop()
            total = stats.get("train_s", 0.0)
            if total > 0:
                inside = stats.get("cpu_forward_s", 0.0) + stats.get("cpu_backward_s", 0.0)
                self.console.print(
                    f"gradient: {stats.get('iterations', 0)} iterations, "
                    f"{stats.get('iterations_per_s', 0.0):.2f} it/s, "
                    f"{100 * inside / total:.0f}% of the time inside the CPU "
                    f"(forward {stats.get('cpu_forward_s', 0.0):.1f} s, "
                    f"backward {stats.get('cpu_backward_s', 0.0):.1f} s of {total:.1f} s)"
                )
        if self.writer is not None:
            self.writer.close()
        if self.out is not None and self.history:
            stats["alpha_plot"] = str(self.save_plot(self.out / "alpha.png"))

    def save_plot(self, path: Path) -> Path:
        """alpha of every step over iterations (skip and the top ops), written atomically."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n_steps = len(self.labels)
        fig, axes = plt.subplots(n_steps, 1, figsize=(8, 2.8 * n_steps), squeeze=False)
        for t in range(n_steps):
            ax = axes[t, 0]
            series = np.array([h[t] for h in self.history])  # (iterations, ops + 1)
            top = [0, *list(np.argsort(-series[:, 1:].max(0))[:TOP] + 1)]
            x = np.arange(1, len(series) + 1)
            for i in top:
                ax.plot(x, series[:, i], label=self.labels[t][i], lw=1.5 if i else 1.0)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"alpha, step {t}")
            ax.legend(fontsize=7, loc="upper left")
        axes[-1, 0].set_xlabel("iteration (all restarts)")
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        finally:
            plt.close(fig)
