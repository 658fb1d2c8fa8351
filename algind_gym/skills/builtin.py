"""The built-in library: atomic skills (``asm/*.asm``) and combinators.

Only what the built-in curriculum needs (:mod:`algind_gym.tasks.curriculum`) plus the
weighted ``linear`` layer that the Jacobian machinery is demonstrated and checked on:

* scalar arithmetic and comparisons: ``s_add s_sub s_mul s_div s_max s_min s_neg s_lt s_le
  s_eq`` (``s_add s_sub s_mul s_max s_min s_neg`` carry elementwise Jacobian code);
* memory and index skills: ``copy len iota gather scatter transpose``;
* ``linear`` (weights ``[W | b]``, Jacobian with respect to them);
* combinators (:mod:`algind_gym.skills.combinators`): ``map zipmap mapc fold reduce scan
  map_rows outer mapv repeat``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from algind_gym.skills.combinators import builtin_combinators
from algind_gym.skills.library import SkillLibrary

# name -> (description, roles, jacobian); the source is asm/<name>.asm
ATOMIC: dict[str, tuple[str, dict[str, str], str | None]] = {
    "s_add": ("Add two scalars: out = a + b.", {}, "elementwise"),
    "s_sub": ("Subtract two scalars: out = a - b.", {}, "elementwise"),
    "s_mul": ("Multiply two scalars: out = a * b.", {}, "elementwise"),
    "s_div": ("Divide two scalars: out = a / b (faults on division by zero).", {}, None),
    "s_max": ("Maximum of two scalars: out = max(a, b).", {}, "elementwise"),
    "s_min": ("Minimum of two scalars: out = min(a, b).", {}, "elementwise"),
    "s_neg": ("Negate a scalar: out = -x.", {}, "elementwise"),
    "s_lt": ("Compare two scalars: out = 1 if a < b else 0.", {}, None),
    "s_le": ("Compare two scalars: out = 1 if a <= b else 0.", {}, None),
    "s_eq": ("Test two scalars for equality: out = 1 if a == b else 0.", {}, None),
    "copy": ("Copy a vector: out[i] = x[i].", {}, None),
    "len": ("Number of elements of a vector (rows * cols): out = len(x).", {}, None),
    "iota": ("Fill a vector with its indices: out[i] = i.", {}, None),
    "gather": ("Gather by index: out[i] = x[idx[i]].", {}, None),
    "scatter": ("Scatter by index: out[idx[i]] = x[i].", {}, None),
    "transpose": ("Transpose a matrix: out[j, i] = M[i, j].", {}, None),
    "linear": (
        "Linear layer with weights [W | b] (m x (n+1)): out = W x + b; its Jacobian entry "
        "writes d out / d weights.",
        {},
        "weights",
    ),
}


def atomic_source(name: str) -> str:
    """The assembly text of built-in atomic skill ``name``."""
    return resources.files("algind_gym.skills").joinpath("asm").joinpath(f"{name}.asm").read_text()


@cache
def _builtin() -> SkillLibrary:
    lib = SkillLibrary()
    for name, (desc, roles, jac) in ATOMIC.items():
        lib.add_assembly(atomic_source(name), description=desc, roles=roles, jacobian=jac)
    for c in builtin_combinators():
        lib.add_assembly(
            c.source,
            description=c.description,
            roles={a: r for a, _, r in c.args},
            types={a: t for a, t, _ in c.args},
            jacobian=c.jacobian,
            kind="combinator",
        )
    return lib


def builtin_library() -> SkillLibrary:
    """A fresh copy of the built-in library (atomic skills and combinators).

    Example:
        >>> lib = builtin_library()
        >>> lib.get("zipmap").signature
        'zipmap(f: skill(scalar,scalar,scalar), x: vector, y: vector) -> out: vector'
    """
    return _builtin().copy()
