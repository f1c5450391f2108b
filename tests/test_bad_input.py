"""Bad input is refused at the public function with a message naming the parameter and the value.

Each case: (id, call, exception type, fragments that must appear in this order in the message).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers.plotting import plot_label_histogram

RNG = np.random.default_rng(0)
X = RNG.standard_normal((10, 3))
Y = RNG.standard_normal(10)
X_NAN = X.copy()
X_NAN[2, 1] = np.nan
Y_INF = Y.copy()
Y_INF[4] = np.inf
PARTY = fl.Party(X, Y)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
LABELED = [fl.Party(X[:4], LABELS[:4]), fl.Party(X[4:], LABELS[4:])]
PARTIES = [fl.Party(X[:4], Y[:4]), fl.Party(X[4:], Y[4:])]
THETA = np.zeros(4)


def case(id_, call, exc, *fragments):
    return pytest.param(call, exc, ".*".join(re.escape(f) for f in fragments), id=id_)


def bad_lr(prefix, call):
    """lr <= 0, NaN, inf -> ValueError; not a real number -> TypeError."""
    return [
        case(f"{prefix}-lr-0", lambda: call(0), ValueError, "lr must be a positive finite number", "got 0.0"),
        case(f"{prefix}-lr-neg", lambda: call(-0.1), ValueError, "lr must be a positive", "got -0.1"),
        case(f"{prefix}-lr-nan", lambda: call(float("nan")), ValueError, "lr must be a positive", "got nan"),
        case(f"{prefix}-lr-inf", lambda: call(np.inf), ValueError, "lr must be a positive", "got inf"),
        case(f"{prefix}-lr-str", lambda: call("0.1"), TypeError, "lr must be a real number", "got '0.1'"),
        case(f"{prefix}-lr-bool", lambda: call(True), TypeError, "lr must be a real number", "got True"),
    ]


def fedavg(**kw):
    args = dict(lr=0.1, rounds=2)
    args.update(kw)
    parties = args.pop("parties", PARTIES)
    return fl.fedavg(parties, **args)


def fedsgd(**kw):
    args = dict(lr=0.1, rounds=2)
    args.update(kw)
    parties = args.pop("parties", PARTIES)
    return fl.fedsgd(parties, **args)


def cgd(**kw):
    args = dict(X=X, y=Y, lr=0.1, rounds=2)
    args.update(kw)
    return fl.centralized_gd(args.pop("X"), args.pop("y"), **args)


def split(**kw):
    args = dict(X=X, y=Y, n_parties=2)
    args.update(kw)
    return fl.split(args.pop("X"), args.pop("y"), args.pop("n_parties"), **args)


CASES = [
    # --- split -----------------------------------------------------------------------------
    case("split-n_parties-0", lambda: split(n_parties=0), ValueError, "n_parties must be", "got 0"),
    case("split-n_parties-neg", lambda: split(n_parties=-3), ValueError, "n_parties must be", "got -3"),
    case("split-n_parties>m", lambda: split(n_parties=11), ValueError,
         "n_parties must be at most the number of samples (10)", "got 11"),
    case("split-n_parties-bool", lambda: split(n_parties=True), TypeError, "n_parties must be an integer", "True"),
    case("split-n_parties-float", lambda: split(n_parties=2.0), TypeError, "n_parties must be an integer", "2.0"),
    case("split-scheme", lambda: split(scheme="pathological"), ValueError,
         "scheme must be one of 'iid', 'quantity', 'covariate', 'shards', 'dirichlet'", "got 'pathological'"),
    case("split-skew-neg", lambda: split(scheme="quantity", skew=-1.0), ValueError,
         "skew must be a non-negative finite number", "got -1.0"),
    case("split-skew-neg-iid", lambda: split(scheme="iid", skew=-0.5), ValueError, "skew must be", "got -0.5"),
    case("split-skew-nan", lambda: split(scheme="covariate", skew=np.nan), ValueError, "skew must be", "got nan"),
    case("split-seed-neg", lambda: split(seed=-1), ValueError, "seed must be an integer in [0, inf]", "got -1"),
    case("split-seed-float", lambda: split(seed=1.5), TypeError, "seed must be an integer", "1.5"),
    case("split-X-1d", lambda: split(X=X[:, 0]), ValueError, "X must be a 2-D array", "got shape (10,)"),
    case("split-y-2d", lambda: split(y=Y[:, None]), ValueError, "y must be a 1-D array", "got shape (10, 1)"),
    case("split-length-mismatch", lambda: split(y=Y[:9]), ValueError,
         "X and y must have the same number of samples", "10 rows in X", "9 values in y"),
    case("split-X-nan", lambda: split(X=X_NAN), ValueError, "X must contain only finite numbers", "got 1 NaN/inf"),
    case("split-y-inf", lambda: split(y=Y_INF), ValueError, "y must contain only finite numbers", "got 1 NaN/inf"),
    case("split-X-text", lambda: split(X=[["a", "b"]]), TypeError, "X must be numeric array-like", "got list"),

    # --- split: the label-skew schemes -----------------------------------------------------------
    case("split-alpha-0", lambda: split(y=LABELS, scheme="dirichlet", alpha=0), ValueError,
         "alpha must be a positive finite number", "got 0.0"),
    case("split-alpha-neg", lambda: split(y=LABELS, scheme="dirichlet", alpha=-0.5), ValueError,
         "alpha must be a positive finite number", "got -0.5"),
    case("split-alpha-nan", lambda: split(y=LABELS, scheme="dirichlet", alpha=np.nan), ValueError,
         "alpha must be a positive finite number", "got nan"),
    case("split-alpha-inf", lambda: split(y=LABELS, scheme="dirichlet", alpha=np.inf), ValueError,
         "alpha must be a positive finite number", "got inf"),
    case("split-alpha-str", lambda: split(y=LABELS, scheme="dirichlet", alpha="0.5"), TypeError,
         "alpha must be a real number", "got '0.5'"),
    case("split-alpha-with-iid", lambda: split(scheme="iid", alpha=0.5), ValueError,
         "alpha applies to scheme='dirichlet' only", "scheme='iid'", "got alpha=0.5"),
    case("split-alpha-with-shards", lambda: split(y=LABELS, scheme="shards", alpha=0.5), ValueError,
         "alpha applies to scheme='dirichlet' only", "got alpha=0.5"),
    case("split-shards-0", lambda: split(y=LABELS, scheme="shards", shards_per_party=0), ValueError,
         "shards_per_party must be an integer in [1, inf]", "got 0"),
    case("split-shards-float", lambda: split(y=LABELS, scheme="shards", shards_per_party=2.5), TypeError,
         "shards_per_party must be an integer", "got 2.5"),
    case("split-shards-bool", lambda: split(y=LABELS, scheme="shards", shards_per_party=True), TypeError,
         "shards_per_party must be an integer", "got True"),
    case("split-shards>samples", lambda: split(y=LABELS, scheme="shards", shards_per_party=6), ValueError,
         "shards_per_party must be an integer in [1, 5]", "10 samples", "got shards_per_party=6", "12 shards"),
    case("split-shards-with-dirichlet", lambda: split(y=LABELS, scheme="dirichlet", shards_per_party=2),
         ValueError, "shards_per_party applies to scheme='shards' only", "got shards_per_party=2"),
    case("split-skew-with-shards", lambda: split(y=LABELS, scheme="shards", skew=1.0), ValueError,
         "skew applies to scheme='quantity' or 'covariate' only", "scheme='shards'", "got skew=1.0"),
    case("split-shards-float-labels", lambda: split(scheme="shards"), ValueError,
         "y must hold integer class labels", "scheme='shards'", f"got {float(Y[0])!r} at index 0"),
    case("split-dirichlet-float-labels", lambda: split(y=LABELS + 0.5, scheme="dirichlet"), ValueError,
         "y must hold integer class labels", "scheme='dirichlet'", "got 0.5 at index 0"),

    # --- label_histogram / plot_label_histogram ------------------------------------------------------
    case("label_histogram-party", lambda: fl.label_histogram(LABELED[0]), TypeError,
         "parties must be a non-empty list of Party objects", "got Party"),
    case("label_histogram-empty", lambda: fl.label_histogram([]), ValueError,
         "parties must be a non-empty list", "got an empty list"),
    case("label_histogram-item", lambda: fl.label_histogram([LABELED[0], "b"]), TypeError,
         "parties must be a list of Party objects", "got str at index 1"),
    case("label_histogram-float-labels", lambda: fl.label_histogram(PARTIES), ValueError,
         "parties must hold class labels (integers >= 0)", f"got {float(Y[0])!r} in party 0"),
    case("label_histogram-n_classes-small", lambda: fl.label_histogram(LABELED, n_classes=2), ValueError,
         "n_classes must be greater than the largest label (2)", "got 2"),
    case("label_histogram-n_classes-0", lambda: fl.label_histogram(LABELED, n_classes=0), ValueError,
         "n_classes must be an integer in [1, inf]", "got 0"),
    case("plot_label_histogram-1d", lambda: plot_label_histogram([1, 2, 3]), ValueError,
         "parties_or_counts must be a list of Party objects or an (N, K) array", "got shape (3,)"),
    case("plot_label_histogram-negative", lambda: plot_label_histogram([[1, -2]]), ValueError,
         "parties_or_counts must hold finite counts >= 0", "[-2.0]"),
    case("plot_label_histogram-n_classes", lambda: plot_label_histogram([[1, 2]], n_classes=3), ValueError,
         "n_classes must equal the number of columns of the counts (2)", "got 3"),

    # --- make_fedprox_synthetic ----------------------------------------------------------------
    case("fedprox-alpha-neg", lambda: fl.make_fedprox_synthetic(-1.0, 1.0, seed=0), ValueError,
         "alpha must be a non-negative finite number", "got -1.0"),
    case("fedprox-beta-nan", lambda: fl.make_fedprox_synthetic(1.0, np.nan, seed=0), ValueError,
         "beta must be a non-negative finite number", "got nan"),
    case("fedprox-beta-inf", lambda: fl.make_fedprox_synthetic(1.0, np.inf, seed=0), ValueError,
         "beta must be a non-negative finite number", "got inf"),
    case("fedprox-alpha-str", lambda: fl.make_fedprox_synthetic("1", 1.0, seed=0), TypeError,
         "alpha must be a real number", "got '1'"),
    case("fedprox-n_parties-0", lambda: fl.make_fedprox_synthetic(1.0, 1.0, n_parties=0, seed=0), ValueError,
         "n_parties must be an integer in [1, inf]", "got 0"),
    case("fedprox-n_features-float", lambda: fl.make_fedprox_synthetic(1.0, 1.0, n_features=1.5, seed=0),
         TypeError, "n_features must be an integer", "got 1.5"),
    case("fedprox-n_classes-1", lambda: fl.make_fedprox_synthetic(1.0, 1.0, n_classes=1, seed=0), ValueError,
         "n_classes must be an integer in [2, inf]", "got 1"),
    case("fedprox-iid-alpha", lambda: fl.make_fedprox_synthetic(1.0, 0.0, iid=True, seed=0), ValueError,
         "alpha and beta must be 0 with iid=True", "got alpha=1.0, beta=0.0"),
    case("fedprox-iid-str", lambda: fl.make_fedprox_synthetic(0.0, 0.0, iid="yes", seed=0), TypeError,
         "iid must be True or False", "got 'yes'"),
    case("fedprox-seed-neg", lambda: fl.make_fedprox_synthetic(1.0, 1.0, seed=-1), ValueError,
         "seed must be an integer in [0, inf]", "got -1"),

    # --- Party -------------------------------------------------------------------------------
    case("party-empty", lambda: fl.Party(np.empty((0, 3)), np.empty(0)), ValueError,
         "a Party needs at least one sample", "empty X of shape (0, 3)"),
    case("party-no-features", lambda: fl.Party(np.empty((3, 0)), np.zeros(3)), ValueError,
         "X must have at least one sample and one feature", "got shape (3, 0)"),
    case("party-X-1d", lambda: fl.Party(X[:, 0], Y), ValueError, "X must be a 2-D array", "got shape (10,)"),
    case("party-X-3d", lambda: fl.Party(X[None], Y), ValueError, "X must be a 2-D array", "got shape (1, 10, 3)"),
    case("party-y-2d", lambda: fl.Party(X, np.ones((10, 2))), ValueError, "y must be a 1-D", "got shape (10, 2)"),
    case("party-length-mismatch", lambda: fl.Party(X, Y[:7]), ValueError,
         "X and y must have the same number of samples", "10 rows in X and 7 values in y"),
    case("party-X-nan", lambda: fl.Party(X_NAN, Y), ValueError, "X must contain only finite numbers", "1 NaN/inf"),
    case("party-y-inf", lambda: fl.Party(X, Y_INF), ValueError, "y must contain only finite numbers", "1 NaN/inf"),
    case("party-name", lambda: fl.Party(X, Y, name=3), TypeError, "name must be a str or None", "got int"),
    case("party-loss-theta", lambda: PARTY.loss(np.zeros(3)), ValueError,
         "theta must have shape (4,)", "got shape (3,)"),
    case("party-gradient-theta-nan", lambda: PARTY.gradient([0.0, np.nan, 0.0, 0.0]), ValueError,
         "theta must contain only finite numbers", "1 NaN/inf"),

    # --- Party.local_update --------------------------------------------------------------------
    *bad_lr("local_update", lambda lr: PARTY.local_update(THETA, lr=lr, epochs=1)),
    case("local_update-epochs-0", lambda: PARTY.local_update(THETA, lr=0.1, epochs=0), ValueError,
         "epochs must be an integer in [1, inf]", "got 0"),
    case("local_update-epochs-bool", lambda: PARTY.local_update(THETA, lr=0.1, epochs=True), TypeError,
         "epochs must be an integer", "got True"),
    case("local_update-batch_size-0", lambda: PARTY.local_update(THETA, lr=0.1, epochs=1, batch_size=0),
         ValueError, "batch_size must be an integer in [1, inf]", "got 0"),
    case("local_update-batch_size-float", lambda: PARTY.local_update(THETA, lr=0.1, epochs=1, batch_size=2.5),
         TypeError, "batch_size must be an integer", "2.5"),
    case("local_update-theta", lambda: PARTY.local_update(np.zeros(5), lr=0.1, epochs=1), ValueError,
         "theta must have shape (4,)", "got shape (5,)"),
    case("local_update-seed", lambda: PARTY.local_update(THETA, lr=0.1, batch_size=2, seed=-1),
         ValueError, "seed must be an integer in [0, inf]", "got -1"),
    case("local_update-round-0", lambda: PARTY.local_update(THETA, lr=0.1, seed=0, round=0),
         ValueError, "round must be an integer in [1, inf]", "got 0"),
    case("local_update-index", lambda: PARTY.local_update(THETA, lr=0.1, seed=0, index=-1),
         ValueError, "index must be an integer in [0, inf]", "got -1"),

    # --- fedsgd / fedavg -----------------------------------------------------------------------
    *bad_lr("fedsgd", lambda lr: fedsgd(lr=lr)),
    *bad_lr("fedavg", lambda lr: fedavg(lr=lr)),
    case("fedsgd-rounds-neg", lambda: fedsgd(rounds=-1), ValueError, "rounds must be an integer in [0, inf]", "got -1"),
    case("fedavg-rounds-neg", lambda: fedavg(rounds=-5), ValueError, "rounds must be", "got -5"),
    case("fedsgd-rounds-bool", lambda: fedsgd(rounds=True), TypeError, "rounds must be an integer", "got True"),
    case("fedavg-rounds-float", lambda: fedavg(rounds=3.0), TypeError, "rounds must be an integer", "got 3.0"),
    case("fedavg-rounds-np-bool", lambda: fedavg(rounds=np.True_), TypeError, "rounds must be an integer", "True"),
    case("fedavg-local_epochs-0", lambda: fedavg(local_epochs=0), ValueError,
         "local_epochs must be an integer in [1, inf]", "got 0"),
    case("fedavg-local_epochs-bool", lambda: fedavg(local_epochs=False), TypeError,
         "local_epochs must be an integer", "got False"),
    case("fedavg-batch_size-0", lambda: fedavg(batch_size=0), ValueError, "batch_size must be", "got 0"),
    case("fedavg-batch_size-neg", lambda: fedavg(batch_size=-4), ValueError, "batch_size must be", "got -4"),
    case("fedavg-batch_size-bool", lambda: fedavg(batch_size=True), TypeError, "batch_size must be an integer", "True"),
    case("fedavg-fraction-0", lambda: fedavg(fraction=0), ValueError, "fraction must be in (0, 1]", "got 0.0"),
    case("fedavg-fraction-neg", lambda: fedavg(fraction=-0.1), ValueError, "fraction must be in (0, 1]", "got -0.1"),
    case("fedavg-fraction-1.5", lambda: fedavg(fraction=1.5), ValueError, "fraction must be in (0, 1]", "got 1.5"),
    case("fedavg-fraction-nan", lambda: fedavg(fraction=np.nan), ValueError, "fraction must be in (0, 1]", "got nan"),
    case("fedavg-fraction-bool", lambda: fedavg(fraction=True), TypeError, "fraction must be a real number", "True"),
    case("fedsgd-weighting", lambda: fedsgd(weighting="mean"), ValueError,
         "weighting must be one of 'samples', 'uniform'", "got 'mean'"),
    case("fedavg-weighting", lambda: fedavg(weighting="Samples"), ValueError, "weighting must be", "got 'Samples'"),
    case("fedsgd-engine", lambda: fedsgd(engine="gpu"), ValueError,
         "engine must be one of 'loop', 'vectorized', 'tensorflow'", "got 'gpu'"),
    case("fedavg-engine-type", lambda: fedavg(engine=3), TypeError,
         "engine must be one of 'loop', 'vectorized', 'tensorflow' or an engine object", "got int"),
    case("fedsgd-theta0-short", lambda: fedsgd(theta0=[0.0, 0.0, 0.0]), ValueError,
         "theta0 must have shape (4,)", "got shape (3,)"),
    case("fedavg-theta0-2d", lambda: fedavg(theta0=np.zeros((1, 4))), ValueError,
         "theta0 must be a 1-D parameter vector", "got shape (1, 4)"),
    case("fedavg-server_lr-0", lambda: fedavg(server_lr=0.0), ValueError,
         "server_lr must be a positive finite number", "got 0.0"),
    case("fedavg-server_lr-with-optimizer", lambda: fedavg(server_lr=0.5, server_optimizer=fl.optim.sgd(1.0)),
         ValueError, "server_lr must stay 1.0 when a server_optimizer is given", "got 0.5"),
    case("fedavg-server_optimizer-type", lambda: fedavg(server_optimizer="adam"), TypeError,
         "server_optimizer must be an optimizer from fl_helpers.optim", "got str"),
    case("fedavg-aggregator-type", lambda: fedavg(aggregator="median"), TypeError,
         "aggregator must be callable or None", "got str"),
    case("fedavg-client_transform-type", lambda: fedavg(client_transform=3), TypeError,
         "client_transform must be callable or None", "got int"),
    case("fedavg-unknown-hook", lambda: fedavg(server_momentum=0.9), TypeError,
         "unexpected keyword argument(s) ['server_momentum']", "the hooks are"),
    case("fedavg-other-parties-engine", lambda: fedavg(engine=fl.engines.make_engine("loop", PARTIES[:1])),
         ValueError, "engine was built for other parties", "1 parties, not these 2"),
    case("party-model-type", lambda: fl.Party(X, Y, model="linear"), TypeError,
         "model must be a model from fl_helpers.models", "got str"),
    case("party-logistic-labels", lambda: fl.Party(X, (Y > 0) * 2.0, model=fl.models.logistic), ValueError,
         "y must hold labels in 0..1 for the logistic model", "got 2"),
    case("least_squares-l2", lambda: fl.least_squares([fl.Party(X, Y, model=fl.models.linear(l2=1.0))]),
         ValueError, "least_squares solves unpenalised linear regression only", "models.linear(l2=1.0)"),
    case("softmax-n_classes-1", lambda: fl.models.softmax(n_classes=1), ValueError,
         "n_classes must be an integer in [2, inf]", "got 1"),
    case("fedavg-theta0-nan", lambda: fedavg(theta0=[0.0, np.nan, 0.0, 0.0]), ValueError,
         "theta0 must contain only finite numbers", "1 NaN/inf"),
    case("fedavg-seed-neg", lambda: fedavg(seed=-2), ValueError, "seed must be an integer in [0, inf]", "got -2"),
    case("fedsgd-non-party", lambda: fedsgd(parties=[PARTIES[0], 5]), TypeError,
         "parties[1] must be a Party", "got int"),
    case("fedavg-non-party-tuple", lambda: fedavg(parties=[(X, Y)]), TypeError,
         "parties[0] must be a Party", "got tuple"),
    case("fedsgd-single-party", lambda: fedsgd(parties=PARTY), TypeError,
         "parties must be a list of Party objects", "got Party"),
    case("fedavg-parties-str", lambda: fedavg(parties="abc"), TypeError,
         "parties must be a list of Party objects", "got str"),
    case("fedsgd-no-parties", lambda: fedsgd(parties=[]), ValueError, "parties must hold at least one Party",
         "got an empty list"),
    case("fedavg-mixed-features", lambda: fedavg(parties=[PARTY, fl.Party(X[:, :2], Y)]), ValueError,
         "all parties must have the same number of features", "got [2, 3]"),
    case("train-rounds-neg", lambda: fl.train(PARTIES, lr=0.1, rounds=-1), ValueError, "rounds must be", "got -1"),

    # --- centralized_gd ------------------------------------------------------------------------
    *bad_lr("centralized_gd", lambda lr: cgd(lr=lr)),
    case("cgd-rounds-neg", lambda: cgd(rounds=-1), ValueError, "rounds must be an integer in [0, inf]", "got -1"),
    case("cgd-rounds-bool", lambda: cgd(rounds=True), TypeError, "rounds must be an integer", "got True"),
    case("cgd-X-1d", lambda: cgd(X=X[:, 0]), ValueError, "X must be a 2-D array", "got shape (10,)"),
    case("cgd-y-2d", lambda: cgd(y=Y[:, None]), ValueError, "y must be a 1-D array", "got shape (10, 1)"),
    case("cgd-length-mismatch", lambda: cgd(y=Y[:3]), ValueError,
         "X and y must have the same number of samples", "10 rows in X and 3 values in y"),
    case("cgd-X-nan", lambda: cgd(X=X_NAN), ValueError, "X must contain only finite numbers", "1 NaN/inf"),
    case("cgd-y-inf", lambda: cgd(y=Y_INF), ValueError, "y must contain only finite numbers", "1 NaN/inf"),
    case("cgd-theta0", lambda: cgd(theta0=[1.0, 2.0]), ValueError, "theta0 must have shape (4,)", "got shape (2,)"),

    # --- least_squares -------------------------------------------------------------------------
    case("least_squares-weighting", lambda: fl.least_squares(PARTIES, weighting="equal"), ValueError,
         "weighting must be one of 'samples', 'uniform'", "got 'equal'"),
    case("least_squares-non-party", lambda: fl.least_squares([PARTY, None]), TypeError,
         "parties[1] must be a Party", "got NoneType"),

    # --- make_regression -----------------------------------------------------------------------
    case("make_regression-noise-neg", lambda: fl.make_regression(10, 2, noise=-1.0, seed=0), ValueError,
         "noise must be a non-negative finite number", "got -1.0"),
    case("make_regression-noise-nan", lambda: fl.make_regression(10, 2, noise=np.nan, seed=0), ValueError,
         "noise must be a non-negative finite number", "got nan"),
    case("make_regression-n_samples-0", lambda: fl.make_regression(0, 2, noise=0.1, seed=0), ValueError,
         "n_samples must be an integer in [1, inf]", "got 0"),
    case("make_regression-n_features-0", lambda: fl.make_regression(5, 0, noise=0.1, seed=0), ValueError,
         "n_features must be an integer in [1, inf]", "got 0"),
    case("make_regression-n_samples-bool", lambda: fl.make_regression(True, 2, noise=0.1, seed=0), TypeError,
         "n_samples must be an integer", "got True"),
    case("make_regression-seed-neg", lambda: fl.make_regression(5, 2, noise=0.1, seed=-1), ValueError,
         "seed must be an integer in [0, inf]", "got -1"),

    # --- load_dataset ----------------------------------------------------------------------------
    case("load_dataset-unknown", lambda: fl.load_dataset("boston"), ValueError,
         "name must be one of", "'diabetes'", "got 'boston'"),
    case("load_dataset-type", lambda: fl.load_dataset(3), TypeError, "name must be a str", "got int"),
    case("load_dataset-subset", lambda: fl.load_dataset("digits", subset="validation"), ValueError,
         "subset must be one of 'all', 'train', 'test'", "got 'validation'"),
    case("load_dataset-subset-no-split", lambda: fl.load_dataset("diabetes", subset="test"), ValueError,
         "subset must be 'all' for 'diabetes', which has no train/test split", "got 'test'"),
]


@pytest.mark.parametrize("call, exc, match", CASES)
def test_bad_input_is_refused_with_a_clear_message(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("rounds", [0, 1, np.int64(2)])
@pytest.mark.parametrize("lr", [0.1, np.float64(0.1), 1])
def test_numpy_scalars_and_ints_are_accepted(rounds, lr):
    h = fl.fedavg(PARTIES, lr=lr, rounds=rounds, local_epochs=np.int32(1), fraction=np.float64(1.0),
                  seed=np.int64(0))
    assert h.rounds == int(rounds)


def test_the_bad_input_cases_are_unique():
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
