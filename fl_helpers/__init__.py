"""fl_helpers: the library of the federated learning course.

The numpy core (this package) never imports TensorFlow; ``engine="tensorflow"``
loads it on first use.

Modules
-------
data         make_regression, split, load_dataset
parties      Party, ClientUpdate
linear       the linear model, its MSE and gradient
aggregation  aggregation_weights, aggregate
server       the round's blocks, fedsgd, fedavg, train
reference    least_squares, centralized_gd
history      History
engines      loop, vectorized (numpy), tensorflow (lazy)
"""

from .aggregation import aggregate, aggregation_weights
from .data import available_datasets, load_dataset, make_regression, split
from .history import History
from .parties import ClientUpdate, Party
from .reference import centralized_gd, least_squares
from .server import broadcast, fedavg, fedsgd, sample_parties, server_update, train

__version__ = "0.1.0"

__all__ = [
    "ClientUpdate", "History", "Party", "aggregate", "aggregation_weights", "available_datasets",
    "broadcast", "centralized_gd", "fedavg", "fedsgd", "least_squares", "load_dataset",
    "make_regression", "sample_parties", "server_update", "split", "train",
]
