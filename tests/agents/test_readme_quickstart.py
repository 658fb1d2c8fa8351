"""The README's MaskablePPO quick start runs as written (with fewer training steps; a
training run, so marked slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


@pytest.mark.slow
def test_ppo_quickstart_runs(capsys):
    pytest.importorskip("sb3_contrib")
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"<!-- ppo-quickstart -->\n```python\n(.*?)```", readme, re.S)
    assert block, "README lost its ppo-quickstart block"
    code = block.group(1)
    assert "total_timesteps=2_000" in code
    exec(
        compile(code.replace("total_timesteps=2_000", "total_timesteps=128"), "README", "exec"), {}
    )
    program, reward = capsys.readouterr().out.rsplit(" ", 1)
    assert "(" in program and float(reward) <= 1.0


def test_readme_table_is_the_committed_quick_run():
    """The README's main-job table is generated from the committed results.json."""
    from agents.report import load_results, summary_table

    root = Path(__file__).parents[2]
    results = root / "experiments" / "results" / "curriculum_quick" / "results.json"
    readme = (root / "README.md").read_text()
    table = readme.split("<!-- curriculum-quick-table -->\n", 1)[1]
    table = table.split("<!-- /curriculum-quick-table -->", 1)[0]
    assert table.strip() == summary_table(load_results(results)).strip()
