"""The README's user-extension example runs as written."""

from __future__ import annotations

import runpy
from pathlib import Path

import gymnasium as gym

from algind_gym.tasks import unregister_task

EXAMPLE = Path(__file__).with_name("extension_example.py")


def test_readme_extension_example(capsys):
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    finally:
        unregister_task("IncrementedSum")
        gym.registry.pop("AlgInd/IncrementedSum-v0", None)
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "AlgInd/IncrementedSum-v0 True",
        "IncrementedSum@1 IncrementedSum(x: vector) -> out: scalar",
    ]


def test_readme_shows_exactly_this_example():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- extension-example -->", 1)[1].split("```python\n", 1)[1]
    block = block.split("```", 1)[0]
    assert block.strip() == EXAMPLE.read_text().strip()
