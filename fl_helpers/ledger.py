r"""A tamper-evident round log: the honest part of "federated learning + blockchain".

Each round appends one entry: the round number, who took part, the SHA-256 of
the model the server broadcast and of the aggregate it applied, and the hash
of the previous entry. The entry's own hash covers all of that, so the entries
form a chain (a hash chain, as in a blockchain's block headers):

.. math:: h_t = \operatorname{SHA256}(t \,\|\, \text{participants}_t \,\|\,
          H(\theta_{t-1}) \,\|\, H(\Delta_t) \,\|\, h_{t-1}), \qquad h_0 = 0^{256}.

Changing anything in a past entry changes its hash, which no longer matches
the ``previous`` field of the next entry: :meth:`RoundLog.verify` finds the
first broken link. Whoever keeps the latest hash :math:`h_R` (printed in a
paper, sent to every party) can later check the whole history.

What a blockchain would add is *agreement* among servers that do not trust
each other about which chain is the real one (consensus), and replication so
that no single operator can rewrite the chain and every copy. What neither
adds is any proof that an update was honest: a poisoned update is logged as
faithfully as a good one (robust aggregation, notebook 10, is about that).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from .history import History

GENESIS = "0" * 64


def array_hash(values) -> str:
    """SHA-256 (hex) of an array's float64 bytes (little-endian, C order) and shape."""
    arr = np.ascontiguousarray(np.asarray(values, dtype="<f8"))
    return hashlib.sha256(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One round in the log; ``hash`` covers every other field (:meth:`expected_hash`)."""

    round: int
    participants: tuple[int, ...]
    model_hash: str
    aggregate_hash: str
    previous: str
    hash: str

    def expected_hash(self) -> str:
        """The hash this entry's fields give: SHA-256 of their canonical JSON (sorted keys, no spaces)."""
        fields = {k: v for k, v in asdict(self).items() if k != "hash"}
        fields["participants"] = list(fields["participants"])
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RoundLog:
    """An append-only, hash-chained log of rounds.

    ``append`` adds a round; ``entries`` is a tuple (read-only); ``verify``
    checks every link. :meth:`from_history` logs a finished run.
    """

    def __init__(self):
        self._entries: list[Entry] = []

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    @property
    def head(self) -> str:
        """The latest entry's hash (the genesis value for an empty log): keep it to check the log later."""
        return self._entries[-1].hash if self._entries else GENESIS

    def append(self, round: int, participants, model, aggregate) -> Entry:
        """Log round ``round``: its participants, the broadcast ``model`` and the applied ``aggregate``."""
        if isinstance(round, bool) or not isinstance(round, (int, np.integer)):
            raise TypeError(f"round must be an integer, got {round!r}")
        expected = len(self._entries) + 1
        if round != expected:
            raise ValueError(f"round must be the next round number {expected} (the log is append-only), "
                             f"got {round}")
        raw = np.asarray(participants).ravel()
        if raw.size and (not np.issubdtype(raw.dtype, np.integer) or raw.min() < 0):
            raise ValueError(f"participants must be party indices (integers >= 0), got {participants!r}")
        who = tuple(int(i) for i in raw)
        draft = Entry(int(round), who, array_hash(model), array_hash(aggregate), self.head, "")
        entry = Entry(**{**asdict(draft), "participants": who, "hash": draft.expected_hash()})
        self._entries.append(entry)
        return entry

    def verify(self, head: str | None = None) -> int | None:
        """The position (1 = the first round) of the first entry that does not check out; ``None``: all hold.

        An entry fails if its round number is not its position, if its hash is not the hash of its fields, or if its
        ``previous`` is not the hash of the entry before it (the genesis value
        for round 1). With ``head``, the last hash must also equal it: that
        catches a log whose tail was rewritten and re-hashed.
        """
        previous = GENESIS
        for position, entry in enumerate(self._entries, start=1):
            if entry.round != position or entry.previous != previous or entry.hash != entry.expected_hash():
                return position
            previous = entry.hash
        if head is not None and previous != head:
            return max(len(self._entries), 1)
        return None

    @classmethod
    def from_history(cls, history: History) -> "RoundLog":
        """A log of a finished run: round t's model is ``thetas[t - 1]``, its aggregate the change it received."""
        if not isinstance(history, History):
            raise TypeError(f"history must be a fl_helpers.History, got {type(history).__name__}")
        log = cls()
        for t in range(1, len(history.thetas)):
            who = history.selected[t - 1] if history.selected else ()
            log.append(t, who, history.thetas[t - 1], history.thetas[t] - history.thetas[t - 1])
        return log
