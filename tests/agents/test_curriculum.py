"""The curriculum runner: two generations end to end, resume after an interruption with
identical results, the results.json schema, the report, flat against hierarchical, and the
errors a user can run into."""

from __future__ import annotations

import json
import sys

import pytest

from agents.curriculum import (
    LIBRARY_FILE,
    PRESETS,
    RESULTS_FILE,
    CurriculumConfig,
    RunStateError,
    flat_row,
    preset_tasks,
    run_curriculum,
    run_flat,
    solved_tasks,
)
from agents.report import flat_cell, load_results, validate_results, write_report
from agents.result import SolveResult
from algind_gym.cli import main
from algind_gym.skills.library import SkillLibrary
from algind_gym.tasks import list_tasks

BUDGET = 1000


@pytest.fixture
def tiny():
    """Register the two user tasks for one test (and remove them afterwards)."""
    from tests.agents import tiny_tasks

    tiny_tasks.register()
    yield tiny_tasks.TINY_TASKS
    tiny_tasks.unregister()


def _config(**kw):
    base = {
        "tasks": ["AddTen", "VectorAddTen"],
        "agent": "enumerative",
        "budget": BUDGET,
        "seed": 1,
    }
    return CurriculumConfig(**{**base, "max_calls": 2, **kw})


def _comparable(state):
    """The state without wall times (everything else must match between runs)."""
    out = json.loads(json.dumps(state))
    for g in out["generations"]:
        for a in g["attempts"]:
            a["result"] = SolveResult.from_dict(a["result"]).comparable()
    for row in (out["flat"] or {}).get("rows", []):
        row.pop("flat_wall_time_s")
    return out


class Stop(Exception):
    pass


def test_two_generations_resume_after_interruptions_with_identical_results(tiny, tmp_path):
    ref = run_curriculum(_config(), tmp_path / "ref")
    # generation 1 learns AddTen; VectorAddTen needs it, so it is solved in generation 2
    assert [g["generation"] for g in ref["generations"]] == [1, 2]
    solved = solved_tasks(ref)
    assert solved["AddTen"]["generation"] == 1 and solved["VectorAddTen"]["generation"] == 2
    assert "&AddTen@1" in solved["VectorAddTen"]["result"]["program_text"]
    assert ref["finished"] and ref["stop_reason"] == "every task solved"
    assert not ref["generations"][0]["attempts"][1]["result"]["success"]
    validate_results(json.loads((tmp_path / "ref" / RESULTS_FILE).read_text()))
    lib = SkillLibrary.load(tmp_path / "ref" / LIBRARY_FILE)
    assert lib.keys()[-2:] == ["AddTen@1", "VectorAddTen@1"] == ref["library_keys"][-2:]

    # interrupted after the first attempt (mid generation 1), then after the second (the end
    # of generation 1, before the generation is closed)
    out = tmp_path / "run"

    def stop_at_first_result(kind, data):
        if kind == "result":
            raise Stop

    for recorded in (1, 2):
        with pytest.raises(Stop):
            run_curriculum(_config(), out, resume=recorded > 1, on_event=stop_at_first_result)
        saved = load_results(out / RESULTS_FILE)
        assert sum(len(g["attempts"]) for g in saved["generations"]) == recorded
        assert not saved["finished"]
    resumed = run_curriculum(_config(), out, resume=True)
    assert _comparable(resumed) == _comparable(ref)
    assert SkillLibrary.load(out / LIBRARY_FILE).keys() == lib.keys()


def test_ctrl_c_inside_a_solve_records_nothing_and_resume_redoes_it(tiny, tmp_path):
    calls = []

    def progress(ctx):
        calls.append(ctx.actions_evaluated)
        if len(calls) == 1:  # inside the first solve
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_curriculum(_config(), tmp_path, progress=progress)
    saved = load_results(tmp_path / RESULTS_FILE)
    assert saved["generations"][0]["attempts"] == []
    done = run_curriculum(_config(), tmp_path, resume=True)
    ref = run_curriculum(_config(), tmp_path / "ref")
    assert _comparable(done) == _comparable(ref)


def test_report_and_flat_comparison(tiny, tmp_path):
    state = run_curriculum(_config(), tmp_path)
    state = run_flat(state, tmp_path, tasks=["VectorAddTen"], ratio=2)
    (row,) = state["flat"]["rows"]
    hier = solved_tasks(state)["VectorAddTen"]["result"]
    assert row["flat_budget"] == 2 * hier["actions_evaluated"]
    # no constant ten and no AddTen: random search spends its whole budget
    assert row["flat_outcome"] == "over_budget" and row["flat_actions"] == row["flat_budget"]
    assert flat_cell(row, 2) == (f"> {row['flat_budget']} (budget)", "> 2x")
    validate_results(load_results(tmp_path / RESULTS_FILE))
    report = write_report(state, tmp_path).read_text()
    assert "| VectorAddTen | 2 |" in report and "map@1(&AddTen@1, x, out)" in report
    assert "> 2x" in report and "not expressible" not in report.split("## Skill")[0].split("|")[-1]
    for png in ("hierarchy.png", "progress.png", "accuracy.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_flat_outcomes_are_never_numbers_unless_solved():
    hier = {"actions_evaluated": 10, "program": [{"skill": "a", "bindings": []}]}

    def result(success, actions, budget):
        return SolveResult("T", "x", success, [("a", [])] if success else [], actions, actions,
                           0, 0.1, False, {"1": 1.0 if success else 0.0}, budget, 0)  # fmt: skip

    exhausted = flat_row("T", hier, result(False, 1000, 1000))
    stopped = flat_row("T", hier, result(False, 37, 1000))
    solved = flat_row("T", hier, result(True, 2000, 5000))
    assert flat_cell(exhausted, 100) == ("> 1000 (budget)", "> 100x")
    assert flat_cell(stopped, 100) == ("not expressible", "not expressible")
    assert flat_cell(solved, 100) == ("2000", "200.0x")


def test_output_dir_holding_a_run_is_refused_unless_asked(tiny, tmp_path):
    run_curriculum(_config(tasks=["AddTen"]), tmp_path)
    before = (tmp_path / RESULTS_FILE).read_text()
    with pytest.raises(RunStateError, match="--resume to continue"):
        run_curriculum(_config(tasks=["AddTen"]), tmp_path)
    with pytest.raises(RunStateError, match=r"different run \(budget: saved 1000, now 99\)"):
        run_curriculum(_config(tasks=["AddTen"], budget=99), tmp_path, resume=True)
    assert (tmp_path / RESULTS_FILE).read_text() == before  # nothing overwritten
    with pytest.raises(RunStateError, match="no run to resume"):
        run_curriculum(_config(), tmp_path / "empty", resume=True)
    forced = run_curriculum(_config(tasks=["AddTen"], budget=99), tmp_path, force=True)
    assert forced["config"]["budget"] == 99


def test_library_from_another_version_is_a_clear_error(tiny, tmp_path):
    run_curriculum(_config(tasks=["AddTen"]), tmp_path)
    path = tmp_path / LIBRARY_FILE
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(RunStateError, match=r"format version 99 is not supported.*--force"):
        run_curriculum(_config(tasks=["AddTen"]), tmp_path, resume=True)
    results = tmp_path / RESULTS_FILE
    results.write_text(json.dumps({**json.loads(results.read_text()), "schema_version": 7}))
    with pytest.raises(ValueError, match="results schema version 7 is not supported"):
        run_curriculum(_config(tasks=["AddTen"]), tmp_path, resume=True)


def test_results_schema_rejects_broken_files(tiny, tmp_path):
    state = run_curriculum(_config(tasks=["AddTen"]), tmp_path)
    validate_results(state)
    broken = json.loads(json.dumps(state))
    broken["generations"][0]["attempts"][0]["result"]["success"] = "yes"
    with pytest.raises(ValueError, match="generation 1, attempt 0"):
        validate_results(broken)
    broken = {**state, "config": {**state["config"], "budget": 0}}
    with pytest.raises(ValueError, match="config/budget"):
        validate_results(broken)


def test_presets():
    quick = preset_tasks("quick")
    numeric = [t.name for t in list_tasks(track="numeric") if t.level <= 4]
    assert set(numeric) <= set(quick) and set(PRESETS["quick"]["extra"]) <= set(quick)
    assert "MLPLayer" not in quick
    assert preset_tasks("full") == [t.name for t in list_tasks()]
    assert {"CountLE", "CarryIn", "Digit10"} <= set(preset_tasks("full"))
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset_tasks("huge")


def test_user_tasks_join_the_full_preset(tiny):
    assert {"AddTen", "VectorAddTen"} <= set(preset_tasks("full"))


def test_cli_runs_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["curriculum", "--agent", "enumerative", "--tasks", "AddTen", "--budget", str(BUDGET)]
    args += ["--seed", "1", "--max-calls", "2", "--import", "tests.agents.tiny_tasks"]
    sys.modules.pop("tests.agents.tiny_tasks", None)  # so that --import registers the tasks
    try:
        assert main([*args, "--out", str(out), "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        validate_results(printed)
        assert solved_tasks(printed)["AddTen"]["result"]["program_text"]
        assert (out / "report.md").is_file() and (out / "hierarchy.png").is_file()
        assert main([*args, "--out", str(out)]) == 2
        assert "--resume to continue" in capsys.readouterr().err
        assert main([*args, "--out", str(out), "--resume", "--json", "--no-plots"]) == 0
        capsys.readouterr()
    finally:
        from tests.agents import tiny_tasks

        tiny_tasks.unregister()
    for bad, msg in [
        (["--preset", "huge"], "invalid choice: 'huge'"),
        (["--agent", "nosuch"], "unknown agent 'nosuch'; choose one of"),
        (["--tasks", "NoSuchTask", "--agent", "random"], "unknown task 'NoSuchTask'"),
        (["--import", "no_such_module_xyz", "--agent", "random"], "--import no_such_module_xyz"),
    ]:
        try:
            rc = main(["curriculum", *bad, "--out", str(tmp_path / "x")])
        except SystemExit as e:  # argparse rejects choices itself
            rc = e.code
        assert rc == 2
        assert msg in capsys.readouterr().err


def test_a_verified_program_that_cannot_become_a_skill_leaves_the_task_unsolved(
    tiny, tmp_path, monkeypatch
):
    import agents.curriculum

    def refuse(library, task, steps, **kw):
        raise ValueError(f"{task.name}: cannot compile (a constant is written)")

    # Inputs and constants are read-only in the binding rule, so no verified program writes
    # one any more; the compile step is made to refuse to test how the runner records it.
    monkeypatch.setattr(agents.curriculum, "compile_task_program", refuse)
    state = run_curriculum(_config(tasks=["AddTen"]), tmp_path)
    (attempt,) = state["generations"][0]["attempts"]
    assert attempt["result"]["success"] and attempt["skill"] is None
    assert "constant" in attempt["compile_error"]
    assert solved_tasks(state) == {} and state["stop_reason"] == "a generation solved nothing new"
    assert "not a skill" in write_report(state, tmp_path, plots=False).read_text()


def test_a_task_over_the_action_space_cap_is_recorded_as_skipped(tiny, tmp_path, monkeypatch):
    """A task whose action table exceeds the env's cap does not stop the run: its attempt is
    recorded as skipped with the reason, the other tasks go on, and the report says so."""
    import algind_gym.envs.composition as composition
    from algind_gym.envs.actions import build_action_table

    def capped(image, task, max_candidates=200_000):
        cap = 5 if task.name == "VectorAddTen" else max_candidates
        return build_action_table(image, task, max_candidates=cap)

    monkeypatch.setattr(composition, "build_action_table", capped)
    state = run_curriculum(_config(), tmp_path)
    assert set(solved_tasks(state)) == {"AddTen"}
    skips = [
        a
        for g in state["generations"]
        for a in g["attempts"]
        if a["result"]["task"] == "VectorAddTen"
    ]
    assert len(skips) == len(state["generations"])  # tried (and skipped) in every generation
    for skip in skips:
        assert "more than 5 candidate actions" in skip["skipped"]
        assert skip["result"]["actions_evaluated"] == 0 and not skip["result"]["success"]
    validate_results(load_results(tmp_path / RESULTS_FILE))
    report = write_report(state, tmp_path, plots=False).read_text()
    assert "not attempted: task VectorAddTen: more than 5 candidate actions" in report
