"""History: everything recorded during a federated or centralized run."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class History:
    """The record of a run; arrays stop at the last finite round if it diverged.

    Attributes
    ----------
    thetas : ndarray, shape (R + 1, p)
        (p the model's number of parameters: d + 1 for linear regression)
        Global model before round 1 and after each completed round.
    losses : ndarray, shape (R + 1,)
        Global training loss :math:`L(\\theta) = \\sum_i \\frac{m_i}{M} L_i(\\theta)`.
    party_losses : ndarray, shape (R + 1, N)
        Every party's local loss at the global model.
    bytes_up, bytes_down : ndarray, shape (R,)
        Bytes sent by the parties to the server (update + weight each) and by
        the server to the parties (the model) in each round.
    diverged_at : int or None
        First round whose loss was non-finite or above ``1e6`` x the initial
        loss; the run stopped there and its numbers are not recorded.
    diverged_reason : str or None
    selected : list of ndarray
        Indices of the parties that took part in each round.
    updates, weights : list of ndarray or None
        Per-party updates (k, p) and weights (k,) of each round, when the
        run was asked to keep them (``keep_updates=True``).
    engine, device : str
        Which engine ran the local work, and where.
    metrics : dict of str to ndarray, shape (R,)
        Named per-round series added by ``train``'s ``metrics`` functions and
        by hooks (clipping, privacy accounting, compression ...).
    """

    thetas: np.ndarray
    losses: np.ndarray
    party_losses: np.ndarray
    bytes_up: np.ndarray
    bytes_down: np.ndarray
    diverged_at: int | None = None
    diverged_reason: str | None = None
    selected: list = field(default_factory=list)
    updates: list | None = None
    weights: list | None = None
    engine: str = ""
    device: str = ""
    metrics: dict = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Number of completed rounds R."""
        return len(self.losses) - 1

    @property
    def theta(self) -> np.ndarray:
        """The last finite global model."""
        return self.thetas[-1]

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    @property
    def message(self) -> str:
        """One line for a student: how the run ended."""
        unit = "step" if self.engine == "centralized" else "round"   # centralized GD has steps, FL rounds
        if self.diverged:
            return (f"diverged at {unit} {self.diverged_at}: learning rate too large for this data "
                    f"({self.diverged_reason})")
        return f"{self.rounds} {unit}s, final loss {self.losses[-1]:.6g}"

    def __repr__(self) -> str:
        return (f"History(engine={self.engine!r}, rounds={self.rounds}, "
                f"final_loss={self.losses[-1]:.6g}, diverged_at={self.diverged_at})")


class Recorder:
    """Collects a run round by round and applies the divergence rule.

    ``record(0, theta0, losses)`` starts the run; ``record(t, theta_t, losses,
    **round_t)`` appends round ``t`` unless its loss is non-finite or blew up.
    """

    BLOW_UP = 1e6

    def __init__(self, sizes):
        self.sizes = np.asarray(sizes, dtype=np.float64)
        self.thetas, self.party_losses, self.losses = [], [], []
        self.bytes_up, self.bytes_down, self.selected = [], [], []
        self.updates, self.weights = [], []
        self.metrics: dict[str, list] = {}
        self.diverged_at = None
        self.diverged_reason = None

    def _global(self, party_losses) -> float:
        return float(self.sizes @ party_losses / self.sizes.sum())

    def record(self, round_, theta, party_losses, *, bytes_up=0, bytes_down=0, selected=None,
               updates=None, weights=None, metrics=None) -> bool:
        """Append one round; return False (and record nothing) if the run diverged."""
        party_losses = np.asarray(party_losses, dtype=np.float64)
        loss = self._global(party_losses)
        if round_ > 0:
            if not (np.isfinite(loss) and np.all(np.isfinite(theta))):
                self.diverged_at, self.diverged_reason = round_, "the loss is no longer a finite number"
                return False
            if self.losses[0] > 0 and loss > self.BLOW_UP * self.losses[0]:
                self.diverged_at = round_
                self.diverged_reason = f"the loss grew past {self.BLOW_UP:g} x its initial value"
                return False
        self.thetas.append(np.array(theta, dtype=np.float64))
        self.party_losses.append(party_losses)
        self.losses.append(loss)
        if round_ == 0:
            return True
        self.bytes_up.append(bytes_up)
        self.bytes_down.append(bytes_down)
        if selected is not None:
            self.selected.append(np.asarray(selected))
        if updates is not None:
            self.updates.append(np.asarray(updates))
            self.weights.append(np.asarray(weights))
        for name, value in (metrics or {}).items():
            self.metrics.setdefault(name, []).append(value)
        return True

    def history(self, *, engine: str, device: str, keep_updates: bool = False) -> History:
        return History(
            thetas=np.array(self.thetas),
            losses=np.array(self.losses),
            party_losses=np.array(self.party_losses),
            bytes_up=np.array(self.bytes_up, dtype=np.int64),
            bytes_down=np.array(self.bytes_down, dtype=np.int64),
            diverged_at=self.diverged_at,
            diverged_reason=self.diverged_reason,
            selected=self.selected,
            updates=self.updates if keep_updates else None,
            weights=self.weights if keep_updates else None,
            engine=engine,
            device=device,
            metrics={name: np.array(values) for name, values in self.metrics.items()},
        )
