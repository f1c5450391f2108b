r"""Hospitals: the diabetes patients spread over hospitals of very different sizes and case mixes.

Notebook 14's case study. The 442 patients of the diabetes data (Efron, Hastie, Johnstone and
Tibshirani 2004, "Least Angle Regression"; ``data/diabetes.md``) are shared out over six
hospitals (:data:`HOSPITALS`): one large general hospital, two medium ones and three tiny ones,
and a patient's age and body-mass index make some hospitals likelier than others (**covariate
shift**: the hospitals see different parts of feature space, the disease follows the same
biology everywhere).

The assignment (:func:`assign_patients`)
    With :math:`a_j` and :math:`b_j` patient :math:`j`'s age and BMI standardised over all 442
    patients, hospital :math:`k` has the pulls :math:`(\alpha_k, \beta_k)` and prefers patient
    :math:`j` with weight :math:`w_{kj} = \exp(\alpha_k a_j + \beta_k b_j)`. The hospitals take
    their patients one after the other, smallest first: hospital :math:`k` draws its
    :math:`n_k` patients without replacement from those still unassigned, with probabilities
    proportional to :math:`w_{kj}` (``numpy.random.Generator.choice``). The largest hospital
    comes last and takes everyone left. Then each hospital keeps ``round(test_fraction * n_k)``
    of its patients, drawn at random, as its held-out **test** part; the rest is its
    **training** part. The assignment draws from ``numpy.random.default_rng(seed)``, the test
    parts from ``numpy.random.default_rng([seed, 1])``.

Federated standardisation (:func:`local_sums`, :func:`federated_moments`)
    A federation cannot standardise with the pooled mean and standard deviation without
    computing them: each hospital sends :math:`m_i`, :math:`s_i = \sum_j x_j` and
    :math:`q_i = \sum_j x_j^2` of its training part (per feature) and the server forms
    :math:`\mu = \frac1M\sum_i s_i`, :math:`\sigma^2 = \frac1M\sum_i q_i - \mu^2` (notebook 02).

Personalisation (:func:`fine_tuning_curve`)
    The test error of each hospital's copy of a model after 0, 1, ..., ``epochs`` epochs of local
    gradient descent on its own training part (Wang et al. 2019, "Federated Evaluation of
    On-device Personalization"; Yu, Bagdasaryan and Shmatikov 2020, "Salvaging Federated Learning
    by Local Adaptation").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import validation as valid
from .data import load_dataset
from .linear import mse
from .parties import Party, check_parties


@dataclass(frozen=True)
class Profile:
    """A hospital's name, number of patients and pulls on standardised age and BMI."""

    name: str
    patients: int
    age: float = 0.0
    bmi: float = 0.0


#: The six hospitals of notebook 14, in display order (sizes add up to the 442 patients).
HOSPITALS = (
    Profile("city general", 200),                       # large, takes everyone left
    Profile("district", 90, age=0.7),                   # medium, an older population
    Profile("young adults clinic", 70, age=-1.5),       # medium, young patients
    Profile("bariatric centre", 40, bmi=2.0),           # small, high BMI
    Profile("rural practice", 22, age=1.5),             # tiny, old patients
    Profile("sports clinic", 20, bmi=-1.5),             # tiny, low BMI
)


@dataclass(frozen=True)
class Hospital:
    """One hospital's patients: raw (unstandardised) training and test parts.

    ``train`` and ``test`` hold the row indices of its patients in the diabetes data.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)


def _profiles(profiles) -> tuple[Profile, ...]:
    if not isinstance(profiles, Sequence) or not profiles or not all(isinstance(p, Profile) for p in profiles):
        raise TypeError(f"profiles must be a non-empty sequence of hospitals.Profile, got {profiles!r}")
    for p in profiles:
        valid.integer(f"patients of {p.name!r}", p.patients, minimum=1)
        for pull in ("age", "bmi"):
            if not np.isfinite(getattr(p, pull)):
                raise ValueError(f"the {pull} pull of {p.name!r} must be a finite number, got {getattr(p, pull)!r}")
    return tuple(profiles)


def assign_patients(age, bmi, profiles: Sequence[Profile] = HOSPITALS, *, seed: int | None) -> list[np.ndarray]:
    r"""Row indices of each hospital's patients (the module docstring's assignment, before train/test).

    Parameters
    ----------
    age, bmi : array, shape (m,)
        The patients' (raw) age and BMI; standardised here over all ``m`` patients.
    profiles : sequence of Profile
        The hospitals; their ``patients`` must add up to ``m``.
    seed : int or None

    Returns
    -------
    list of ndarray
        ``parts[k]``: the sorted indices of hospital ``k``'s patients, ``len(parts[k]) ==
        profiles[k].patients``, disjoint, together ``0 .. m - 1``.
    """
    profiles = _profiles(profiles)
    age = valid.as_vector(age, name="age")
    bmi = valid.as_vector(bmi, name="bmi")
    if age.shape != bmi.shape:
        raise ValueError(f"age and bmi must have the same length, got {age.size} and {bmi.size}")
    total = sum(p.patients for p in profiles)
    if total != age.size:
        raise ValueError(f"the profiles' patients must add up to the {age.size} patients, got {total}")
    z = np.column_stack([(v - v.mean()) / (v.std() if v.std() > 0 else 1.0) for v in (age, bmi)])
    rng = np.random.default_rng(valid.seed(seed))
    order = np.argsort([p.patients for p in profiles], kind="stable")      # smallest first
    left = np.arange(age.size)
    parts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(profiles)
    for k in order[:-1]:
        logits = z[left] @ np.array([profiles[k].age, profiles[k].bmi])
        w = np.exp(logits - logits.max())
        chosen = rng.choice(left.size, size=profiles[k].patients, replace=False, p=w / w.sum())
        parts[k] = np.sort(left[chosen])
        left = np.delete(left, chosen)
    parts[order[-1]] = left                                                  # the largest takes the rest
    return parts


def load_hospitals(*, seed: int | None, test_fraction: float = 0.3,
                   profiles: Sequence[Profile] = HOSPITALS) -> list[Hospital]:
    """The diabetes patients in :data:`HOSPITALS` (or ``profiles``), each with a training and a test part.

    Parameters
    ----------
    seed : int or None
        Draws the assignment and the test parts; the same seed gives the same hospitals.
    test_fraction : float in (0, 1)
        Share of each hospital's patients held out for testing (``round(test_fraction * n_k)``,
        at least one patient in each part).

    Returns
    -------
    list of Hospital
        Raw features, in the order of ``profiles``.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.floating)):
        raise TypeError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    profiles = _profiles(profiles)
    if min(p.patients for p in profiles) < 2:
        raise ValueError(f"every hospital needs at least 2 patients (one to train, one to test), got "
                         f"{min(p.patients for p in profiles)}")
    X, y, names = load_dataset("diabetes")
    parts = assign_patients(X[:, names.index("age")], X[:, names.index("bmi")], profiles, seed=seed)
    seed = valid.seed(seed)
    rng = np.random.default_rng(None if seed is None else [seed, 1])       # the test draws: a stream of their own
    out = []
    for profile, idx in zip(profiles, parts, strict=True):
        n_test = min(max(1, int(round(test_fraction * idx.size))), idx.size - 1)
        held = np.zeros(idx.size, dtype=bool)
        held[rng.choice(idx.size, size=n_test, replace=False)] = True
        tr, te = idx[~held], idx[held]
        out.append(Hospital(profile.name, X[tr], y[tr], X[te], y[te], tr, te))
    return out


def local_sums(X) -> tuple[int, np.ndarray, np.ndarray]:
    r"""What a hospital sends for federated standardisation: :math:`(m_i, s_i, q_i)`.

    :math:`s_i = \sum_j x_j` and :math:`q_i = \sum_j x_j^2`, per feature, over its rows ``X``.
    """
    X = valid.features(X)
    return X.shape[0], X.sum(axis=0), (X ** 2).sum(axis=0)


def federated_moments(sums: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
    r"""The pooled mean and standard deviation from the hospitals' :func:`local_sums`.

    :math:`\mu = \frac1M\sum_i s_i`, :math:`\sigma = \sqrt{\frac1M\sum_i q_i - \mu^2}` with
    :math:`M = \sum_i m_i`: numpy's ``mean`` and ``std`` (``ddof=0``) of the stacked rows, in the
    features' own units. (Negative rounding error in :math:`\sigma^2` is clipped to 0.)

    Parameters
    ----------
    sums : sequence of (int, array (d,), array (d,))
        One ``(m_i, s_i, q_i)`` per hospital, ``m_i >= 0``, ``M >= 1``.

    Returns
    -------
    mu, sigma : ndarray, shape (d,)
    """
    if isinstance(sums, (str, bytes)) or not isinstance(sums, Sequence) or len(sums) == 0:
        raise ValueError(f"sums must be a non-empty list of (m_i, s_i, q_i) from local_sums, got {sums!r}")
    ms, ss, qs = [], [], []
    for i, entry in enumerate(sums):
        if not isinstance(entry, (tuple, list)) or len(entry) != 3:
            raise ValueError(f"sums[{i}] must be a triple (m_i, s_i, q_i) from local_sums, got {entry!r}")
        ms.append(valid.integer(f"sums[{i}][0] (m_i)", entry[0], minimum=0))
        ss.append(valid.as_vector(entry[1], name=f"sums[{i}][1] (s_i)"))
        qs.append(valid.as_vector(entry[2], name=f"sums[{i}][2] (q_i)"))
        if ss[-1].shape != ss[0].shape or qs[-1].shape != ss[0].shape:
            raise ValueError(f"every s_i and q_i must have the shape of sums[0][1], {ss[0].shape}, got "
                             f"{ss[-1].shape} and {qs[-1].shape} in sums[{i}]")
    M = sum(ms)
    if M < 1:
        raise ValueError(f"the hospitals' counts m_i must add up to at least 1, got {M}")
    mu = sum(ss) / M
    var = sum(qs) / M - mu ** 2
    return mu, np.sqrt(np.maximum(var, 0.0))


def standardised(hospitals: Sequence[Hospital], mu, sigma) -> tuple[list[Party], list[tuple]]:
    """Each hospital's training part as a :class:`Party` and its test part ``(X, y)``, standardised.

    Both parts use the same ``mu`` and ``sigma`` (the federation's, from :func:`federated_moments`).
    """
    mu, sigma = valid.as_vector(mu, name="mu"), valid.as_vector(sigma, name="sigma")
    d = {h.X_train.shape[1] for h in hospitals}
    if len(d) != 1 or mu.shape != sigma.shape or mu.size not in d:
        raise ValueError(f"mu and sigma must have one entry per feature ({sorted(d)}), got {mu.size} and {sigma.size}")
    if np.any(sigma <= 0):
        raise ValueError(f"sigma must be positive in every feature, got {float(sigma.min())!r}")
    parties = [Party((h.X_train - mu) / sigma, h.y_train, name=h.name) for h in hospitals]
    tests = [((h.X_test - mu) / sigma, h.y_test) for h in hospitals]
    return parties, tests


def federation(*, seed: int | None, test_fraction: float = 0.3,
               profiles: Sequence[Profile] = HOSPITALS) -> tuple[list[Party], list[tuple]]:
    """:func:`load_hospitals`, standardised with the federated moments of the training parts.

    The whole pipeline of notebook 14 in one call: each hospital's :func:`local_sums` of its
    training part, :func:`federated_moments`, then :func:`standardised`. Returns ``(parties, tests)``.
    """
    hospitals = load_hospitals(seed=seed, test_fraction=test_fraction, profiles=profiles)
    mu, sigma = federated_moments([local_sums(h.X_train) for h in hospitals])
    return standardised(hospitals, mu, sigma)


def site_effect(parties: Sequence[Party], tests: Sequence, offsets) -> tuple[list[Party], list[tuple]]:
    """Copies of the parties and test parts with ``offsets[i]`` added to hospital ``i``'s targets.

    A simulated **site effect** (concept shift): hospital ``i`` scores the outcome on a scale of its
    own, shifted by ``offsets[i]`` for the same patient, in its training and test parts alike.
    """
    parties = check_parties(parties)
    offsets = valid.as_vector(offsets, name="offsets")
    if offsets.size != len(parties) or len(tests) != len(parties):
        raise ValueError(f"offsets and tests must hold one entry per party ({len(parties)}), got "
                         f"{offsets.size} offsets and {len(tests)} tests")
    shifted = [Party(p.data[0], p.data[1] + o, model=p.model, name=p.name)
               for p, o in zip(parties, offsets, strict=True)]
    return shifted, [(X, np.asarray(y) + o) for (X, y), o in zip(tests, offsets, strict=True)]


def fine_tuning_curve(parties: Sequence[Party], theta, tests: Sequence, *, lr, epochs: int) -> np.ndarray:
    r"""Test MSE of each party's fine-tuned copy of ``theta`` after 0, 1, ..., ``epochs`` epochs.

    For linear-regression parties (the test error is :func:`fl_helpers.linear.mse`, in squared units
    of the target). Party :math:`i` runs full-batch gradient descent on its own training data,
    :math:`\theta_i \leftarrow \theta_i - \eta\nabla L_i(\theta_i)` from :math:`\theta_i = \theta`
    (what :func:`fl_helpers.cases.personalise` does with ``batch_size=None``), and after each
    epoch measures the mean squared error on its test part ``tests[i] = (X_i, y_i)``.

    Returns
    -------
    ndarray, shape (epochs + 1, N)
        Row 0 is ``theta`` itself.
    """
    parties = check_parties(parties)
    epochs = valid.integer("epochs", epochs, minimum=0)
    lr = valid.positive_float("lr", lr)
    if len(tests) != len(parties):
        raise ValueError(f"tests must hold one (X, y) per party ({len(parties)}), got {len(tests)}")
    theta = valid.theta(theta, parties[0].n_features + 1, name="theta")
    out = np.empty((epochs + 1, len(parties)))
    for i, (party, (X, y)) in enumerate(zip(parties, tests, strict=True)):
        X = valid.features(X, name=f"tests[{i}][0]")
        y = valid.targets(y, X.shape[0], name=f"tests[{i}][1]", x_name=f"tests[{i}][0]")
        if X.shape[1] != party.n_features:
            raise ValueError(f"tests[{i}][0] must have the {party.n_features} features of party {i}, "
                             f"got {X.shape[1]}")
        local = theta.copy()
        out[0, i] = mse(local, X, y)
        for e in range(1, epochs + 1):
            local = local - lr * party.gradient(local)
            out[e, i] = mse(local, X, y)
    return out


def rounds_to_target(losses, target: float) -> int | None:
    """The first round whose loss is at most ``target`` (0: the start), or None if none is.

    ``losses`` is a history's ``losses`` (index ``t``: after ``t`` rounds) or any 1-D sequence; NaN
    entries (a diverged run) never count as reaching the target.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float, np.integer, np.floating)) \
            or not np.isfinite(target):
        raise ValueError(f"target must be a finite number, got {target!r}")
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"losses must be a 1-D sequence (one loss per round), got shape {losses.shape}")
    hit = np.flatnonzero(losses <= target)
    return int(hit[0]) if hit.size else None
