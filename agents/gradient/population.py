"""A population of soft programs trained side by side in the same batched CPU calls.

Restarts from several seeds are the usual remedy for a gradient method's local minima; run
one after another they split the wall-time budget. Here P members (each its own alpha and
W^in, drawn with its own noise) are one set of tensors with a leading member axis
(:func:`~agents.gradient.soft.init_params` with ``population=P``), and the soft forward runs
them as extra rows of the same batched call: op ``v``'s rows are ``v*P*K .. (v+1)*P*K - 1``,
member ``p``'s K examples within them (:func:`~agents.gradient.soft.per_row`). All members see
the same K examples, so their losses compare directly; one Adam optimiser updates them
(Adam is elementwise, so the members do not interact through it).

Selection (:func:`exploit`): every few iterations the worst members (by a running mean of
their losses) are replaced by a perturbed copy of the best one, Adam's moments included --
the exploit/explore step of population-based training (Jaderberg et al., 2017) applied to
the program's logits. Which member's programs are checked first also follows the losses
(:func:`ranked`).

Cost: the rows are not free. Each row of the torch-kernel CPU holds the whole machine
state (thousands of cells, most of them the skills' code), so a call's time grows with its
rows; batching saves the per-step dispatch that P separate calls would each pay.
``experiments/bench_gradient_population.py`` measures one iteration (forward and backward)
of P members batched against P single members in turn, side by side: on DotProduct's
two-step plan with K = 4, 4 members batched took 12.4 s against 4 x 5.1 s in turn (ratio
1.66; 2 members: 1.33), on the shared 2-core machine at load average 13, so noisy.
"""

from __future__ import annotations

import torch

from agents.gradient.soft import StepParams


def repeat_rows(state: dict[str, torch.Tensor], members: int) -> dict[str, torch.Tensor]:
    """Every buffer's ``(K, size)`` values as ``(P*K, size)``: each member gets the same K
    examples, member p in rows ``p*K .. p*K+K-1``."""
    return {n: t.repeat(members, 1) for n, t in state.items()}


def member(params: list[StepParams], p: int) -> list[StepParams]:
    """Member ``p``'s logits without the member axis (detached), for discretisation."""
    return [
        StepParams(par.alpha.detach()[p], {k: w.detach()[p] for k, w in par.w_in.items()})
        for par in params
    ]


def ranked(losses: torch.Tensor) -> list[int]:
    """Member indices, lowest loss first (non-finite losses last)."""
    x = torch.nan_to_num(losses.detach().double(), nan=float("inf"))
    return [int(i) for i in torch.argsort(x, stable=True)]


def exploit(
    params: list[StepParams],
    opt: torch.optim.Optimizer,
    score: torch.Tensor,
    share: float,
    noise: float,
    generator: torch.Generator,
) -> list[int]:
    """Replace the worst ``share`` of the members (by ``score``, lower is better; at least
    one when there are two or more) by the best member's logits plus Gaussian ``noise``,
    copying its Adam moments too. Returns the replaced members."""
    order = ranked(score)
    n = len(order)
    if n < 2:
        return []
    replaced = order[::-1][: max(1, int(share * n))]
    best = order[0]
    replaced = [m for m in replaced if m != best]
    with torch.no_grad():
        for par in params:
            for t in par.tensors():
                for m in replaced:
                    t[m] = t[best] + noise * torch.randn(
                        t.shape[1:], generator=generator, dtype=t.dtype
                    )
                    st = opt.state.get(t, {})
                    for key in ("exp_avg", "exp_avg_sq"):
                        if key in st:
                            st[key][m] = st[key][best]
    return replaced
