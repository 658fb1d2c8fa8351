"""`SkillLibrary`: the append-only collection of skills an agent composes.

A :class:`Skill` is immutable: a versioned name (``name@version``), argument signature
(:class:`~algind_gym.skills.signature.ArgSpec`), optional weights type, a natural-language
description (for description-based priors), its assembly source, the skills it depends on
and, for composed skills, the :class:`~algind_gym.skills.compose.Composition` it was
compiled from. Sources are relocatable: a skill is *linked* (addresses resolved) only when
a :class:`~algind_gym.machine.layout.Layout` places it, by :meth:`SkillLibrary.link`.

Invariants:

* append-only: :meth:`SkillLibrary.add_assembly` and :meth:`SkillLibrary.compose` only add;
  adding a name that exists creates the next version, and every existing skill (and every
  composed skill that depends on an old version, which names it by ``name@version``) keeps
  its meaning.
* dependencies always precede dependents, so library order is a valid link order.
* saved as JSON with a format tag and version (never pickle); loading re-validates every
  record, re-parses every source, and checks every dependency is present.

Layout block names are ``name.vN`` (the layout allows dots, not ``@``).
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from algind_gym.atomic import atomic_write_text
from algind_gym.machine.assembler import AssemblyError, ParsedSource, link, parse
from algind_gym.machine.disassembler import disassemble_program
from algind_gym.machine.layout import Layout, SkillBlockSpec
from algind_gym.machine.program import Program
from algind_gym.skills.compose import Composition, Step, Temp, compile_composition
from algind_gym.skills.signature import ArgSpec, base_type, check_name, format_signature

LIBRARY_FORMAT = "algind_gym.SkillLibrary"
LIBRARY_VERSION = 1
KINDS = ("atomic", "combinator", "composed")
JACOBIANS = (None, "weights", "elementwise", "elementwise_if_f")


_LINK_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Per library: linked programs by (layout, skill keys), see :meth:`SkillLibrary.link`."""


def cached_per_library(store: weakref.WeakKeyDictionary, library, key, build, size: int = 64):
    """``build()`` once per (``library``, ``key``), kept in ``store`` (weakly keyed on the
    library, so nothing outlives it or gets pickled with it; at most ``size`` keys per
    library, the oldest dropped first). Safe because skills never change once added."""
    cache = store.setdefault(library, {})
    if key not in cache:
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]


class LibraryFormatError(ValueError):
    """A library file or record that cannot be loaded; the message says what and where."""


@dataclass(frozen=True)
class Skill:
    """One library entry (see the module docstring). Build through :class:`SkillLibrary`."""

    name: str
    version: int
    kind: str
    args: tuple[ArgSpec, ...]
    description: str
    source: str
    weights: str | None = None
    jacobian: str | None = None
    dependencies: tuple[str, ...] = ()
    composition: Composition | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """``name@version``: how other skills and files refer to this exact skill."""
        return f"{self.name}@{self.version}"

    @property
    def block_name(self) -> str:
        """The skill block's name in a layout."""
        return f"{self.name}.v{self.version}"

    @property
    def n_slots(self) -> int:
        """Argument slots plus the weights slot, if any: the length of a binding list."""
        return len(self.args) + (1 if self.weights else 0)

    @property
    def slots(self) -> tuple[ArgSpec, ...]:
        """The argument specs followed by the weights slot (named ``weights``)."""
        w = (ArgSpec("weights", self.weights, "in"),) if self.weights else ()
        return self.args + w

    @property
    def signature(self) -> str:
        return format_signature(self.name, self.args, self.weights)

    @cached_property
    def parsed(self) -> ParsedSource:
        return parse(self.source, self.key)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "description": self.description,
            "args": [a.to_json() for a in self.args],
            "weights": self.weights,
            "jacobian": self.jacobian,
            "dependencies": list(self.dependencies),
            "source": self.source,
            "composition": None if self.composition is None else self.composition.to_json(),
        }


def _split_ref(ref: str) -> tuple[str, int | None]:
    name, sep, ver = ref.partition("@")
    if not sep:
        return name, None
    if not ver.isdigit():
        raise KeyError(f"bad skill reference {ref!r}: expected NAME or NAME@VERSION")
    return name, int(ver)


class SkillLibrary:
    """An append-only, versioned collection of skills.

    Example:
        >>> lib = SkillLibrary()
        >>> sk = lib.add_assembly(
        ...     ".skill twice(x: scalar, out: scalar)\\n load r0, x, 0\\n add r0, r0, r0\\n"
        ...     " store out, 0, r0\\n ret\\n", description="out = 2 x")
        >>> sk.key, sk.signature
        ('twice@1', 'twice(x: scalar) -> out: scalar')
    """

    def __init__(self) -> None:
        self._skills: dict[str, Skill] = {}
        self._latest: dict[str, int] = {}

    # ------------------------------------------------------------- access
    def get(self, ref: str) -> Skill:
        """The skill ``NAME`` (latest version) or ``NAME@VERSION``; ``KeyError`` if absent."""
        name, ver = _split_ref(ref)
        if ver is None:
            ver = self._latest.get(name)
        key = f"{name}@{ver}"
        if ver is None or key not in self._skills:
            raise KeyError(f"no skill {ref!r} in the library; it has {len(self)} skills")
        return self._skills[key]

    def __contains__(self, ref: object) -> bool:
        try:
            self.get(str(ref))
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[Skill]:
        return iter(self._skills.values())

    def __len__(self) -> int:
        return len(self._skills)

    def keys(self) -> list[str]:
        return list(self._skills)

    def latest(self) -> list[Skill]:
        """The newest version of every skill name, in library order."""
        return [s for s in self if self._latest[s.name] == s.version]

    def copy(self) -> SkillLibrary:
        """A new library with the same skills (skills are immutable; nothing is shared mutably)."""
        out = SkillLibrary()
        for s in self:
            out._append(s)
        return out

    # ------------------------------------------------------------- adding
    def _next_version(self, name: str) -> int:
        return self._latest.get(name, 0) + 1

    def _append(self, skill: Skill) -> Skill:
        if skill.key in self._skills:
            raise ValueError(f"skill {skill.key} already exists; the library is append-only")
        for dep in skill.dependencies:
            if dep not in self._skills:
                raise LibraryFormatError(
                    f"skill {skill.key} depends on {dep}, which is not in the library"
                )
        self._skills[skill.key] = skill
        self._latest[skill.name] = max(self._latest.get(skill.name, 0), skill.version)
        return skill

    def add_assembly(
        self,
        source: str,
        *,
        description: str,
        roles: dict[str, str] | None = None,
        types: dict[str, str] | None = None,
        weights: str | None = None,
        jacobian: str | None = None,
        kind: str = "atomic",
    ) -> Skill:
        """Add a skill written in assembly (``.skill NAME(args)`` names it).

        Args:
            source: the assembly text; it may not use ``.data``/``.zero`` (skills own no
                memory: data comes through slots, temporaries through the stack).
            description: one or two sentences, used by description-based priors.
            roles: role per argument name; default: arguments named ``out`` are outputs,
                every other argument is an input.
            types: refined types, e.g. ``{"f": "skill(scalar,scalar)"}`` for a skill argument.
            weights: the weights slot type (``"matrix"`` or ``"vector"``) if the source
                declares ``.weights`` (default ``"matrix"``).
            jacobian: ``"weights"``, ``"elementwise"`` or ``"elementwise_if_f"`` if the source
                has a ``.jacobian`` entry honouring that contract (see
                :mod:`algind_gym.skills.compose`).
            kind: ``"atomic"`` or ``"combinator"``.

        Returns:
            The new skill (version 1, or the next version of an existing name).
        """
        parsed = parse(source, "<skill>")
        name = check_name(parsed.name, "skill name")
        if parsed.data:
            raise ValueError(f"skill {name!r}: .data/.zero are not allowed in library skills")
        if kind not in ("atomic", "combinator"):
            raise ValueError(f"kind must be 'atomic' or 'combinator', got {kind!r}")
        if jacobian not in JACOBIANS:
            raise ValueError(f"jacobian must be one of {JACOBIANS}, got {jacobian!r}")
        if jacobian and parsed.jacobian_label is None:
            raise ValueError(
                f"skill {name!r}: jacobian={jacobian!r} but the source has no .jacobian entry"
            )
        roles, types = roles or {}, types or {}
        declared = [a for a, _ in parsed.args]
        for extra in set(roles) | set(types):
            if extra not in declared:
                raise ValueError(f"skill {name!r}: no argument {extra!r} (arguments: {declared})")
        args = []
        for a, t in parsed.args:
            full = types.get(a, t)
            if base_type(full) != t:
                raise ValueError(
                    f"skill {name!r}: argument {a!r} is declared {t}, refined as {full}"
                )
            args.append(ArgSpec(a, full, roles.get(a, "out" if a == "out" else "in")))
        if parsed.has_weights:
            weights = weights or "matrix"
        elif weights:
            raise ValueError(f"skill {name!r}: weights={weights!r} but the source has no .weights")
        skill = Skill(
            name=name,
            version=self._next_version(name),
            kind=kind,
            args=tuple(args),
            description=description,
            source=source,
            weights=weights,
            jacobian=jacobian,
        )
        return self._append(skill)

    def compose(
        self,
        name: str,
        args: Sequence[ArgSpec | tuple[str, str]],
        steps: Sequence[tuple[str, Sequence]],
        *,
        description: str,
        temps: Sequence[Temp | tuple] = (),
        weights: str | None = None,
        infer_roles: bool | None = None,
    ) -> Skill:
        """Compile a composed program into a new skill whose code CALLs its sub-skills.

        Args:
            name: the new skill's name (an existing name gets the next version).
            args: ``(name, type)`` pairs (roles are inferred from the steps) or
                :class:`ArgSpec` (roles kept as given).
            steps: ``(skill, bindings)`` per step, a binding per slot of the sub-skill:
                an argument or temporary name, ``"weights"``, ``"&skill"`` or a number.
            description: natural-language description.
            temps: :class:`Temp` or ``(name, type, shape)`` tuples.
            weights: type of the new skill's weights slot, if it has one.
            infer_roles: default: infer when ``args`` are tuples.

        Raises:
            ValueError: a type or arity error, naming the step and slot.

        Example:
            >>> from algind_gym.skills.builtin import builtin_library
            >>> lib = builtin_library()
            >>> dot = lib.compose("dot", [("x", "vector"), ("y", "vector"), ("out", "scalar")],
            ...     [("zipmap", ["&s_mul", "x", "y", "t"]), ("fold", ["&s_add", "t", 0, "out"])],
            ...     temps=[("t", "vector", ["x.size"])], description="dot product")
            >>> dot.signature
            'dot(x: vector, y: vector) -> out: scalar'
        """
        arg_specs = tuple(a if isinstance(a, ArgSpec) else ArgSpec(a[0], a[1], "in") for a in args)
        if infer_roles is None:
            infer_roles = not all(isinstance(a, ArgSpec) for a in args)
        comp = Composition(
            args=arg_specs,
            steps=tuple(Step(str(s), tuple(b)) for s, b in steps),
            temps=tuple(t if isinstance(t, Temp) else Temp(t[0], t[1], tuple(t[2])) for t in temps),
            weights=weights,
        )
        compiled = compile_composition(name, comp, self.get, infer_roles=infer_roles)
        comp = Composition(compiled.args, compiled.steps, comp.temps, comp.weights)
        skill = Skill(
            name=name,
            version=self._next_version(name),
            kind="composed",
            args=compiled.args,
            description=description,
            source=compiled.source,
            weights=weights,
            jacobian=compiled.jacobian,
            dependencies=compiled.dependencies,
            composition=comp,
        )
        try:
            skill.parsed  # noqa: B018 - the generated code must assemble
        except AssemblyError as e:  # pragma: no cover - a compiler bug
            raise RuntimeError(f"generated code for {name!r} does not assemble: {e}") from e
        return self._append(skill)

    # ---------------------------------------------------------- dependencies
    def dependencies(self, ref: str, *, recursive: bool = False) -> list[str]:
        """Keys of the skills ``ref`` calls or passes (all transitively if ``recursive``)."""
        skill = self.get(ref)
        if not recursive:
            return list(skill.dependencies)
        seen: dict[str, None] = {}

        def visit(k: str) -> None:
            for d in self._skills[k].dependencies:
                if d not in seen:
                    visit(d)
                    seen[d] = None

        visit(skill.key)
        return list(seen)

    def dependents(self, ref: str) -> list[str]:
        """Keys of the skills that depend directly on ``ref``."""
        key = self.get(ref).key
        return [s.key for s in self if key in s.dependencies]

    def dependency_tree(self, ref: str) -> dict:
        """``{"skill": key, "uses": [subtrees...]}``: the dependency graph below ``ref``."""
        skill = self.get(ref)
        return {"skill": skill.key, "uses": [self.dependency_tree(d) for d in skill.dependencies]}

    def closure(self, refs: Sequence[str]) -> list[str]:
        """``refs`` and everything they depend on, in library (link) order."""
        want: set[str] = set()
        for r in refs:
            k = self.get(r).key
            want.add(k)
            want.update(self.dependencies(k, recursive=True))
        return [k for k in self._skills if k in want]

    # -------------------------------------------------------------- linking
    def block_specs(self, keys: Sequence[str] | None = None) -> tuple[SkillBlockSpec, ...]:
        """Skill block sizes for ``keys`` (default: every skill), for a :class:`Layout`."""
        keys = self.keys() if keys is None else keys
        out = []
        for k in keys:
            s = self._skills[k]
            out.append(SkillBlockSpec(s.block_name, len(s.args), max(s.parsed.code_size, 4)))
        return tuple(out)

    def link(self, layout: Layout, keys: Sequence[str] | None = None) -> dict[str, Program]:
        """Link the skills ``keys`` (default: all) at their blocks in ``layout``.

        Every dependency of a linked skill must be in ``keys`` too. Skills never change once
        added (the library is append-only), so the result is cached per (layout, keys): an
        environment's resets re-link nothing.
        """
        keys = self.keys() if keys is None else list(keys)
        wanted = set(keys)
        order = tuple(k for k in self._skills if k in wanted)
        programs = cached_per_library(
            _LINK_CACHE, self, (layout, order), lambda: self._link(layout, order)
        )
        return dict(programs)

    def _link(self, layout: Layout, order: Sequence[str]) -> dict[str, Program]:
        programs: dict[str, Program] = {}
        for k in order:
            skill = self._skills[k]
            sb = layout.skill(skill.block_name)
            symbols: dict[str, float] = {}
            for j, dep in enumerate(skill.dependencies):
                if dep not in programs:
                    raise KeyError(f"cannot link {k}: dependency {dep} is not in the layout")
                d = self._skills[dep]
                dsb = layout.skill(d.block_name)
                p = programs[dep]
                symbols[f"S{j}.h"] = dsb.header
                symbols[f"S{j}.entry"] = p.entry
                symbols[f"S{j}.jac"] = (
                    layout.trap_address if p.jacobian_entry is None else p.jacobian_entry
                )
                for i in range(d.n_slots):
                    symbols[f"S{j}.slot{i}"] = dsb.slot(i)
            programs[k] = link(
                skill.parsed, layout, code_base=sb.code_start, slot_base=sb.slot(0), symbols=symbols
            )
        return programs

    def disassemble(self, ref: str) -> str:
        """Readable assembly of a skill as linked in a layout holding it and its dependencies.

        Addresses of other skills' entries, headers and slots are named in comments.
        """
        skill = self.get(ref)
        keys = self.closure([skill.key])
        layout = Layout(n_pointers=0, memory_size=0, skill_blocks=self.block_specs(keys))
        programs = self.link(layout, keys)
        names: dict[int, str] = {}
        for k in keys:
            s, p = self._skills[k], programs[k]
            sb = layout.skill(s.block_name)
            names[sb.header] = f"&{k}"
            names[p.entry] = f"{k}.entry"
            if p.jacobian_entry is not None:
                names[p.jacobian_entry] = f"{k}.jacobian"
            if k != skill.key:
                for i, slot in enumerate(s.slots):
                    for f, fname in enumerate(("", ".rows", ".cols", ".type")):
                        names[sb.slot(i) + f] = f"{k}.{slot.name}{fname}"
        text = disassemble_program(programs[skill.key], layout)
        out = []
        for line in text.splitlines():
            parts = line.split()
            hits = []
            if parts and not line.startswith((".", ";")) and not line.endswith(":"):
                for tok in " ".join(parts[1:]).split(","):
                    tok = tok.strip()
                    if tok.lstrip("-").isdigit() and int(tok) in names:
                        hits.append(names[int(tok)])
            out.append(f"{line:<40} ; {', '.join(hits)}" if hits else line)
        return "\n".join(out) + "\n"

    # --------------------------------------------------------- serialisation
    def to_json(self) -> dict:
        return {
            "format": LIBRARY_FORMAT,
            "version": LIBRARY_VERSION,
            "skills": [s.to_json() for s in self],
        }

    @classmethod
    def from_json(cls, data: object, *, origin: str = "<data>") -> SkillLibrary:
        """Rebuild a library, validating every record; raises :class:`LibraryFormatError`."""
        if not isinstance(data, dict) or data.get("format") != LIBRARY_FORMAT:
            raise LibraryFormatError(
                f"{origin}: not a skill library (expected format {LIBRARY_FORMAT!r})"
            )
        if data.get("version") != LIBRARY_VERSION:
            raise LibraryFormatError(
                f"{origin}: skill library format version {data.get('version')!r} is not supported "
                f"(this algind_gym reads version {LIBRARY_VERSION})"
            )
        records = data.get("skills")
        if not isinstance(records, list):
            raise LibraryFormatError(f"{origin}: 'skills' must be a list")
        lib = cls()
        for n, rec in enumerate(records):
            where = f"{origin}: skill #{n}"
            try:
                skill = _skill_from_json(rec)
            except (KeyError, TypeError, ValueError, AssemblyError) as e:
                raise LibraryFormatError(f"{where}: malformed record: {e}") from None
            where = f"{origin}: skill {skill.key}"
            if skill.key in lib._skills:
                raise LibraryFormatError(f"{where}: duplicate skill")
            missing = [d for d in skill.dependencies if d not in lib._skills]
            if missing:
                raise LibraryFormatError(
                    f"{where}: missing sub-skill(s) {missing}; they must appear earlier in the file"
                )
            try:
                parsed = skill.parsed
            except AssemblyError as e:
                raise LibraryFormatError(f"{where}: source does not assemble: {e}") from None
            if parsed.name != skill.name or [a for a, _ in parsed.args] != [
                a.name for a in skill.args
            ]:
                raise LibraryFormatError(
                    f"{where}: source declares {parsed.name}{parsed.args}, record disagrees"
                )
            lib._append(skill)
        return lib

    def save(self, path: str | os.PathLike) -> Path:
        """Write the library as JSON, atomically (temporary file in the same directory, then
        ``os.replace``), so a crash never leaves a half-written file."""
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> SkillLibrary:
        """Read a library written by :meth:`save`; raises :class:`LibraryFormatError`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise LibraryFormatError(f"{path}: not valid JSON ({e})") from None
        return cls.from_json(data, origin=str(path))

    def __repr__(self) -> str:
        return f"SkillLibrary({len(self)} skills)"


def _skill_from_json(rec: dict) -> Skill:
    if not isinstance(rec, dict):
        raise TypeError(f"expected an object, got {type(rec).__name__}")
    expected = {
        "name",
        "version",
        "kind",
        "description",
        "args",
        "weights",
        "jacobian",
        "dependencies",
        "source",
        "composition",
    }
    missing, extra = expected - set(rec), set(rec) - expected
    if missing or extra:
        raise KeyError(f"missing fields {sorted(missing)}, unexpected {sorted(extra)}")
    version = rec["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    if rec["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {rec['kind']!r}")
    if rec["jacobian"] not in JACOBIANS:
        raise ValueError(f"jacobian must be one of {JACOBIANS}, got {rec['jacobian']!r}")
    for f in ("description", "source"):
        if not isinstance(rec[f], str):
            raise TypeError(f"{f} must be a string")
    comp = rec["composition"]
    return Skill(
        name=check_name(rec["name"], "skill name"),
        version=version,
        kind=rec["kind"],
        args=tuple(ArgSpec.from_json(a) for a in rec["args"]),
        description=rec["description"],
        source=rec["source"],
        weights=rec["weights"],
        jacobian=rec["jacobian"],
        dependencies=tuple(str(d) for d in rec["dependencies"]),
        composition=None if comp is None else Composition.from_json(comp),
    )
