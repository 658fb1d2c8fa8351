"""``experiments/throughput.py`` keeps working with the benchmarks it calls.

It imports ``experiments/bench_env.py`` by path and reads its rows; when that script was
rewritten, the throughput command broke without any test noticing. This runs the
environment half on a tiny workload (figures are not checked: speed is measured by the
benchmarks themselves, never in tests).
"""

from __future__ import annotations

from tests.experiment_scripts import load_experiment


def test_env_rows_come_from_bench_env_and_render_as_a_table():
    throughput = load_experiment("throughput")
    rows = throughput.env_rows("VectorAdd", [2], steps=2, examples=2)
    kinds = [(r["backend"], r["envs"], r["mode"] != "sync") for r in rows]
    assert kinds == [
        ("reference", 1, False),
        ("reference", 1, True),
        ("transformer-torch", 1, False),
        ("transformer-torch", 1, True),
        ("transformer", 2, False),
        ("transformer", 2, True),
    ]
    vector = [r for r in rows if r["mode"] != "sync"]
    assert all(r["speedup_vs_sync"] > 0 and 0 <= r["breakdown"]["cpu"] <= 1 for r in vector)
    table = throughput.env_table(rows)
    assert table.count("\n") == 2 + len(rows)
