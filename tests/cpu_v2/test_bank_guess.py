"""A step bank's count from a guess (``cpu_v2/bank_guess.py``), as the generated kernel
(``cpu_v2/codegen.py``) emits it.

The emitted bank code must give the count of the kernels' binary search for every input,
whatever the guess: on every bank of the compiled circuit at and around each threshold, at
+-0, subnormals, huge values, infinities and NaN, and on random banks, monotone or not.
Each test compiles one small numba function (the bank's lines alone), not the whole
generated kernel.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algind_gym.cpu.fuzz import fuzz_layout
from algind_gym.cpu_v2 import bank_guess, codegen, kernel
from algind_gym.cpu_v2.circuit import compile_circuit
from algind_gym.cpu_v2.codegen_runtime import HEADER, Buffers, Literals, load, module_name
from algind_gym.cpu_v2.sparse import LINEAR, STEP_GE, STEP_GT, SparseBlock, SparseUnit

DTYPES = [np.float32, np.float64]
_FUNCS: dict = {}


def _banks(dtype) -> list[SparseBlock]:
    """Every distinct step bank of the specialised programs on the fuzz layout."""
    progs, _ = kernel.programs(compile_circuit(fuzz_layout(), dtype), dtype)
    seen: dict[int, SparseBlock] = {}
    for prog in progs:
        for la in prog:
            cell = [b for h in la.write if h.cell for b in h.cell]
            for b in (*la.cpu, *cell, *la.cell):
                if b.bank:
                    seen.setdefault(id(b), b)
    return list(seen.values())


def _bank_function(bank: SparseBlock, dtype):
    """``(f, fb, ib, p0)``: ``f(x, fb, ib)`` runs the generated code of ``bank`` (its input
    rewired to ``x[0]``) and returns the prefix row it picks, ``p0 + count * width``."""
    dt = np.dtype(dtype)
    b = dataclasses.replace(bank, bank_w=((0, 1.0),))
    buf = Buffers(dt, 1)
    e = codegen._Emitter(Literals(dt), 0, 1, 1, 1, buf)
    adds = e.bank(1, b, e.x)
    row = re.match(r"_nz\(fb\[(\w+) \+ 0\]\)", adds[0][2]).group(1)  # the prefix row
    header = HEADER.format(dtype=dt.name)
    body = [
        "@numba.njit(**_opts)",
        "def f(x, fb, ib):",
        "    x0 = x[0]",
        *e.lines,
        f"    return {row}",
    ]
    src = "\n".join([f"from {module_name(header)} import *  # noqa: F403", *e.lit.lines, "", *body])
    if src not in _FUNCS:
        _FUNCS[src] = load([header, src]).f
    fb, ib, _ = buf.arrays()
    return _FUNCS[src], fb, ib, int(ib[3])


def _count(f, fb, ib, p0: int, width: int, s, dt) -> int:
    return (int(f(np.asarray([s], dt), fb, ib)) - p0) // width


def _around(b1: np.ndarray, dt) -> np.ndarray:
    """Inputs at, next to and between every threshold, and the special values."""
    dt = np.dtype(dt)
    info = np.finfo(dt)
    edges = np.unique(-b1)
    pos, neg = dt.type(np.inf), dt.type(-np.inf)
    with np.errstate(all="ignore"):  # the largest thresholds' neighbours overflow to inf
        return _specials(edges, pos, neg, info, dt)


def _specials(edges, pos, neg, info, dt) -> np.ndarray:
    vals = [
        edges,
        np.nextafter(edges, pos),
        np.nextafter(edges, neg),
        (edges[1:] + edges[:-1]) / dt.type(2),
        edges + dt.type(0.25),
        edges - dt.type(0.25),
        np.asarray([0.0, -0.0, info.smallest_subnormal, -info.smallest_subnormal], dt),
        np.asarray([info.tiny, -info.tiny, info.tiny - info.smallest_subnormal], dt),
        np.asarray([info.max, -info.max, 1e30, -1e30, np.inf, -np.inf, np.nan], dt),
    ]
    return np.concatenate([np.asarray(v, dt) for v in vals])


@pytest.fixture(scope="module", autouse=True)
def _cache_dir(tmp_path_factory):
    """The small generated modules go to a temporary cache dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALGIND_GYM_CACHE_DIR", str(tmp_path_factory.mktemp("v2_cache")))
        yield


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_compiled_bank_is_monotone_and_its_generated_count_is_the_binary_searchs(dtype):
    dt = np.dtype(dtype)
    banks = _banks(dt)
    assert len(banks) >= 5
    for bank in banks:
        b1, ge = bank_guess.thresholds(bank, dt)
        # The address decoders are monotone, so the guess is used (else it is skipped).
        assert bank_guess.monotone(b1, ge), bank.name
        f, fb, ib, p0 = _bank_function(bank, dt)
        width = len(bank.outs)
        for s in _around(b1, dt):
            want = bank_guess.count(dt.type(0.0) + s, b1, ge)
            got = _count(f, fb, ib, p0, width, s, dt)
            assert got == want, (bank.name, s, got, want)


def _synthetic(b1, ge, dt) -> SparseBlock:
    units = [
        SparseUnit(LINEAR, STEP_GE if g else STEP_GT, float(t), 0.0, ((0, 1.0),), (), ())
        for t, g in zip(b1, ge, strict=True)
    ]
    prefix = np.arange(len(units) + 1, dtype=np.float64)[:, None] + 1.0
    return SparseBlock("bank", "cpu", units, True, ((0, 1.0),), np.asarray([1]), prefix)


def _floats(dt):
    return st.floats(width=np.dtype(dt).itemsize * 8, allow_nan=True, allow_infinity=True)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    sort=st.booleans(),
)
def test_a_random_bank_gives_the_binary_searchs_count_whatever_the_guess(data, dtype, sort):
    dt = np.dtype(dtype)
    small = st.integers(-40, 40).map(lambda v: v / 4)  # ties and near misses
    thr = data.draw(st.lists(st.one_of(small, _floats(dt)), min_size=1, max_size=40))
    b1 = np.asarray(thr, dt)
    ge = np.asarray(data.draw(st.lists(st.booleans(), min_size=len(b1), max_size=len(b1))))
    if sort:  # decreasing thresholds, STEP_GE first among equal ones: monotone if finite
        order = np.lexsort((~ge, -b1.astype(np.float64)))
        b1, ge = b1[order], ge[order]
        if np.all(np.isfinite(b1)):
            assert bank_guess.monotone(b1, ge)
    bank = _synthetic(b1, ge, dt)
    f, fb, ib, p0 = _bank_function(bank, dt)
    inputs = list(_around(b1[np.isfinite(b1)], dt)) + data.draw(st.lists(_floats(dt), max_size=20))
    for s in inputs:
        s = dt.type(s)
        want = bank_guess.count(dt.type(0.0) + s, b1, ge)
        assert _count(f, fb, ib, p0, 1, s, dt) == want, (b1, ge, s)


@pytest.mark.parametrize(
    ("b1", "ge"),
    [
        ([0.0, 0.0], [False, True]),  # a STEP_GT before a STEP_GE on one threshold
        ([-1.0, 1.0], [True, True]),  # increasing
        ([1.0, np.nan, -1.0], [True, True, True]),
        ([np.inf, 0.0], [True, True]),
    ],
)
def test_monotone_rejects_what_the_proof_does_not_cover(b1, ge):
    assert not bank_guess.monotone(np.asarray(b1), np.asarray(ge))


def test_the_guess_is_exact_on_an_address_decoder_at_integers_and_halves():
    # One STEP_GE and one STEP_GT unit per address 0..99, as the compiled decoders.
    b1 = np.repeat(-np.arange(100.0), 2).astype(np.float32)
    ge = np.tile([True, False], 100)
    a, c = bank_guess.line(b1, ge)
    for s in np.arange(-3.0, 103.0, 0.5, dtype=np.float32):
        assert bank_guess.guess(s, a, c, len(b1)) == bank_guess.count(s, b1, ge), s
