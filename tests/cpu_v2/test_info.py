"""``algind-gym cpu-info`` prints v2's true block count; ``run`` says which backend ran (in
its text output) and accepts the opt-in v2 backends."""

from __future__ import annotations

import json

from algind_gym.cli import main


def test_cpu_info_prints_blocks_heads_and_matrices(capsys):
    assert main(["cpu-info", "--memory-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "layers 11 (blocks: 17 = 6 attention + 11 MLP), heads 26" in out
    assert "d_model" in out and "L2.decode.W_2" in out and "non-zero" in out


def test_run_says_which_backend_ran(capsys):
    assert main(["run", "factorial"]) == 0
    assert capsys.readouterr().out.startswith("backend: transformer\n")
    assert main(["run", "factorial", "--backend", "reference"]) == 0
    assert capsys.readouterr().out.startswith("backend: reference\n")
    assert main(["run", "factorial", "--backend", "transformer-v2-torch"]) == 0
    assert capsys.readouterr().out.startswith("backend: transformer-v2-torch\n")


def test_run_on_a_v2_backend_matches_the_reference(capsys):
    assert main(["run", "factorial", "--json", "--backend", "reference"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert main(["run", "factorial", "--json", "--backend", "transformer-v2-torch"]) == 0
    v2 = json.loads(capsys.readouterr().out)
    assert (ref.pop("backend"), v2.pop("backend")) == ("reference", "transformer-v2-torch")
    assert v2 == ref


def test_verify_cpu_checks_the_chosen_backends_and_refuses_unknown_ones(capsys):
    argv = ["verify-cpu", "--programs", "16", "--steps", "8", "--batch", "16", "--json"]
    assert main([*argv, "--backends", "transformer-v2,transformer-v2-dense"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backends"] == ["transformer-v2", "transformer-v2-dense"]
    assert result["mismatches"] == 0 and result["steps_checked"] > 0
    assert main([*argv, "--backends", "reference"]) == 2
    assert "unknown or reference backend(s) ['reference']" in capsys.readouterr().err
