r"""Checkers for the exercises of notebook 09 (secure aggregation).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`masked_inputs`
    ``fn(x, seeds, *, modulus_bits)``: every party's input behind its pairwise masks (Bonawitz et al.
    2017), :math:`y_u = x_u + \sum_{v>u}\mathrm{PRG}(s_{uv}) - \sum_{v<u}\mathrm{PRG}(s_{uv}) \bmod 2^k`,
    with ``x`` the encoded inputs (n, d), ``seeds[u, v]`` (u < v) the 32-byte seed pair (u, v) agreed
    on and :math:`\mathrm{PRG}` :func:`fl_helpers.secagg.prg`. Compared with the same sum written here;
    the mirror convention (the larger index adds) passes too, since its masks cancel as well. A wrong
    answer is diagnosed: no masks, masks that do not cancel, values not reduced mod :math:`2^k`.
:func:`min_modulus_bits`
    ``fn(bound, n_parties, scale_bits)``: the smallest ``modulus_bits`` :math:`k` for which
    :func:`fl_helpers.secagg.encode` accepts every update with entries in ``[-bound, bound]`` from
    ``n_parties`` parties, so that their sum cannot wrap mod :math:`2^k`. The checker finds it by asking
    the library (every :math:`k` from 2 to 64), independently of the closed form
    :math:`k = \mathrm{bitlength}(n\,\mathrm{round}(B\,2^f)) + 1`.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_secagg.py``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from types import MappingProxyType

import numpy as np

from ..secagg import encode, prg
from ._common import CheckResult, no_answer

# --------------------------------------------------------------------------- pairwise masks

#: The cases of :func:`masked_inputs`: (parties n, coordinates d, modulus bits k); n = 2 first.
MASK_CASES = ((2, 6, 16), (3, 8, 64), (4, 10, 32), (5, 7, 12))


def _mask_cases():
    """``(x, seeds, k)``: encoded inputs (read-only uint64, below 2^k) and a seed per pair u < v."""
    rng = np.random.default_rng(909)
    cases = []
    for n, d, k in MASK_CASES:
        x = rng.integers(0, 2**k, size=(n, d), dtype=np.uint64)
        x.setflags(write=False)
        seeds = MappingProxyType({(u, v): rng.bytes(32) for u in range(n) for v in range(u + 1, n)})
        cases.append((x, seeds, k))
    return cases


def _pair_masks(seeds, n: int, d: int, k: int, *, sign_low: int = 1, sign_high: int = -1) -> list[list[int]]:
    """Each party's sum of pairwise masks as Python integers mod 2^k: the lower index of a pair adds
    ``sign_low`` times the pair's PRG output, the higher ``sign_high`` times (the module: +1 and -1)."""
    out = [[0] * d for _ in range(n)]
    for (u, v), seed in seeds.items():
        mask = [int(m) for m in prg(seed, d, modulus_bits=k)]
        for j in range(d):
            out[u][j] += sign_low * mask[j]
            out[v][j] += sign_high * mask[j]
    return [[value % 2**k for value in row] for row in out]


def _as_integers(got, shape) -> tuple[list[list[int]] | None, str]:
    """The student's answer as a list of rows of Python integers, or None and why not ("float": it was floats)."""
    try:
        arr = got if isinstance(got, np.ndarray) else np.asarray(got, dtype=object)   # big Python ints stay exact
    except Exception as exc:  # an odd object
        return None, f"could not read the answer as an array ({type(exc).__name__})"
    if arr.shape != shape:
        return None, f"expected shape {shape}, got {arr.shape}"
    values, floats = [], False
    for v in arr.ravel().tolist():
        if isinstance(v, bool):
            return None, "expected integers, got booleans"
        if isinstance(v, numbers.Integral):
            values.append(int(v))
        elif isinstance(v, numbers.Real) and math.isfinite(v) and v == int(v):
            values.append(int(v))
            floats = True
        else:
            return None, f"expected integers, got {v!r}"
    d = shape[1]
    return [values[i:i + d] for i in range(0, len(values), d)], "float" if floats else ""


def masked_inputs(fn: Callable) -> CheckResult:
    r"""Check ``fn(x, seeds, *, modulus_bits)``: every party's input plus its pairwise masks, mod :math:`2^k`.

    ``x`` (n, d) uint64 holds the encoded inputs (values below :math:`2^k`); ``seeds`` maps each pair
    ``(u, v)``, ``u < v``, to the 32 bytes both parties agreed on. Party ``u`` adds
    ``secagg.prg(seeds[u, v], d, modulus_bits=k)`` for every ``v > u`` and subtracts it for every
    ``v < u``; the answer (n, d) holds integers in :math:`[0, 2^k)`.
    """
    name = "masked_inputs"
    hint = ("For each pair u < v: m = secagg.prg(seeds[u, v], d, modulus_bits=k); party u adds m, party v "
            "subtracts the same m. Work in uint64 (it wraps mod 2^64, hence mod 2^k once you reduce) and "
            "reduce at the end: y & np.uint64(2**k - 1), or y % 2**k with Python integers.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    mirrored = 0
    for case, (x, seeds, k) in enumerate(_mask_cases(), start=1):
        n, d = x.shape
        try:
            got = fn(x, seeds, modulus_bits=k)
        except NotImplementedError:
            return no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}) raised {type(exc).__name__}: {exc}",
                               hint)
        y, how = _as_integers(got, (n, d))
        if y is None:
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): {how}", hint)
        if how == "float" and k > 52:
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): the answer is float64, which holds "
                               "integers exactly only below 2^53",
                               "Keep the masked values as integers (uint64, or Python int): a float64 rounds "
                               "a 64-bit value and the masks no longer cancel exactly.")
        xs = [[int(v) for v in row] for row in x]
        flat = [v for row in y for v in row]
        if any(v < 0 or v >= 2**k for v in flat):
            specific = ("Reduce mod 2^k: with k < 64 the sum of uint64 values runs past 2^k (and a uint64 "
                        "subtraction wraps to just below 2^64); take y & np.uint64(2**k - 1) at the end.")
            if any(v < 0 for v in flat):
                specific = ("Negative values: subtracting in signed integers gives them. Arithmetic mod 2^k "
                            "needs results in [0, 2^k): reduce with % 2**k (Python integers) or work in uint64 "
                            "and mask with & np.uint64(2**k - 1).")
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): values must lie in [0, 2^{k}), "
                               f"got {min(flat)} to {max(flat)}", specific)
        want = [[(a + m) % 2**k for a, m in zip(xr, mr, strict=True)]
                for xr, mr in zip(xs, _pair_masks(seeds, n, d, k), strict=True)]
        if y == want:
            continue
        mirror = [[(a + m) % 2**k for a, m in zip(xr, mr, strict=True)]
                  for xr, mr in zip(xs, _pair_masks(seeds, n, d, k, sign_low=-1, sign_high=1), strict=True)]
        if y == mirror:
            mirrored += 1
            continue
        if y == xs:
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): these are the inputs, unmasked",
                               "Each party must add its pairwise masks to x_u, so that the server sees only "
                               "y_u; unmasked inputs 'cancel' trivially but hide nothing.")
        cancels = [sum(col) % 2**k for col in zip(*y, strict=True)] == \
            [sum(col) % 2**k for col in zip(*xs, strict=True)]
        if not cancels:
            added = [[(a + m) % 2**k for a, m in zip(xr, mr, strict=True)]
                     for xr, mr in zip(xs, _pair_masks(seeds, n, d, k, sign_high=1), strict=True)]
            upper = [[(a + m) % 2**k for a, m in zip(xr, mr, strict=True)]
                     for xr, mr in zip(xs, _pair_masks(seeds, n, d, k, sign_high=0), strict=True)]
            if y == added:
                specific = ("Both parties of a pair added the mask, so the sum holds 2 PRG(s_uv) per pair. One "
                            "must add and the other subtract the same vector: then they cancel.")
            elif y == upper:
                specific = ("You added the masks of the pairs (u, v) with v > u but forgot the pairs with v < u: "
                            "there party u subtracts PRG(s_vu). Every pair appears in two parties' sums.")
            else:
                specific = ("Your masks do not cancel: sum_u y_u differs from sum_u x_u mod 2^k. Every pair's "
                            "PRG output must be added by exactly one party of the pair and subtracted by the "
                            "other.")
            return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): the masks do not cancel in the sum",
                               specific)
        return CheckResult(name, False, f"case {case} (n = {n}, k = {k}): the masks cancel, but they are not "
                           "the pairs' PRG outputs",
                           "Expand each pair's own seed: secagg.prg(seeds[u, v], d, modulus_bits=k), the same "
                           "seed for both parties of the pair, a different one for every pair.")
    which = "the larger index adds (the module: the smaller)" if mirrored else "the smaller index of a pair adds"
    return CheckResult(name, True, f"all {len(MASK_CASES)} cases (n = 2 to 5 parties, k = 12 to 64) agree; {which}, "
                       "and in each the masks cancel: sum_u y_u = sum_u x_u mod 2^k")


# --------------------------------------------------------------------------- choosing k


#: The cases of :func:`min_modulus_bits`: (bound B, parties n, scale bits f), all with B >= 1 (so k >= f + 2,
#: as the library requires). Case 3 has n round(B 2^f) = 2^18 exactly, after two cases that are not powers of
#: two (so a missing sign bit is caught, and named, before the boundary case); case 6 rounds B 2^f.
BITS_CASES = ((3.0, 3, 8), (1.25, 3, 8), (1.0, 4, 16), (100.0, 1000, 16), (2.5, 100, 20), (1.3, 7, 10),
              (1.0, 1, 0), (1000.0, 2**10, 16))


def library_min_bits(bound: float, n_parties: int, scale_bits: int) -> int:
    """The smallest k in 2..64 for which ``secagg.encode`` accepts ``[bound, -bound]`` from ``n_parties``."""
    for k in range(2, 65):
        try:
            encode(np.array([bound, -bound]), scale_bits=scale_bits, modulus_bits=k, n_parties=n_parties)
        except ValueError:
            continue
        return k
    raise ValueError(f"no modulus_bits up to 64 fits bound={bound}, n_parties={n_parties}, scale_bits={scale_bits}")


def min_modulus_bits(fn: Callable) -> CheckResult:
    r"""Check ``fn(bound, n_parties, scale_bits)``: the smallest ``modulus_bits`` whose sum cannot wrap.

    With :math:`M = \mathrm{round}(B\,2^f)` the largest encoded magnitude, the library needs
    :math:`n M < 2^{k-1}` (two's complement in :math:`k` bits holds :math:`(-2^{k-1}, 2^{k-1})`).
    """
    name = "min_modulus_bits"
    hint = ("The largest encoded magnitude is M = round(B 2^f); n of them sum to at most n M, and k bits of "
            "two's complement hold the integers strictly between -2^(k-1) and 2^(k-1). Find the smallest k "
            "with n M < 2^(k-1); Python's int.bit_length() counts the bits of n M.")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    for case, (bound, n, f) in enumerate(BITS_CASES, start=1):
        label = f"case {case} (bound {bound:g}, {n} parties, scale_bits {f})"
        try:
            got = fn(bound, n, f)
        except NotImplementedError:
            return no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"{label} raised {type(exc).__name__}: {exc}", hint)
        if isinstance(got, np.ndarray) and got.ndim == 0:           # a 0-d array holding the answer
            got = got.item()
        whole = isinstance(got, numbers.Integral) and not isinstance(got, (bool, np.bool_))
        if not whole and isinstance(got, numbers.Real) and not isinstance(got, (bool, np.bool_)):
            whole = math.isfinite(got) and got == int(got)
        if not whole:
            return CheckResult(name, False, f"{label}: expected a whole number of bits, got {got!r}", hint)
        got = int(got)
        want = library_min_bits(bound, n, f)
        if got == want:
            continue
        M = int(np.rint(bound * 2.0**f))
        total = n * M
        if got < want:
            tried = f"with k = {got}, secagg.encode rejects an update of magnitude {bound:g}"
            if n > 1 and got == M.bit_length() + 1:
                specific = ("You sized k for one party's value: the server adds n of them, so the sum reaches "
                            "n round(B 2^f). Multiply by n_parties before counting bits.")
            elif got == want - 1 and total & (total - 1) == 0:
                specific = (f"Here n round(B 2^f) = {total} = 2^{total.bit_length() - 1} exactly. The condition is "
                            "strict, n M < 2^(k-1): ceil(log2(n M)) + 1 is one bit short when n M is a power "
                            "of two. int.bit_length() avoids the boundary case.")
            elif got == want - 1:
                specific = ("One bit short: the sign bit. In two's complement k bits hold (-2^(k-1), 2^(k-1)), so "
                            "n M must stay below 2^(k-1), not 2^k.")
            else:
                specific = hint
            return CheckResult(name, False, f"{label}: {got} bits are too few ({tried})", specific)
        return CheckResult(name, False, f"{label}: {got} bits work, but fewer do too; the smallest is asked",
                           "Count the bits of the product n round(B 2^f), not of each factor apart: "
                           "ceil(log2 n) + ceil(log2 B) + f can exceed the bits of the product by one or "
                           "more. (n M).bit_length() + 1 is exact.")
    return CheckResult(name, True, f"all {len(BITS_CASES)} cases agree with the library (the smallest k for which "
                       "secagg.encode accepts updates of magnitude bound from n_parties parties)")
