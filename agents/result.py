"""`SolveResult`: what every agent returns, and its JSON schema.

A result says whether the agent solved the task, which program it found, what the search
cost, and how the program generalises. Success is never taken from the search's own
examples: :func:`agents.verify.verify_program` runs the program on fresh inputs at every
training and test length (and 8x the longest training length) on the Transformer CPU, and
``success`` is true only when every one of those accuracies is 1.0.

JSON layout (``SolveResult.to_dict``; :data:`SOLVE_RESULT_SCHEMA` is the JSON Schema that
:func:`validate_result` checks, and the tests validate every agent's output against it):

=====================  ==================================================================
key                    meaning
=====================  ==================================================================
``schema``             ``"algind-gym/solve-result"``; ``schema_version`` is an integer
``task``               the task's name
``agent``              the agent's registered name; ``options`` its keyword options
``success``            every accuracy in ``generalisation`` is 1.0
``program``            ``[{"skill": "name@version", "bindings": ["x", "out", ...]}, ...]``
                       (empty when nothing was found)
``program_text``       the program, one ``skill(bindings)`` line per step
``found_program``      the program as the search found it, before minimisation (same
                       layout as ``program``; optional: absent in results written before it)
``disassembly``        assembly of the program compiled into a skill, or null
``actions_evaluated``  (skill, bindings) actions run on the K examples during search
``env_steps``          environment steps taken (actions plus HALT and invalid ones)
``instructions``       CPU instructions executed during search (all K machines)
``wall_time_s``        wall-clock seconds of the whole solve, verification included
``interrupted``        the search was stopped by Ctrl-C; the result is its best so far
``generalisation``     ``{"<length>": accuracy}`` on fresh inputs, every verified length
``budget``, ``seed``   as requested; ``library_size`` skills in the library used
``stats``              agent-specific figures (free-form, JSON values)
=====================  ==================================================================
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from algind_gym.atomic import atomic_write_text

SCHEMA_NAME = "algind-gym/solve-result"
SCHEMA_VERSION = 1

Program = list[tuple[str, list[str]]]
"""A program: ``(skill key, [pointer names])`` per step, as ``compile_task_program`` takes."""

SOLVE_RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "SolveResult",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "task",
        "agent",
        "success",
        "program",
        "program_text",
        "disassembly",
        "actions_evaluated",
        "env_steps",
        "instructions",
        "wall_time_s",
        "interrupted",
        "generalisation",
        "budget",
        "seed",
    ],
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "task": {"type": "string", "minLength": 1},
        "agent": {"type": "string", "minLength": 1},
        "options": {"type": "object"},
        "success": {"type": "boolean"},
        "program": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["skill", "bindings"],
                "properties": {
                    "skill": {"type": "string"},
                    "bindings": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
        },
        "program_text": {"type": "string"},
        "found_program": {"$ref": "#/properties/program"},
        "disassembly": {"type": ["string", "null"]},
        "actions_evaluated": {"type": "integer", "minimum": 0},
        "env_steps": {"type": "integer", "minimum": 0},
        "instructions": {"type": "integer", "minimum": 0},
        "wall_time_s": {"type": "number", "minimum": 0},
        "interrupted": {"type": "boolean"},
        "generalisation": {
            "type": "object",
            "patternProperties": {"^[0-9]+$": {"type": "number", "minimum": 0, "maximum": 1}},
            "additionalProperties": False,
        },
        "budget": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer"},
        "library_size": {"type": "integer", "minimum": 0},
        "stats": {"type": "object"},
    },
}


def validate_result(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first problem if ``data`` is not a valid result."""
    try:
        jsonschema.validate(data, SOLVE_RESULT_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ValueError(f"not a valid SolveResult at {where}: {e.message}") from None


@dataclass
class SolveResult:
    """The outcome of :func:`agents.solve` (see the module docstring for every field)."""

    task: str
    agent: str
    success: bool
    program: Program
    actions_evaluated: int
    env_steps: int
    instructions: int
    wall_time_s: float
    interrupted: bool
    generalisation: dict[str, float]
    budget: int
    seed: int
    program_text: str = ""
    disassembly: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    library_size: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    found_program: Program | None = None
    """The search's program before :func:`agents.api.minimise_program` (None: not run)."""

    @property
    def calls(self) -> int:
        """Number of steps (skill calls) in the program."""
        return len(self.program)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["program"] = [{"skill": s, "bindings": list(b)} for s, b in self.program]
        if self.found_program is None:
            d.pop("found_program")
        else:
            d["found_program"] = [{"skill": s, "bindings": list(b)} for s, b in self.found_program]
        return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, **d}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SolveResult:
        """Load a result written by :meth:`to_dict` (validated against the schema)."""
        validate_result(data)
        d = {k: v for k, v in data.items() if k not in ("schema", "schema_version")}
        d["program"] = [(step["skill"], list(step["bindings"])) for step in d["program"]]
        if d.get("found_program") is not None:
            d["found_program"] = [(st["skill"], list(st["bindings"])) for st in d["found_program"]]
        return cls(**d)

    def comparable(self) -> dict[str, Any]:
        """The result without wall time: equal for two runs with the same seed."""
        d = self.to_dict()
        d.pop("wall_time_s")
        d["stats"] = {k: v for k, v in d["stats"].items() if not k.endswith("_s")}
        return d

    def save(self, path: str | os.PathLike) -> Path:
        """Write the JSON atomically (a temporary file in the same folder, then a rename)."""
        return atomic_write_text(path, self.to_json(indent=2) + "\n")
