"""fl_helpers: the library of the federated learning course.

The numpy core (this package) never imports TensorFlow; ``engine="tensorflow"``
and ``models.keras`` load it on first use (:mod:`fl_helpers.tf_env`).

The round and its seams
-----------------------
server       the four blocks (broadcast, local work, aggregate, server update), train, fedsgd, fedavg
             (FedProx: fedavg(prox_mu=...); stragglers)
algorithms   scaffold, Scaffold: control variates that correct the local work
models       linear, logistic, softmax (GLMs in numpy) and keras(...): what parties train
engines      loop, vectorized (numpy), tensorflow (lazy): how the local work is computed
aggregation  aggregation_weights, aggregate, weighted_sum, Aggregate (composable)
optim        server optimizers: sgd (FedAvgM), adam, yogi, adagrad (Reddi et al. 2021)
randomness   the randomness contract: streams keyed by (seed, round[, party])
wire         bytes of what is sent, measured
evaluation   accuracy, evaluate, party_accuracies; roc_auc, brier_score, calibration_table (binary risk scores)
privacy      leak_sample (a gradient is the sample), epsilon / noise_multiplier (dp-accounting), dp_fedavg
secagg       secure aggregation (Bonawitz et al. 2017) with dropouts; SecureAggregator for train
robust       median, trimmed_mean, krum, geometric_median, norm_bound (Flower's semantics) and train adapters
attacks      Byzantine parties: SignFlip, Scale, GaussianNoise, flip_labels, Alie, Ipm
compression  TopK, RandomK, QSGD, Sign codecs as client transforms, with error feedback; bytes as sent
systems      a simulated clock (device profiles, deadlines), sync_fedavg, fedasync, fedbuff
hierarchy    hierarchical_fedavg: parties -> edge servers -> cloud (HierFAVG)
ledger       RoundLog: a tamper-evident, hash-chained log of rounds
tensorboard_log  write_history / read_scalars: a run as TensorBoard event files (TensorFlow loaded when called)
vertical     vertical FL: psi (Diffie-Hellman PSI), align (rows of the common IDs), fit_linear / fit_logistic
             with Paillier (phe, lazy)
cases        case studies' comparison: each party alone vs federated vs pooled (vs personalised)
credit       credit-scoring case study: banks (a documented non-IID bank rule), federated_moments, oversample
hospitals    the diabetes patients over six hospitals of different sizes and case mixes; fine-tuning curves
sensors      low-cost PM2.5 sensors beside reference monitors (Barkjohn et al. 2021 as ground truth)
recommend    federated matrix factorisation (Ammad-ud-din et al. 2019): the item-gradient leak, its defences
interop      interop.flower: the same parties on Flower (import it explicitly; Flower loads only then)

Around it
---------
data         make_regression, make_fedprox_synthetic, split, label_histogram, load_dataset
parties      Party, ClientUpdate
linear       the linear model's functions under the notebooks' names
reference    least_squares, centralized_gd
history      History
validation   argument checks shared by the public functions
tf_env       quiet, lazy TensorFlow / Keras imports
"""

from . import (
    attacks,
    cases,
    compression,
    credit,
    evaluation,
    hierarchy,
    hospitals,
    ledger,
    models,
    optim,
    privacy,
    randomness,
    recommend,
    robust,
    secagg,
    sensors,
    systems,
    tensorboard_log,
    vertical,
    wire,
)
from .aggregation import Aggregate, aggregate, aggregation_weights, weighted_sum
from .algorithms import Scaffold, scaffold
from .data import available_datasets, label_histogram, load_dataset, make_fedprox_synthetic, make_regression, split
from .evaluation import accuracy, evaluate, party_accuracies
from .history import History
from .parties import ClientUpdate, Party
from .reference import centralized_gd, least_squares
from .server import RoundInfo, broadcast, fedavg, fedsgd, sample_parties, server_update, train

__version__ = "0.2.0"

__all__ = [
    "Aggregate", "ClientUpdate", "History", "Party", "RoundInfo", "Scaffold", "accuracy", "aggregate", "attacks",
    "cases", "compression", "credit", "hospitals", "recommend", "sensors", "hierarchy", "systems",
    "aggregation_weights", "available_datasets", "broadcast", "centralized_gd", "evaluate", "evaluation",
    "fedavg", "fedsgd", "label_histogram", "least_squares", "ledger", "load_dataset", "make_fedprox_synthetic",
    "make_regression", "models", "optim", "party_accuracies", "privacy", "randomness", "robust",
    "sample_parties", "scaffold", "secagg", "server_update", "split", "tensorboard_log", "train", "vertical",
    "weighted_sum", "wire",
]
