"""Why a DotProduct curriculum's stage 2 collapses to HALT: what PPO sees at every rollout.

Reruns stage 2 of ``experiments/rl_dotproduct.py`` briefly (MaskablePPO, transformer
policy, DotProduct alone, starting from a saved stage-1 model) and, after every rollout and
before the update, records from SB3's rollout buffer: the share of episodes that HALT at
their first step, the policy's mean P(HALT) and the critic's mean value over those first
steps, the lambda-returns and advantages (raw, before SB3's per-batch normalisation) of
first-step HALTs and first-step calls, the number of successes (reward > 0.5) and faults
(reward < -0.5), and the sum of the buffer's rewards, which includes what SB3 adds at
truncated ends (``gamma * V(terminal observation)``; see :mod:`agents.rl.vec_env`).
Section (a'''') of ``experiments/results/rl_notes.md`` reads these rows.

    python experiments/rl_halt_diagnosis.py --init /tmp/rl9/dot/seed2/stage1/model.zip \\
        --seed 2 --timesteps 10752 --hyperparams H.yml --out /tmp/diag --json rows.jsonl

``H.yml`` is a run's ``hyperparams.yml`` (``rl_dotproduct.py`` writes one into its work
folder), e.g. with ``fault_penalty`` or ``bootstrap_truncation`` changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from agents.rl.train import train


def rollout_row(model) -> dict:
    """The statistics above for ``model``'s current rollout buffer."""
    b, net = model.rollout_buffer, model.policy.net
    act, start = b.actions[..., 0], b.episode_starts.astype(bool)
    halt = act == net.n_skills  # the skill component's last index is HALT
    h0, a0 = start & halt, start & ~halt
    first = {k: torch.as_tensor(v[start]) for k, v in b.observations.items()}
    with torch.no_grad():
        o = model.policy._obs(first)
        p_halt = torch.softmax(net.skill_logits(o, net.encode(o)), -1)[:, -1].mean().item()

    def mean(x, m):
        return float(x[m].mean()) if m.any() else None

    return {
        "t": int(model.num_timesteps),
        "episodes": int(start.sum()),
        "frac_halt_first": float(h0.sum() / max(start.sum(), 1)),
        "P_halt_s0": p_halt,
        "V_s0": float(b.values[start].mean()),
        "ret_halt0": mean(b.returns, h0),
        "ret_attempt0": mean(b.returns, a0),
        "adv_halt0": mean(b.advantages, h0),
        "adv_attempt0": mean(b.advantages, a0),
        "successes": int((b.rewards > 0.5).sum()),
        "faults": int((b.rewards < -0.5).sum()),
        "reward_sum": float(np.sum(b.rewards)),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="the stage-1 model.zip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timesteps", type=int, default=10_752)
    p.add_argument("--hyperparams", required=True)
    p.add_argument("--out", required=True, help="a new folder for the run")
    p.add_argument("--json", required=True, help="JSON lines: one row per rollout")
    args = p.parse_args(argv)
    rows: list[dict] = []
    update = MaskablePPO.train

    def recorded(model) -> None:
        rows.append(rollout_row(model))
        with Path(args.json).open("a") as f:  # row by row: a cut run keeps its rows
            f.write(json.dumps(rows[-1]) + "\n")
        update(model)

    MaskablePPO.train = recorded
    try:
        s = train(
            "maskable_ppo", ["DotProduct"], policy="transformer", timesteps=args.timesteps,
            seed=args.seed, hyperparams=args.hyperparams, out=args.out, init=args.init,
        ).summary  # fmt: skip
    finally:
        MaskablePPO.train = update
    with Path(args.json).open("a") as f:
        f.write(json.dumps({"final_success": s["success_rate"]}) + "\n")


if __name__ == "__main__":
    main()
