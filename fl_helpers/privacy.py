r"""Privacy, measured: what one gradient gives away, and what differential privacy costs.

The source article says that sharing gradients instead of data protects
privacy. :func:`leak_sample` shows in one line of algebra that it does not:
the gradient of a generalised linear model on a single sample *is* the sample,
up to a scale the server can undo.

- Linear regression: :math:`g = 2r\,[1, x]` with the residual
  :math:`r = \theta_0 + x\theta_{1:} - y`, so :math:`x = g_{1:}/g_0` and
  :math:`y = \theta_0 + x\theta_{1:} - g_0/2`.
- Logistic regression: :math:`g = (\sigma(z) - y)\,[1, x]`, so again
  :math:`x = g_{1:}/g_0`, and :math:`y = 1` exactly when :math:`g_0 < 0`.
- Softmax regression: :math:`G = [1, x]^\top(p - e_y)`, :math:`(d + 1) \times K`.
  Its intercept row :math:`p - e_y` is negative in one column only, the
  label's (Zhao, Mopuri and Bilen 2020, "iDLG: Improved Deep Leakage from
  Gradients"), and every column is :math:`(p_c - [c = y])\,[1, x]`, so
  :math:`x = G_{1:, c}/G_{0, c}` for any column.

For a batch of :math:`m > 1` samples the same formula returns
:math:`\sum_j r_j x_j / \sum_j r_j` (linear): a residual-weighted mix of the
samples, not one of them (``tests/test_privacy.py`` checks both).

:func:`epsilon` and :func:`noise_multiplier` turn DP-FedAvg's knobs into a
privacy guarantee with Google's ``dp-accounting`` package (imported when
called): the Gaussian mechanism with noise multiplier :math:`z`, Poisson
sampling of parties with probability :math:`q`, composed over the rounds,
accounted with Rényi DP (Mironov 2017) or privacy loss distributions.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from dataclasses import dataclass

import numpy as np

from . import validation as valid

#: Accountants of :func:`epsilon`: Rényi DP, and privacy loss distributions (tighter, slower).
ACCOUNTANTS = ("rdp", "pld")


def _glm(model):
    if getattr(model, "link", None) not in ("identity", "sigmoid", "softmax"):
        raise TypeError(f"model must be models.linear, models.logistic or models.softmax(...) (closed-form "
                        f"leakage; use an iterative attack for other models), got {model!r}")
    return model


def leak_sample(gradient, theta, *, model):
    r"""The single sample ``(x, y)`` behind ``gradient``, one party's gradient at ``theta`` (see the module docstring).

    Parameters
    ----------
    gradient, theta : array, shape (p,)
        The observed gradient of the party's loss and the model it was computed at
        (the server knows both: it broadcast ``theta``).
    model : models.linear, models.logistic or models.softmax(...)

    Returns
    -------
    x : ndarray, shape (d,)
    y : float (linear) or int (a class label)

    Raises ``ValueError`` when the gradient is zero in the entries the formula
    divides by: the model already fits that sample exactly, and nothing of
    ``x`` can be read off (the server learns only that).
    """
    model = _glm(model)
    theta = valid.as_vector(theta, name="theta")
    g = valid.as_vector(gradient, name="gradient")
    if g.shape != theta.shape:
        raise ValueError(f"gradient must have the shape of theta {theta.shape}, got {g.shape}")
    if model.link == "softmax" and model.n_classes is None:
        raise ValueError("model must say its n_classes for leak_sample (models.softmax(n_classes=K)), got None")
    K = model.n_classes if model.link == "softmax" else 1
    if len(theta) % K != 0 or len(theta) // K < 2:
        raise ValueError(f"theta must hold (d + 1) * {K} numbers with d >= 1, got {len(theta)}")
    p = len(theta) // K
    G = g.reshape(p, K).copy()
    Theta = theta.reshape(p, K)
    if model.l2 != 0.0:                                   # the server knows theta, so it removes l2 W
        G[1:] -= model.l2 * Theta[1:]
    if model.link == "softmax":
        column = int(np.argmax(np.abs(G[0])))
        if G[0, column] == 0.0:
            raise ValueError("the gradient's intercept row is zero: the model fits this sample exactly, "
                             "so x cannot be read off")
        x = G[1:, column] / G[0, column]
        return x, int(np.argmin(G[0]))
    g0 = G[0, 0]
    if g0 == 0.0:
        raise ValueError("the gradient is zero: the model fits this sample exactly, so x cannot be read off")
    x = G[1:, 0] / g0
    if model.link == "sigmoid":
        return x, int(g0 < 0)
    return x, float(Theta[0, 0] + x @ Theta[1:, 0] - g0 / model.scale)


@contextlib.contextmanager
def _quiet_accountant():
    """dp-accounting logs (via absl) each Rényi order it drops as not converging; those are not errors."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _event(noise_multiplier, sample_rate, rounds):
    import dp_accounting as dpa

    step = dpa.GaussianDpEvent(noise_multiplier)
    if sample_rate < 1.0:
        step = dpa.PoissonSampledDpEvent(sample_rate, step)
    return dpa.SelfComposedDpEvent(step, rounds)


def _accountant(name: str):
    if name == "rdp":
        from dp_accounting import rdp

        return rdp.RdpAccountant()
    from dp_accounting.pld import pld_privacy_accountant

    return pld_privacy_accountant.PLDAccountant()


def _check(noise_multiplier, sample_rate, rounds, delta, accountant):
    valid.choice("accountant", accountant, ACCOUNTANTS)
    z = valid.positive_float("noise_multiplier", noise_multiplier) if noise_multiplier is not None else None
    q = valid.positive_float("sample_rate", sample_rate)
    if q > 1.0:
        raise ValueError(f"sample_rate must be a probability in (0, 1], got {sample_rate!r}")
    rounds = valid.integer("rounds", rounds, minimum=1)
    delta = valid.positive_float("delta", delta)
    if delta >= 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    return z, q, rounds, delta


def epsilon(noise_multiplier, sample_rate, rounds, delta, *, accountant="rdp") -> float:
    r""":math:`\varepsilon` after ``rounds`` Gaussian rounds (noise multiplier :math:`z`, sampling rate :math:`q`).

    The guarantee of DP-FedAvg at the level of a *party* (all of its data):
    each round every party takes part with probability ``sample_rate``, its
    update is clipped to norm :math:`S`, and the server adds
    :math:`\mathcal N(0, z^2S^2)` to the sum. ``accountant="rdp"`` (Rényi DP)
    or ``"pld"`` (privacy loss distributions, tighter), both from
    ``dp-accounting``.
    """
    z, q, rounds, delta = _check(noise_multiplier, sample_rate, rounds, delta, accountant)
    acc = _accountant(accountant)
    with _quiet_accountant():
        acc.compose(_event(z, q, rounds))
        return float(acc.get_epsilon(delta))


def noise_multiplier(target_epsilon, sample_rate, rounds, delta, *, accountant="rdp") -> float:
    r"""The smallest noise multiplier :math:`z` whose :func:`epsilon` is at most ``target_epsilon``.

    Calibrated by ``dp_accounting.calibrate_dp_mechanism``: a bisection on
    :math:`z` to an absolute tolerance of 1e-5, returning the upper end, so
    the guarantee holds.
    """
    import dp_accounting as dpa

    target = valid.positive_float("target_epsilon", target_epsilon)
    _, q, rounds, delta = _check(None, sample_rate, rounds, delta, accountant)
    with _quiet_accountant():
        return float(dpa.calibrate_dp_mechanism(
            lambda: _accountant(accountant), lambda z: _event(z, q, rounds), target, delta,
            bracket_interval=dpa.LowerEndpointAndGuess(1e-3, 1.0), tol=1e-5))


# --------------------------------------------------------------------------- Deep leakage from gradients

@dataclass(frozen=True)
class Reconstruction:
    """What :func:`dlg` recovered from one gradient.

    ``x`` (m, d) and ``labels`` (m,) are the dummy samples, in no particular order (match them to the originals with
    :func:`reconstruction_error`): the inputs of the step with the smallest
    squared distance ``distance`` between their gradient and the observed
    one; ``distances`` is that distance at steps 0, 100, 200, ...
    """

    x: np.ndarray
    labels: np.ndarray
    distance: float
    distances: np.ndarray


def _keras_classifier(model):
    from .models.keras import KerasModel

    if not isinstance(model, KerasModel):
        raise TypeError(f"model must be a models.keras(...) classifier (use leak_sample for the closed-form "
                        f"models), got {model!r}")
    net = model.model
    if len(net.outputs) != 1 or net.outputs[0].shape[-1] < 2 or len(net.inputs[0].shape) != 2:
        raise ValueError("model must map (m, d) inputs to (m, K) class probabilities, K >= 2, for dlg")
    return net


def _observed(gradient, theta, model):
    theta = valid.as_vector(theta, name="theta")
    g = valid.as_vector(gradient, name="gradient")
    n = model.n_params()
    if theta.shape != (n,):
        raise ValueError(f"theta must hold the model's {n} parameters, got shape {theta.shape}")
    if g.shape != (n,):
        raise ValueError(f"gradient must have the shape of theta ({n},), got {g.shape}")
    return g, theta


def infer_labels(gradient, theta, *, model, batch_size, seed=None) -> np.ndarray:
    r"""The labels of a batch, read off the gradient of the output layer's bias (iDLG, extended to batches).

    For a softmax output and the cross-entropy loss, the bias gradient of the
    last layer is :math:`\bar p - n/m`: the mean predicted probabilities
    minus the label counts :math:`n_c` over the batch size :math:`m`. With
    :math:`m = 1` the label is the one negative entry (Zhao, Mopuri and Bilen
    2020). For a batch the attacker estimates :math:`\bar p` by the model's
    mean prediction on random inputs (``seed``) and rounds
    :math:`m(\bar p - g)` to counts that sum to :math:`m` (largest
    remainders). Exact while the model is far from confident, as at the start
    of training; the counts, not the order, come out.
    """
    net = _keras_classifier(model)
    g, theta = _observed(gradient, theta, model)
    m = valid.integer("batch_size", batch_size, minimum=1)
    K = int(net.outputs[0].shape[-1])
    bias = model.unflatten(g)[-1]
    if np.shape(bias) != (K,):
        raise ValueError(f"model's last trainable weight must be the output layer's bias ({K},) to infer labels, "
                         f"got shape {np.shape(bias)}; pass labels= to dlg instead")
    bias = np.asarray(bias, dtype=np.float64)
    if m == 1:
        return np.array([int(np.argmin(bias))])
    d = int(net.inputs[0].shape[-1])
    probe = np.random.default_rng(seed).uniform(0.0, 1.0, size=(64, d))
    p_bar = np.asarray(model.predict(theta, probe), dtype=np.float64).mean(axis=0)
    estimate = np.clip(m * (p_bar - bias), 0.0, None)
    total = estimate.sum()
    # a clean gradient's estimate sums to m; a noisy one need not: rescale (uniform if nothing is left)
    estimate = estimate * (m / total) if total > 0 else np.full(K, m / K)
    counts = np.floor(estimate).astype(np.int64)                 # sums to at most m
    order = np.argsort(-(estimate - counts), kind="stable")      # the largest remainders get one more
    counts[order[:m - counts.sum()]] += 1
    labels = np.repeat(np.arange(K), counts)
    assert len(labels) == m
    return labels


def dlg(gradient, theta, *, model, batch_size, labels="infer", steps=2000, lr=0.1, bounds=(0.0, 1.0),
        seed=None) -> Reconstruction:
    r"""Deep leakage from gradients (Zhu, Liu and Han 2019): find a batch whose gradient is the observed one.

    The server knows ``theta`` (it broadcast it) and receives a party's
    ``gradient`` of the mean loss over a batch of ``batch_size`` samples. It
    starts from random dummy inputs :math:`\hat X` (uniform in ``bounds``,
    from ``seed``) and minimises

    .. math:: D(\hat X) = \lVert \nabla_\theta L(\theta; \hat X, \hat y) - g \rVert^2

    with Adam (step ``lr``, ``steps`` steps), keeping :math:`\hat X` in
    ``bounds`` (the attacker knows pixels lie in [0, 1]; ``None``: no
    bounds). Differentiating :math:`D` needs the gradient of a gradient:
    two nested ``tf.GradientTape``\ s. Labels :math:`\hat y` are fixed first,
    from the last layer's bias gradient (:func:`infer_labels`, the iDLG
    trick: Zhu et al. optimised soft labels jointly, which often stalls), or
    given as ``labels``. The paper's networks used sigmoids, which are twice
    differentiable everywhere; ReLU networks leak too (their first layer's
    gradient is the input times the back-propagated error).
    """
    from .tf_env import import_tensorflow

    net = _keras_classifier(model)
    g, theta = _observed(gradient, theta, model)
    m = valid.integer("batch_size", batch_size, minimum=1)
    steps = valid.integer("steps", steps, minimum=1)
    lr = valid.positive_float("lr", lr)
    if bounds is not None:
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"bounds must be (low, high), two finite numbers with low < high, or None, "
                             f"got {bounds!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds must be (low, high), two finite numbers with low < high, or None, "
                             f"got {bounds!r}")
        bounds = (lo, hi)
    if isinstance(labels, str) and labels == "infer":
        y_hat = infer_labels(g, theta, model=model, batch_size=m, seed=seed)
    else:
        y_hat = np.asarray(labels)
        if y_hat.shape != (m,) or not np.issubdtype(y_hat.dtype, np.integer):
            raise ValueError(f"labels must be 'infer' or {m} integer class labels, got {labels!r}")
        K = int(net.outputs[0].shape[-1])
        if y_hat.min() < 0 or y_hat.max() >= K:
            raise ValueError(f"labels must be class labels in 0..{K - 1}, got {labels!r}")
    tf = import_tensorflow()
    state = model._state()
    key = ("dlg", m, None if bounds is None else (lo, hi))
    if key not in state:                          # traced once per model, batch size and bounds
        state[key] = _DlgProgram(net, model.loss_name, m, state["dtype"], bounds)
    program = state[key]
    state["predict"](tf.constant(theta, state["dtype"]), tf.zeros([1, net.inputs[0].shape[-1]], state["dtype"]))
    low, high = bounds if bounds is not None else (0.0, 1.0)
    x0 = np.random.default_rng(seed).uniform(low, high, size=(m, net.inputs[0].shape[-1]))
    program.reset(x0, model.unflatten(g), y_hat, lr)
    distances = []
    for start in range(0, steps, 100):            # D at steps 0, 100, 200, ...
        distances.append(float(program.step()))
        program.run(tf.constant(min(100, steps - start) - 1))
    return Reconstruction(x=program.best_x.numpy().astype(np.float64), labels=y_hat.astype(np.int64),
                          distance=float(program.best.numpy()), distances=np.array(distances))


class _DlgProgram:
    r"""DLG's compiled search for one model, batch size and bounds; :meth:`reset` starts a new attack.

    Everything an attack changes (dummy inputs, observed gradient, labels,
    Adam's state and step size, the best point so far) lives in variables,
    so the two ``tf.function``\ s are traced once and reused.
    """

    def __init__(self, net, loss_name, m, dtype, bounds):
        from .tf_env import import_keras, import_tensorflow

        tf, keras = import_tensorflow(), import_keras()
        per_sample = keras.losses.get(loss_name) if isinstance(loss_name, str) else loss_name
        variables = list(net.trainable_variables)
        d = net.inputs[0].shape[-1]
        self.x_hat = tf.Variable(tf.zeros([m, d], dtype))
        self.best_x = tf.Variable(tf.zeros([m, d], dtype))
        self.best = tf.Variable(tf.constant(np.inf, dtype))
        self.labels = tf.Variable(tf.zeros([m], dtype))
        self.target = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.optimizer = keras.optimizers.Adam(0.1)
        self.optimizer.build([self.x_hat])
        x_hat, best_x, best, labels, target, optimizer = (self.x_hat, self.best_x, self.best, self.labels,
                                                          self.target, self.optimizer)

        @tf.function
        def step():                               # D at the current inputs, then one Adam step
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = tf.reduce_mean(per_sample(labels, net(x_hat, training=True)))
                dummy = inner.gradient(loss, variables)
                distance = tf.add_n([tf.reduce_sum(tf.square(a - b)) for a, b in zip(dummy, target, strict=True)])
            if distance < best:                   # Adam with a fixed step bounces near the end: keep the best
                best.assign(distance)
                best_x.assign(x_hat)
            optimizer.apply_gradients([(outer.gradient(distance, x_hat), x_hat)])
            if bounds is not None:
                x_hat.assign(tf.clip_by_value(x_hat, bounds[0], bounds[1]))
            return distance

        @tf.function
        def run(n):                               # n steps in one graph call
            for _ in tf.range(n):
                step()

        self.step, self.run = step, run

    def reset(self, x0, target, labels, lr) -> None:
        self.x_hat.assign(x0)
        self.best_x.assign(x0)
        self.best.assign(np.inf)
        self.labels.assign(np.asarray(labels, dtype=self.labels.dtype.as_numpy_dtype))
        for var, piece in zip(self.target, target, strict=True):
            var.assign(piece)
        for var in self.optimizer.variables:      # Adam's moments and step count back to zero
            var.assign(np.zeros(var.shape, dtype=var.dtype))
        self.optimizer.learning_rate = lr


def best_pairing(original, recovered) -> np.ndarray:
    """For each row of ``original``, the row of ``recovered`` paired with it, one to one, minimising the total error.

    The recovered batch of :func:`dlg` comes in no particular order. Up to 8
    rows every permutation is tried (the optimum); beyond, rows are paired
    greedily, closest pair first (which can only overstate the total error).
    """
    a = valid.features(original, name="original")
    b = np.asarray(recovered, dtype=np.float64)
    if b.shape != a.shape:
        raise ValueError(f"recovered must have the shape of original {a.shape}, got {b.shape}")
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)         # cost[i, j]: original i vs recovered j
    m = len(a)
    if m <= 8:
        perms = np.array(list(itertools.permutations(range(m))))
        return perms[np.argmin(cost[np.arange(m), perms].sum(axis=1))]
    pairing, free_i, free_j = np.empty(m, dtype=np.int64), set(range(m)), set(range(m))
    for flat in np.argsort(cost, axis=None, kind="stable"):
        i, j = divmod(int(flat), m)
        if i in free_i and j in free_j:
            pairing[i] = j
            free_i.discard(i)
            free_j.discard(j)
    return pairing


def reconstruction_error(original, recovered) -> np.ndarray:
    """Per-sample mean squared error between ``original`` rows and their :func:`best_pairing` partners.

    Returned in ``original``'s order.
    """
    a = valid.features(original, name="original")
    pairing = best_pairing(a, recovered)
    return ((a - np.asarray(recovered, dtype=np.float64)[pairing]) ** 2).mean(axis=1)


# --------------------------------------------------------------------------- DP-FedAvg

class Clip:
    r"""Client transform: scale the update to L2 norm at most ``clip_norm`` (on the party's side).

    :math:`\Delta_i \leftarrow \Delta_i \min(1, S / \lVert\Delta_i\rVert)`. ``Delta_i`` is the
    pseudo-gradient a party sends; the model change it stands for is :math:`\eta\Delta_i`.
    """

    #: Clipping draws no random numbers: ``train`` passes ``rng=None`` and builds no generators for it.
    #: Declared on this class only: a subclass gets a generator unless it says ``uses_rng = False`` too.
    uses_rng = False

    def __init__(self, clip_norm: float):
        self.clip_norm = valid.positive_float("clip_norm", clip_norm)
        self.clipped = self.seen = 0

    def __repr__(self) -> str:
        return f"Clip(clip_norm={self.clip_norm!r})"

    def __call__(self, update, *, party, round, rng):
        norm = float(np.linalg.norm(update))
        self.seen += 1
        if norm > self.clip_norm:
            self.clipped += 1
            return update * (self.clip_norm / norm)
        return update


class LocalGaussian(Clip):
    r"""Client transform of *local* DP: clip to ``clip_norm``, then the party adds noise itself.

    The party trusts nobody, so its released update must hide its whole data:
    two datasets may give any two clipped updates, at distance up to
    :math:`2S`, and the noise is :math:`\mathcal N(0, (2zS)^2 I)` from the
    party's own stream. Each release is then the Gaussian mechanism with noise
    multiplier ``noise_multiplier`` :math:`z`; over the rounds a party takes
    part in, :func:`epsilon` with ``sample_rate=1`` gives its guarantee (the
    server sees who takes part, so sampling amplifies nothing).
    """

    uses_rng = True

    def __init__(self, clip_norm: float, noise_multiplier: float):
        super().__init__(clip_norm)
        self.noise_multiplier = valid.positive_float("noise_multiplier", noise_multiplier)

    def __repr__(self) -> str:
        return f"LocalGaussian(clip_norm={self.clip_norm!r}, noise_multiplier={self.noise_multiplier!r})"

    def __call__(self, update, *, party, round, rng):
        clipped = super().__call__(update, party=party, round=round, rng=rng)
        return clipped + rng.normal(0.0, 2.0 * self.noise_multiplier * self.clip_norm, size=np.shape(clipped))


class GaussianSum:
    r"""Aggregator of DP-FedAvg: the sum of the clipped updates plus :math:`\mathcal N(0, z^2S^2 I)`, over :math:`qN`.

    McMahan, Ramage, Talwar and Zhang (2018), "Learning Differentially Private
    Recurrent Language Models": every party counts the same (one user, one
    vote; the weights are ignored), and the sum is divided by the *expected*
    number of participants ``expected_parties`` :math:`= qN`, a fixed
    denominator, so that one party's presence changes the sum by at most
    :math:`S` whatever the others do. The noise comes from the round's
    aggregate stream, and is added even in a round nobody took part in.
    """

    #: ``train`` calls this aggregator in rounds nobody joined too: their noise is part of the guarantee.
    handles_empty_rounds = True

    def __init__(self, clip_norm: float, noise_multiplier: float, expected_parties: float):
        self.clip_norm = valid.positive_float("clip_norm", clip_norm)
        self.noise_multiplier = valid.positive_float("noise_multiplier", noise_multiplier, allow_zero=True)
        self.expected_parties = valid.positive_float("expected_parties", expected_parties)

    def __repr__(self) -> str:
        return (f"GaussianSum(clip_norm={self.clip_norm!r}, noise_multiplier={self.noise_multiplier!r}, "
                f"expected_parties={self.expected_parties!r})")

    def __call__(self, updates, weights, *, rng) -> np.ndarray:
        updates = np.asarray(updates, dtype=np.float64)         # (k, p); k = 0 in a round nobody joined
        if updates.ndim != 2:
            raise ValueError(f"updates must be a (k, p) array, one row per party, got shape {updates.shape}")
        norms = np.linalg.norm(updates, axis=1)
        if np.any(norms > self.clip_norm * (1 + 1e-9)):
            raise ValueError(f"updates must be clipped to norm {self.clip_norm} before GaussianSum (use Clip as the "
                             f"client_transform), got a norm of {norms.max():.6g}")
        noise = rng.normal(0.0, self.noise_multiplier * self.clip_norm, size=updates.shape[1])
        return (updates.sum(axis=0) + noise) / self.expected_parties


class Epsilon:
    """Per-round metric: epsilon (at ``delta``) after the rounds so far.

    With ``accountant="rdp"`` the Rényi DP of one round is computed once
    (the slow part, about 0.1 s) and, since RDP adds up over rounds, round
    :math:`t`'s epsilon is dp-accounting's conversion of :math:`t` times it.
    With ``"pld"`` one accountant is composed round by round.
    """

    def __init__(self, noise_multiplier, sample_rate, delta, *, accountant="rdp"):
        self.z, self.q, _, self.delta = _check(noise_multiplier, sample_rate, 1, delta, accountant)
        self.name = accountant
        self._acc = self._one_round = None
        self._rounds = 0                                   # rounds composed into self._acc (PLD)

    def __call__(self, info) -> float:
        with _quiet_accountant():
            if self.name == "rdp":
                from dp_accounting.rdp import rdp_privacy_accountant as rdp

                if self._one_round is None:
                    acc = _accountant("rdp")
                    acc.compose(_event(self.z, self.q, 1))
                    self._one_round = (np.asarray(acc._orders), np.asarray(acc._rdp))   # RDP of one round
                orders, per_round = self._one_round
                return float(rdp.compute_epsilon(orders, info.round * per_round, self.delta)[0])
            if self._acc is None or info.round <= self._rounds:   # a new run (or an earlier round): start over
                self._acc, self._rounds = _accountant(self.name), 0
            self._acc.compose(_event(self.z, self.q, info.round - self._rounds))
            self._rounds = info.round
            return float(self._acc.get_epsilon(self.delta))


def dp_fedavg(parties, *, lr, rounds, clip_norm, noise_multiplier, sample_rate, delta=1e-5, local_epochs=1,
              batch_size=None, theta0=None, seed=None, engine="loop", accountant="rdp", eval_data=None, **hooks):
    r"""DP-FedAvg (McMahan et al. 2018) with user-level :math:`(\varepsilon, \delta)` in ``History.metrics["epsilon"]``.

    Each round every party takes part with probability ``sample_rate``
    (:math:`q`, Poisson sampling), trains as in FedAvg, clips its update to
    norm ``clip_norm`` (:math:`S`, :class:`Clip`, on its side); the server adds
    :math:`\mathcal N(0, z^2S^2 I)` to the sum and divides by :math:`qN`
    (:class:`GaussianSum`), then steps as FedAvg does. ``metrics["epsilon"]``
    is :func:`epsilon` after each round (:class:`Epsilon`); with
    ``noise_multiplier=0`` there is no guarantee and no such series.
    """
    from .server import _only_hooks, train

    _only_hooks(hooks)
    taken = sorted(set(hooks) & {"client_transform", "aggregator", "sampling"})
    if taken:
        raise TypeError(f"dp_fedavg sets {', '.join(taken)} itself (clipping, the Gaussian sum, Poisson sampling); "
                        f"use train(...) with privacy.Clip and privacy.GaussianSum to change them")
    q = valid.positive_float("sample_rate", sample_rate)
    if q > 1.0:
        raise ValueError(f"sample_rate must be a probability in (0, 1], got {sample_rate!r}")
    aggregator = GaussianSum(clip_norm, noise_multiplier, q * len(parties))
    metrics = dict(hooks.pop("metrics", None) or {})
    if aggregator.noise_multiplier > 0:
        metrics["epsilon"] = Epsilon(noise_multiplier, q, delta, accountant=accountant)
    return train(parties, lr=lr, rounds=rounds, local_epochs=local_epochs, batch_size=batch_size, fraction=q,
                 sampling="poisson", weighting="uniform", theta0=theta0, seed=seed, engine=engine,
                 client_transform=Clip(clip_norm), aggregator=aggregator, metrics=metrics,
                 eval_data=eval_data, **hooks)
