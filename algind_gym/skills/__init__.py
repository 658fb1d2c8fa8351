"""Skills and the skill library (layer 6 of docs/ARCHITECTURE.md).

* atomic skills in assembly (``asm/*.asm``) and generated combinators
  (:mod:`~algind_gym.skills.combinators`), gathered by :func:`builtin_library`;
* :class:`SkillLibrary`: append-only, versioned, JSON-serialised, composes programs into
  new skills (:mod:`~algind_gym.skills.library`, :mod:`~algind_gym.skills.compose`);
* :class:`MachineImage` / :func:`run_skill`: placing skills and buffers into machines and
  executing one action (:mod:`~algind_gym.skills.image`).

Calling convention (every library skill, hand-written or compiled)
-----------------------------------------------------------------
* Arguments are passed by descriptor ``[addr, rows, cols, type]`` in the callee's argument
  slots (skill block ``[header | slots | code]``; slot ``i`` at ``header + 4 + 4 * i``,
  the weights slot after the arguments). A skill reference is ``[header, 0, 0, SKILL]``.
* A vector argument has ``rows * cols`` elements, so a matrix binds to a vector slot as its
  row-major flattening (:func:`~algind_gym.skills.signature.accepts`).
* Registers ``r0..r7`` are caller-saved scratch. A skill that calls other skills keeps its
  state in frame locals (``ENTER``/``LDF``/``STF``) and reloads it after every call.
* Re-entrancy: slots are static per block, so a calling skill copies its slot descriptors
  into its frame in its prologue and never reads its slots again, and every caller writes
  the full four-cell descriptor into the callee's slots immediately before ``CALL``/``CALLP``.
  The same block may be active several times on the stack (tested with a ``mapv`` whose
  ``f`` uses ``mapv``).
* Temporaries live on the stack: a composed skill pushes zero-filled buffers sized from its
  arguments' shapes after its frame; ``LEAVE`` frees them.
* A failed size or index check executes opcode 0 (``INVALID_INSTRUCTION`` fault).
* ``MODE`` is global: 0 selects output entries, 1 Jacobian entries (``CALLP`` honours it;
  composed Jacobian code sets it explicitly around its forward and chain-rule calls and
  leaves it at 1). Jacobian contracts: :mod:`algind_gym.skills.compose`.

Design note (docs/ARCHITECTURE.md): the library stores skills as relocatable assembly and
links them when a layout places them (a layout is per task and length), instead of storing
cells.
"""

from algind_gym.skills.builtin import builtin_library
from algind_gym.skills.compose import Composition, Step, Temp
from algind_gym.skills.image import (
    BINDING_FAULT,
    Buffer,
    ExecResult,
    MachineImage,
    build_image,
    resolve_backend,
    run_skill,
)
from algind_gym.skills.library import LibraryFormatError, Skill, SkillLibrary
from algind_gym.skills.signature import ArgSpec, accepts

__all__ = [
    "BINDING_FAULT",
    "ArgSpec",
    "Buffer",
    "Composition",
    "ExecResult",
    "LibraryFormatError",
    "MachineImage",
    "Skill",
    "SkillLibrary",
    "Step",
    "Temp",
    "accepts",
    "build_image",
    "builtin_library",
    "resolve_backend",
    "run_skill",
]
