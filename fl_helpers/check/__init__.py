"""Self-checks for the notebooks' exercises.

Usage in a notebook::

    from fl_helpers import check
    check.local_gradient(my_local_gradient)   # prints PASS or FAIL with a hint

The reference solutions live in ``tests/test_check.py``, which verifies that
every checker accepts them and rejects typical wrong answers.
"""

from ._common import CheckResult
from .centralized import (
    glossary,
    mse_gradient,
    recover_sample_from_gradient,
    round_order,
    stable_learning_rate,
    standardize,
)
from .credit import lending_decision, undo_oversampling
from .dashboard import bytes_per_round, largest_stable_lr
from .drift import fedprox_local_update, fedprox_with_momentum
from .federated import fixed_point, local_gradient, weighted_aggregate
from .hospitals import fine_tune, pooled_moments
from .interop import answered_loss
from .iot import device_calibration, offset_and_gain
from .noniid import dirichlet_mixes, more_rounds
from .privacy import noise_for_epsilon, recover_digit
from .recommend import fake_item_precision, item_gradient, user_step
from .robust import krum_scores, trimmed_mean
from .secagg import masked_inputs, min_modulus_bits
from .systems import fedasync_schedule, topk_sparsify
from .tensorflow_ex import segment_gradients, tape_gradient, traced_once
from .vertical import encrypted_dot, psi_double_blind, round_cost

__all__ = [
    "CheckResult",
    "bytes_per_round", "dirichlet_mixes", "fedprox_local_update", "fedprox_with_momentum", "fixed_point",
    "glossary", "largest_stable_lr", "local_gradient",
    "masked_inputs", "min_modulus_bits",
    "more_rounds", "mse_gradient", "noise_for_epsilon", "recover_digit",
    "recover_sample_from_gradient", "round_order", "segment_gradients", "stable_learning_rate",
    "standardize", "tape_gradient", "traced_once", "weighted_aggregate",
    "fedasync_schedule", "topk_sparsify",
    "krum_scores", "trimmed_mean",
    "fine_tune", "pooled_moments",
    "lending_decision", "undo_oversampling",
    "fake_item_precision", "item_gradient", "user_step",
    "device_calibration", "offset_and_gain",
    "answered_loss",
    "encrypted_dot", "psi_double_blind", "round_cost",
]
