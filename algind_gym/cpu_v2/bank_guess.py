"""A step bank's count found from a guess: what the generated kernel knows of a bank's
thresholds at build time.

A step bank (:class:`~algind_gym.cpu_v2.sparse.SparseBlock` with ``bank``) has units ``m =
0..n-1`` with thresholds ``b1[m]`` and a STEP_GE or STEP_GT activation each; on input ``s``
the kernels find its count, the number of leading units whose probe

    ``P(m)``: ``z > 0 or (z == 0 and unit m is STEP_GE)`` with ``z = s + b1[m]``

holds, by binary search (:func:`count`, the loop of :mod:`algind_gym.cpu_v2.kernel` and of
:func:`algind_gym.cpu_v2.abstract.bank_output`), and add the prefix-sum row of that count.

When the probe is *monotone* (for every ``s``: true on a prefix of the units, false after),
the binary search returns the unique ``c`` in ``0..n`` with ``P(c-1)`` true (or ``c == 0``)
and ``P(c)`` false (or ``c == n``), so any search that checks those two probes gives the same
count. :func:`monotone` proves it from the thresholds in the state's dtype: they are finite
and non-increasing, and within a run of equal thresholds no STEP_GT unit precedes a STEP_GE
one. Why that suffices, in IEEE arithmetic (round to nearest, no flush to zero; numba
compiles without fastmath): for finite ``s``, rounding is monotone, so ``b1[m+1] <= b1[m]``
gives ``z[m+1] <= z[m]``; if ``P(m+1)`` holds then ``z[m] > 0``, or ``z[m] == z[m+1] == 0``,
and a sum of two finite floats is zero only when they are opposite, so ``b1[m] == b1[m+1]``
and unit ``m`` is STEP_GE (the tie rule): ``P(m)`` holds. For ``s`` infinite every ``z`` is
``s``; for ``s`` NaN every probe is false.

:func:`line` fits, at build time, a slope and intercept ``(a, c)`` such that
``trunc(a * s + c)`` (clamped to ``0..n``, :func:`guess`) is the count for most ``s`` in the
thresholds' range: on the address decoders of the compiled circuit (thresholds ``0, 0, -1,
-1, ...``: a STEP_GE and a STEP_GT unit per address), every integer and half-integer ``s``.
The generated kernel computes the guess, checks its two probes and, if either fails (a guess
is only a guess) or the bank is not monotone, runs the binary search: the count is exact
whatever the guess.
"""

from __future__ import annotations

import numpy as np

from algind_gym.cpu_v2.sparse import STEP_GE


def probe(s, b1, ge, m: int) -> bool:
    """``P(m)`` on input ``s`` (``b1``: thresholds in the dtype of ``s``; ``ge``: STEP_GE
    flags)."""
    with np.errstate(all="ignore"):  # inf + -inf is NaN, as in the kernels
        z = s + b1[m]
    return bool(z > 0 or (z == 0 and ge[m]))


def count(s, b1, ge) -> int:
    """The kernels' binary search: the count of the bank on input ``s``."""
    lo, hi = 0, len(b1)
    while lo < hi:
        mid = (lo + hi) // 2
        if probe(s, b1, ge, mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


def thresholds(b, dt) -> tuple[np.ndarray, np.ndarray]:
    """``(b1, ge)`` of bank ``b`` in dtype ``dt``."""
    b1 = np.asarray([u.b1 for u in b.units], np.dtype(dt))
    ge = np.asarray([u.act == STEP_GE for u in b.units], bool)
    return b1, ge


def monotone(b1: np.ndarray, ge: np.ndarray) -> bool:
    """Whether the probe is true on a prefix of the units for every input (see the module
    docstring): finite, non-increasing thresholds, no STEP_GT before a STEP_GE among equal
    ones."""
    if not len(b1):
        return True
    if not np.all(np.isfinite(b1)):
        return False
    same = b1[1:] == b1[:-1]
    return bool(np.all(b1[1:] <= b1[:-1]) and not np.any(same & ~ge[:-1] & ge[1:]))


def guess(s, a, c, n: int) -> int:
    """The generated kernel's guess of the count: ``trunc(a * s + c)`` clamped to ``0..n``
    (0 for NaN)."""
    t = a * s + c
    if not t >= 0:
        return 0
    if t >= n:
        return n
    return int(t)


def line(b1: np.ndarray, ge: np.ndarray) -> tuple[float, float]:
    """A slope and intercept ``(a, c)`` for :func:`guess` (see the module docstring): the
    pair of a few slopes and intercepts that makes the most guesses exact at the thresholds
    and halfway between them (in the dtype of ``b1``)."""
    n = len(b1)
    if n == 0 or not np.all(np.isfinite(b1)):  # not monotone: the guess is not used
        return 0.0, 0.0
    edges = np.unique(-b1.astype(np.float64))
    samples = np.concatenate([edges, (edges[1:] + edges[:-1]) / 2, [edges[0] - 1, edges[-1] + 1]])
    samples = samples.astype(b1.dtype)
    counts = np.asarray([count(s, b1, ge) for s in samples])
    span = edges[-1] - edges[0]
    # Slopes tried: the one joining the counts at the first and the last threshold, the
    # units per threshold span, and their integers.
    slopes = {0.0}
    if span > 0:
        for a in (float(counts[len(edges) - 1] - counts[0]) / span, (n - 1) / span):
            slopes |= {a, float(round(a))}
    x = samples.astype(np.float64)
    best, hits = (0.0, 0.0), -1
    for a in sorted(slopes):
        for c in np.unique(counts + 0.5 - a * x):
            t = a * x + c
            got = np.where(t >= 0, np.minimum(np.trunc(np.where(t >= 0, t, 0)), n), 0)
            n_hit = int(np.sum(got == counts))
            if n_hit > hits:
                best, hits = (a, float(c)), n_hit
    return best
