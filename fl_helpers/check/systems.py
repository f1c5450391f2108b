r"""Checkers for the exercises of notebook 11 (communication and systems).

Each returns a :class:`~fl_helpers.check.CheckResult` that prints ``PASS ...``
or ``FAIL ... Hint: ...`` and never raises because of the student's code.

:func:`topk_sparsify`
    ``fn(x, k) -> (values, indices)``: the ``k`` entries of largest magnitude
    :math:`|x_j|` of a float64 vector ``x`` of length :math:`p` (the parameters), as the signed
    values in float32 and their positions in the smallest unsigned integer
    dtype that holds :math:`p - 1` (uint8 up to :math:`p = 256`, uint16 up to
    65 536, then uint32). Any order, as long as ``values[q]`` is ``x[indices[q]]``.
    The bytes sent are ``values.nbytes + indices.nbytes``
    :math:`= k\,(4 + b_{\text{index}})`, what :class:`fl_helpers.compression.TopK`
    sends. The cases have no ties in :math:`|x_j|`.
:func:`fedasync_schedule`
    Two lists for :data:`FEDASYNC_EXERCISE`: the staleness :math:`\tau` of the
    first server updates of FedAsync and their mixing weights
    :math:`\alpha_t = \alpha\,(1 + \tau)^{-a}`, compared with a run of
    :func:`fl_helpers.systems.fedasync` on that clock.

The reference solutions and the wrong answers each checker must reject live in
``tests/test_check_systems.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._common import CheckResult, no_answer, read_only

#: The FedAsync exercise: seconds of every job of each party (download, training, upload), the
#: mixing alpha, the polynomial staleness exponent a, and how many server updates to list.
FEDASYNC_EXERCISE = {"job_seconds": (1.0, 2.4, 3.7), "mixing": 0.6, "a": 0.5, "updates": 8}


# --------------------------------------------------------------------------- top-k

def _index_bytes(p: int) -> int:
    """Bytes of the smallest unsigned integer that holds ``p - 1`` (written out, not the library's)."""
    for width in (1, 2, 4, 8):
        if p - 1 < 256 ** width:
            return width
    raise ValueError(p)


def _topk_cases():
    """``(x, k)``: one small vector by hand, then the index-width edges (256 / 257) and a long one."""
    rng = np.random.default_rng(1111)
    cases = [(np.array([0.5, -3.0, 0.1, 2.0, -0.2, 0.0, 1.5, -1.0, 0.3, 0.7]), 3)]
    for p, k in ((256, 10), (257, 10), (650, 65), (70_000, 7)):
        x = rng.normal(size=p)
        x[-1] = -10.0 * np.abs(x).max()          # the last index is kept: p - 1 must fit the index dtype
        x[0] = 9.0 * np.abs(x[1:-1]).max()       # a large positive entry too
        cases.append((x, k))
    return [(read_only(x, dtype=np.float64)[0], k) for x, k in cases]


def _top(x, k):
    """Positions of the ``k`` largest ``|x|`` (the cases have no ties)."""
    return np.sort(np.argsort(-np.abs(x), kind="stable")[:k])


def topk_sparsify(fn: Callable) -> CheckResult:
    r"""Check ``fn(x, k) -> (values, indices)``: top-k by magnitude, float32 values, smallest unsigned indices."""
    name = "topk_sparsify"
    hint = ("Keep the k entries of largest |x_j| (np.argsort(-np.abs(x))[:k]); send their signed values "
            "x[idx] as float32 and idx as the smallest unsigned dtype that holds p − 1 (uint8 for p ≤ 256, "
            "uint16 for p ≤ 65,536, else uint32).")
    if not callable(fn):
        return CheckResult(name, False, f"expected a function, got {type(fn).__name__}", hint)
    sent = []
    for c, (x, k) in enumerate(_topk_cases(), start=1):
        p = x.size
        where = f"case {c} (p = {p:,}, k = {k})"
        try:
            got = fn(x, k)
        except NotImplementedError:
            return no_answer(name)
        except Exception as exc:  # the student's bug, reported, not raised
            return CheckResult(name, False, f"{where} raised {type(exc).__name__}: {exc}", hint)
        dense = ("You returned a vector of length p: the point is to send only k numbers and their k "
                 "positions, not the dense vector with zeros.")
        try:
            values, indices = got
            values, indices = np.asarray(values), np.asarray(indices)
        except (TypeError, ValueError):
            specific = dense if isinstance(got, np.ndarray) and got.shape == (p,) else None
            return CheckResult(name, False, f"{where}: return a pair (values, indices), got {type(got).__name__}",
                               specific or hint)
        if values.shape != (k,) or indices.shape != (k,):
            specific = dense if (values.shape == (p,) or indices.shape == (p,)) else None
            return CheckResult(name, False, f"{where}: values and indices should each have shape ({k},), got "
                                            f"{values.shape} and {indices.shape}", specific or hint)
        want_idx = _top(x, k)
        width = _index_bytes(p)
        if indices.dtype.kind not in "ui":
            return CheckResult(name, False, f"{where}: indices should be integers, got dtype {indices.dtype}",
                               "Positions are whole numbers: use an unsigned integer dtype. " + hint)
        if indices.dtype.kind == "u" and indices.dtype.itemsize < width:
            return CheckResult(name, False, f"{where}: {indices.dtype} cannot hold the index p − 1 = {p - 1:,}",
                               f"The largest index is p − 1 = {p - 1:,}, which needs "
                               f"uint{8 * width}: an index that does not fit wraps around.")
        got_idx = indices.astype(np.int64)
        if np.any(got_idx < 0) or np.any(got_idx >= p) or len(np.unique(got_idx)) != k:
            return CheckResult(name, False, f"{where}: indices should be k different positions in [0, p)", hint)
        order = np.argsort(got_idx)
        got_idx, got_val = got_idx[order], values[order]
        if not np.array_equal(got_idx, want_idx):
            specific = None
            if np.array_equal(got_idx, np.sort(np.argsort(-x, kind="stable")[:k])):
                specific = ("You kept the k largest *signed* values: a large negative entry matters as much as "
                            "a large positive one. Rank by magnitude, |x_j|.")
            elif np.array_equal(got_idx, np.sort(np.argsort(np.abs(x), kind="stable")[:k])):
                specific = "You kept the k *smallest* magnitudes: keep the largest."
            return CheckResult(name, False, f"{where}: not the positions of the {k} largest |x_j|", specific or hint)
        if values.dtype.kind != "f":
            return CheckResult(name, False, f"{where}: values should be floating-point numbers, got dtype "
                                            f"{values.dtype}", hint)
        if values.dtype.itemsize < 4:
            return CheckResult(name, False, f"{where}: values in {values.dtype} lose precision",
                               "Values go on the wire as float32 (4 bytes each): .astype(np.float32).")
        got_val = got_val.astype(np.float64)
        want_val = x[want_idx].astype(np.float32).astype(np.float64)
        if not np.allclose(got_val, want_val, rtol=1e-6, atol=0.0):
            specific = None
            if np.allclose(got_val, np.abs(want_val), rtol=1e-6):
                specific = "Send the signed values x_j, not |x_j|: the magnitude only chooses which to keep."
            elif np.allclose(np.sort(got_val), np.sort(want_val), rtol=1e-6):
                specific = ("Right values, wrong positions: values[q] must be x[indices[q]] (take both with the "
                            "same index array).")
            return CheckResult(name, False, f"{where}: values[q] should be x[indices[q]]", specific or hint)
        nbytes = int(values.nbytes + indices.nbytes)
        want_bytes = k * (4 + width)
        if nbytes != want_bytes:
            specific = None
            if values.dtype.itemsize != 4:
                specific = (f"Values go on the wire as float32 (4 bytes each), got {values.dtype} "
                            f"({values.dtype.itemsize} bytes): .astype(np.float32).")
            elif indices.dtype.itemsize != width:
                specific = (f"The largest index is p − 1 = {p - 1:,}, which fits uint{8 * width} "
                            f"({width} byte{'s' if width > 1 else ''}); {indices.dtype} spends "
                            f"{indices.dtype.itemsize}.")
            return CheckResult(name, False, f"{where}: {nbytes:,} bytes sent, expected k · (4 + {width}) = "
                                            f"{want_bytes:,}", specific or hint)
        sent.append((p, k, nbytes))
    p, k, nbytes = sent[3]
    return CheckResult(name, True, f"all {len(sent)} cases agree with compression.TopK; p = {p}, k = {k}: "
                                   f"{nbytes} bytes instead of {8 * p:,} (float64)")


# --------------------------------------------------------------------------- FedAsync

def _reference_schedule() -> tuple[np.ndarray, np.ndarray]:
    """Staleness and alpha of the first updates, from a FedAsync run on the exercise's clock."""
    from .. import systems
    from ..parties import Party

    e = FEDASYNC_EXERCISE
    n = len(e["job_seconds"])
    parties = [Party([[float(i)]], [1.0]) for i in range(n)]             # one sample each: job = seconds
    run = systems.fedasync(parties, profile=systems.Clock(list(e["job_seconds"])), lr=0.1, updates=e["updates"],
                           mixing=e["mixing"], staleness="polynomial", a=e["a"])
    return np.concatenate(run.staleness).astype(np.int64), np.asarray(run.metrics["alpha"], dtype=np.float64)


def _numbers(answer, count: int):
    """``answer`` as a float64 vector of ``count`` numbers, or None."""
    try:
        arr = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (count,) and np.all(np.isfinite(arr)) else None


def _arrival_times() -> list[tuple[float, int]]:
    """(time, party) of the first arrivals, every job of a party lasting its job_seconds."""
    e = FEDASYNC_EXERCISE
    times = [(k * s, i) for i, s in enumerate(e["job_seconds"]) for k in range(1, e["updates"] + 1)]
    return sorted(times)[:e["updates"]]


def fedasync_schedule(staleness, alphas) -> CheckResult:
    r"""Check the staleness :math:`\tau` and mixing weights :math:`\alpha_t` of FedAsync's first updates."""
    name = "fedasync_schedule"
    e = FEDASYNC_EXERCISE
    n = e["updates"]
    hint = ("List the arrivals in time order. Update t applies one arrival; its staleness is the number of "
            "server updates applied since that party received its model (the party restarts at once from the "
            "model that includes its own update). Then α_t = α (1 + τ)^(−a).")
    if staleness is None and alphas is None:
        return no_answer(name, "no answer yet: set MY_STALENESS and MY_ALPHAS to lists of "
                               f"{n} numbers (a hint appears after a first wrong attempt)")
    want_tau, want_alpha = _reference_schedule()
    tau = _numbers(staleness, n)
    if tau is None:
        return CheckResult(name, False, f"MY_STALENESS should be a list of {n} numbers, got {staleness!r}", hint)
    if not np.array_equal(tau, want_tau):
        specific = None
        if np.array_equal(tau, want_tau + 1):
            specific = ("Each τ is one too large: a fresh update (no other update applied since the party got "
                        "its model) has τ = 0; do not count the update itself.")
        elif not np.any(tau):
            specific = ("Not every update is fresh: while a slow party trains, faster ones report and the "
                        "server's model moves on.")
        elif not np.allclose(tau, np.round(tau)):
            specific = "τ counts server updates (a whole number), not seconds."
        else:
            arrivals = _arrival_times()
            seconds = np.array([e["job_seconds"][i] for _, i in arrivals])
            if np.allclose(tau, seconds) or np.allclose(tau, [t for t, _ in arrivals]):
                specific = "τ counts server updates, not seconds."
            elif np.array_equal(tau[tau != want_tau], want_tau[tau != want_tau] + 1):
                specific = ("Some τ are one too large: a party restarts from the model *after* its own update, "
                            "so that update does not count against its next job.")
        return CheckResult(name, False, f"MY_STALENESS: {int(np.sum(tau != want_tau))} of {n} values differ",
                           specific or hint)
    alpha = _numbers(alphas, n)
    if alpha is None:
        return CheckResult(name, False, f"MY_ALPHAS should be a list of {n} numbers, got {alphas!r}", hint)
    if not np.allclose(alpha, want_alpha, rtol=1e-6, atol=1e-9):
        specific = None
        if np.allclose(alpha, e["mixing"] / (1 + want_tau), rtol=1e-6):
            specific = f"a = {e['a']}: divide by (1 + τ) to the power {e['a']}, a square root, not by (1 + τ)."
        elif np.allclose(alpha, (1 + want_tau) ** -e["a"], rtol=1e-6):
            specific = f"Multiply the staleness weight by the mixing α = {e['mixing']}."
        elif np.allclose(alpha, e["mixing"], rtol=1e-6):
            specific = "That is α without the staleness weight: α_t = α (1 + τ)^(−a) shrinks for stale updates."
        return CheckResult(name, False, f"MY_ALPHAS: largest difference "
                                        f"{float(np.max(np.abs(alpha - want_alpha))):.3g}", specific or hint)
    return CheckResult(name, True, f"τ = {want_tau.tolist()}; the stalest update (τ = {int(want_tau.max())}) "
                                   f"mixes in with α_t = {want_alpha.min():.4f} instead of {e['mixing']}")
