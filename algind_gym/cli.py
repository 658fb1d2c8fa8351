"""The ``algind-gym`` command line.

Every subcommand is a thin layer over a library function (one way to do each thing):
it parses arguments, calls the library, and prints a rich table or JSON. Errors in the
user's input (a bad program file, an unknown register) print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from algind_gym.machine.assembler import AssemblyError
from algind_gym.machine.disassembler import disassemble_program
from algind_gym.machine.isa import WIDTH, Fault
from algind_gym.machine.program import Program, build_machine
from algind_gym.machine.state import MachineState

console = Console()


class UsageError(Exception):
    """A problem with the user's input; printed without a traceback."""


# --------------------------------------------------------------------- helpers
def example_names() -> list[str]:
    return sorted(
        p.name[:-4]
        for p in resources.files("algind_gym.examples").iterdir()
        if p.name.endswith(".asm")
    )


def read_source(path: str) -> tuple[str, str]:
    """Return (text, filename) of an assembly file, or of a bundled example by name."""
    p = Path(path)
    if p.is_file():
        return p.read_text(), str(p)
    name = p.name[:-4] if p.name.endswith(".asm") else p.name
    if str(p) == p.name and name in example_names():
        res = resources.files("algind_gym.examples") / f"{name}.asm"
        return res.read_text(), f"<example {name}>"
    raise UsageError(
        f"no such file {path!r}; pass a path to an .asm file or one of the bundled examples: "
        f"{', '.join(example_names())}"
    )


def assemble(text: str, filename: str, **kwargs) -> tuple[MachineState, Program]:
    """:func:`build_machine`, refusing a program without instructions (an empty file)."""
    state, program = build_machine(text, filename=filename, **kwargs)
    if program.n_instructions == 0:
        what = "is empty" if not text.strip() else "has no instructions (only comments or data)"
        raise UsageError(f"{filename} {what}: nothing to run; write at least one, e.g. 'halt'")
    return state, program


def parse_assignment(text: str) -> tuple[str, list[float]]:
    name, sep, values = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--set expects NAME=V1,V2,...; got {text!r}")
    try:
        vals = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise UsageError(
            f"--set {name}: values must be comma-separated numbers, got {values!r}"
        ) from None
    if not vals or not all(np.isfinite(vals)):
        raise UsageError(f"--set {name}: give at least one finite number")
    return name.strip(), vals


def apply_assignments(state: MachineState, program: Program, assignments: list[str]) -> None:
    for text in assignments:
        name, vals = parse_assignment(text)
        if name in program.data:
            address, cur = program.data[name]
            if len(vals) != len(cur):
                raise UsageError(
                    f"--set {name}: {name!r} has {len(cur)} cell(s), got {len(vals)} value(s)"
                )
            state.write(address, vals)
        elif name.lower() in state.layout.register_names:
            if len(vals) not in (1, state.batch):
                raise UsageError(f"--set {name}: give 1 value or one per machine ({state.batch})")
            state.set_register(name, vals if len(vals) > 1 else vals[0])
        else:
            raise UsageError(
                f"--set {name}: unknown name; data is {sorted(program.data) or 'none'}, "
                f"registers are {', '.join(state.layout.register_names)}"
            )


def state_summary(state: MachineState, program: Program) -> dict:
    return {
        "registers": {n: state.register(n).tolist() for n in state.layout.register_names},
        "fault": [Fault(int(f)).name for f in state.faults],
        "halted": state.halted.tolist(),
        "data": {k: state.read(a, len(v)).tolist() for k, (a, v) in program.data.items()},
    }


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:.6g}"


def print_state(state: MachineState, program: Program) -> None:
    summary = state_summary(state, program)
    machines = range(state.batch)
    t = Table(
        title=f"final state of {program.name!r} ({state.batch} machine(s), {state.dtype.name})"
    )
    t.add_column("name", style="bold")
    for m in machines:
        t.add_column(f"machine {m}", justify="right")
    t.add_row("fault", *summary["fault"])
    t.add_row("halted", *[str(h) for h in summary["halted"]])
    for name, vals in summary["registers"].items():
        if name in ("halt", "fault"):
            continue
        t.add_row(name, *[_fmt(v) for v in vals])
    t.add_section()
    for name, rows in summary["data"].items():
        t.add_row(f"data {name}", *[" ".join(_fmt(v) for v in r) for r in rows])
    console.print(t)


# -------------------------------------------------------------------- commands
def cmd_asm(args: argparse.Namespace) -> int:
    text, filename = read_source(args.file)
    state, program = assemble(text, filename)
    if args.json:
        out = {"program": program.to_dict(), "layout": state.layout.to_dict()}
        print(json.dumps(out))
        return 0
    t = Table(title=f"{filename}: {program.n_instructions} instructions at {program.code_base}")
    for col in ("address", "cells", "line", "source"):
        t.add_column(col)
    src_lines = text.splitlines()
    for i in range(program.n_instructions):
        cells = program.code[WIDTH * i : WIDTH * (i + 1)]
        line = program.lines[i]
        t.add_row(
            str(program.code_base + WIDTH * i),
            " ".join(_fmt(c) for c in cells),
            str(line),
            src_lines[line - 1].split(";")[0].strip(),
        )
    console.print(t)
    return 0


def cmd_disasm(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
            program = Program.from_dict(data.get("program", data))
        except (OSError, json.JSONDecodeError, KeyError, ValueError) as e:
            raise UsageError(f"{path}: not an assembled program ({e})") from None
        print(disassemble_program(program), end="")
        return 0
    text, filename = read_source(args.file)
    state, program = assemble(text, filename)
    print(disassemble_program(program, state.layout), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from algind_gym.cpu.backend import make_backend

    text, filename = read_source(args.file)
    state, program = assemble(text, filename, batch=args.batch, dtype=args.dtype)
    apply_assignments(state, program, args.set or [])
    make_backend(args.backend).run(state, max_steps=args.max_steps)
    if args.json:
        summary = {"program": program.name, "backend": args.backend}
        print(json.dumps(summary | state_summary(state, program)))
    else:
        print(f"backend: {args.backend}")
        print_state(state, program)
    return 0 if not state.faults.any() else 1


def cmd_verify_cpu(args: argparse.Namespace) -> int:
    from algind_gym.cpu.verify import verify_cpu

    backends = tuple(b for b in args.backends.split(",") if b)
    choices = [n for n in BACKEND_NAMES + V2_BACKEND_NAMES if n != "reference"]
    unknown = [b for b in backends if b not in choices]
    if unknown or not backends:
        raise UsageError(
            f"--backends: unknown or reference backend(s) {unknown}; choose among "
            f"{', '.join(choices)}"
        )
    if args.fused_only:
        backends = tuple(b for b in backends if not b.endswith("dense"))
    lengths = None
    if args.structured_lengths:
        try:
            lengths = [int(n) for n in args.structured_lengths.split(",")]
        except ValueError:
            raise UsageError(
                f"--structured-lengths: integers like 32,64; got {args.structured_lengths!r}"
            ) from None
    result = verify_cpu(
        programs=args.programs,
        steps=args.steps,
        batch=args.batch,
        dtype=args.dtype,
        seed=args.seed,
        backends=backends,
        print_result=not args.json,
        structured_steps=args.structured_steps,
        structured_tasks=args.structured_tasks.split(",") if args.structured_tasks else None,
        structured_minimal=args.structured_minimal,
        structured_per_call=args.structured_per_call,
        structured_slots=args.structured_slots,
        structured_lengths=lengths,
    )
    if args.json:
        print(json.dumps(result, default=str))
    return 0 if result["mismatches"] == 0 else 1


def cmd_bench_cpu(args: argparse.Namespace) -> int:
    from algind_gym.cpu.bench import bench_cpu

    batches = tuple(int(b) for b in args.batches.split(","))
    rows = bench_cpu(batches=batches, dtype=np.dtype(args.dtype), print_table=not args.json)
    if args.json:
        print(json.dumps(rows, default=str))
    return 0


def cmd_cpu_info(args: argparse.Namespace) -> int:
    from algind_gym.cpu_v2.info import cpu_info

    print(cpu_info(args.memory_size, args.dtype))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from algind_gym.tasks.commands import list_command

    return list_command(json=args.json)


def cmd_verify_tasks(args: argparse.Namespace) -> int:
    from algind_gym.tasks.commands import verify_tasks_command

    tasks = args.tasks.split(",") if args.tasks else None
    return verify_tasks_command(backend=args.backend, json=args.json, tasks=tasks)


def cmd_show_skill(args: argparse.Namespace) -> int:
    from algind_gym.tasks.commands import show_skill_command

    return show_skill_command(args.name, library=args.library)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "list": (cmd_list, "list the curriculum tasks and their environment ids"),
    "show-skill": (cmd_show_skill, "show a skill: signature, description, code, dependencies"),
    "verify-tasks": (cmd_verify_tasks, "run every reference solution at every length"),
    "run": (cmd_run, "assemble and run a program, print the final state"),
    "asm": (cmd_asm, "assemble a program and print its listing (or --json)"),
    "disasm": (cmd_disasm, "disassemble a program (.asm, bundled example, or asm --json)"),
    "verify-cpu": (cmd_verify_cpu, "fuzz the Transformer CPU against the reference interpreter"),
    "cpu-info": (cmd_cpu_info, "the opt-in Transformer CPU v2's blocks, heads, d_model, weights"),
    "bench-cpu": (
        cmd_bench_cpu,
        "instructions/s of the reference, dense and fused (numba and torch kernels) backends",
    ),
}

BACKEND_NAMES = ("reference", "transformer", "transformer-torch", "transformer-dense")
V2_BACKEND_NAMES = ("transformer-v2", "transformer-v2-torch", "transformer-v2-dense")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="algind-gym",
        description="Algorithm induction by composing skills on a Transformer CPU.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("asm", "disasm", "run"):
            p.add_argument(
                "file", help=f"an .asm file or a bundled example ({', '.join(example_names())})"
            )
        if name == "asm":
            p.add_argument(
                "--json", action="store_true", help="print the assembled program as JSON"
            )
        if name == "run":
            p.add_argument(
                "--set", action="append", metavar="NAME=V1,V2", help="set data or a register"
            )
            p.add_argument("--max-steps", type=int, default=100_000, help="instruction budget")
            p.add_argument("--batch", type=int, default=1, help="number of machines")
            p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
            p.add_argument("--json", action="store_true", help="print the final state as JSON")
            p.add_argument(
                "--backend",
                choices=BACKEND_NAMES + V2_BACKEND_NAMES,
                default="transformer",
                help="the Transformer CPU (default) or the reference interpreter",
            )
        if name == "cpu-info":
            p.add_argument("--memory-size", type=int, default=256, help="data cells")
            p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
        if name == "list":
            p.add_argument("--json", action="store_true", help="JSON rows {id, task, level, track}")
        if name == "show-skill":
            p.add_argument("name", help="NAME or NAME@VERSION")
            p.add_argument("--library", help="a saved skill library (JSON); default: built-ins")
        if name == "verify-tasks":
            p.add_argument("--backend", choices=BACKEND_NAMES, default="reference")
            p.add_argument("--tasks", help="comma-separated task names (default: all)")
            p.add_argument("--json", action="store_true")
        if name == "verify-cpu":
            p.add_argument("--programs", type=int, default=2048, help="random programs")
            p.add_argument("--steps", type=int, default=256, help="steps per program")
            p.add_argument("--batch", type=int, default=512, help="machines per round")
            p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--fused-only", action="store_true", help="skip the dense paths")
            p.add_argument(
                "--backends",
                default=",".join(n for n in BACKEND_NAMES + V2_BACKEND_NAMES if n != "reference"),
                help="comma-separated backends to compare with the reference (default: all)",
            )
            p.add_argument(
                "--structured-steps",
                type=int,
                default=0,
                help="then check at least this many steps of reference solutions' skill calls "
                "and mutations of them (long programs)",
            )
            p.add_argument(
                "--structured-tasks", help="comma-separated tasks for those (default: all)"
            )
            p.add_argument(
                "--structured-minimal",
                action="store_true",
                help="place them on minimal layouts (only the skills called; the dense paths)",
            )
            p.add_argument("--structured-per-call", type=int, default=16, help="machines/call")
            p.add_argument("--structured-slots", type=int, help="batch per layout (--batch)")
            p.add_argument(
                "--structured-lengths", help="comma-separated task lengths to draw from (all)"
            )
            p.add_argument("--json", action="store_true")
        if name == "bench-cpu":
            p.add_argument("--batches", default="1,64,1024,4096")
            p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
            p.add_argument("--json", action="store_true")
    # Commands implemented outside this module register themselves (one module each).
    from agents.commands import add_solve_parser
    from agents.curriculum_commands import add_bench_parser, add_curriculum_parser
    from agents.rl.commands import add_rl_parsers  # train, evaluate

    add_solve_parser(sub)
    add_rl_parsers(sub)
    add_curriculum_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "func"):
            return args.func(args)
        return COMMANDS[args.command][0](args)
    except (UsageError, AssemblyError, ValueError, KeyError, IndexError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"algind-gym: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
