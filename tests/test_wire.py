"""fl_helpers.wire: bytes on the wire are measured, and History.bytes_up/bytes_down count them.

References: sizes by hand (count of numbers x bytes per number), the raw
bytes of each array (``ndarray.tobytes``) and ``struct``.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from optional import require_tensorflow

import fl_helpers as fl
from fl_helpers import wire

SEED = 5
LR = 0.05
ROUNDS = 4
N, P = 8, 4                                       # 8 parties, p = d + 1 = 4 parameters



@pytest.fixture(scope="module")
def parties():
    X, y, _ = fl.make_regression(120, 3, noise=0.5, seed=0)
    parties = fl.split(X, y, N, scheme="quantity", skew=1.5, seed=1)
    assert [p.n_samples for p in parties] == [5, 59, 22, 6, 12, 4, 8, 4]
    return parties


# ----------------------------------------------------------------------------- nbytes and encode

A64 = np.arange(6, dtype=np.float64).reshape(2, 3)
A32 = np.linspace(-1, 1, 5, dtype=np.float32)
A16 = np.array([0.5, -2.0, 3.25], dtype=np.float16)
I32 = np.array([3, 1, 4, 1, 5], dtype=np.int32)
U8 = np.array([7, 255], dtype=np.uint8)


@pytest.mark.parametrize("payload, size, raw", [
    (A64, 6 * 8, A64.tobytes()),
    (A32, 5 * 4, A32.tobytes()),
    (A16, 3 * 2, A16.tobytes()),
    (I32, 5 * 4, I32.tobytes()),
    (U8, 2, b"\x07\xff"),
    (A64[:, ::2], 4 * 8, np.array([[0.0, 2.0], [3.0, 5.0]]).tobytes()),    # not contiguous
    (np.float64(2.5), 8, struct.pack("=d", 2.5)),
    (2.5, 8, struct.pack("=d", 2.5)),
    (3, 8, struct.pack("=d", 3.0)),
    (b"abc", 3, b"abc"),
    (bytearray(b"\x00\x01"), 2, b"\x00\x01"),
    ((A16, I32), 6 + 20, A16.tobytes() + I32.tobytes()),
    ([A32, 1.0], 20 + 8, A32.tobytes() + struct.pack("=d", 1.0)),
    ({"values": A32, "indices": I32, "n": 7}, 20 + 20 + 8,
     A32.tobytes() + I32.tobytes() + struct.pack("=d", 7.0)),
    ((A64, {"inner": (U8, b"z")}), 48 + 2 + 1, A64.tobytes() + b"\x07\xff" + b"z"),
    ((), 0, b""),
    (np.zeros(0), 0, b""),
])
def test_nbytes_is_the_length_of_the_raw_encoding(payload, size, raw):
    assert wire.encode(payload) == raw
    assert wire.nbytes(payload) == size == len(wire.encode(payload))


def test_nbytes_does_not_copy_or_change_the_payload():
    a = np.arange(4.0)
    a.setflags(write=False)
    assert wire.nbytes({"a": a}) == 32
    np.testing.assert_array_equal(a, np.arange(4.0))


@pytest.mark.parametrize("bad", [object(), "text", {1, 2}, (A32, object())])
def test_bad_payload_type_is_refused(bad):
    with pytest.raises(TypeError, match="payload.*got (object|str|set)"):
        wire.nbytes(bad)
    with pytest.raises(TypeError, match="payload"):
        wire.encode(bad)


# ----------------------------------------------------------------------------- bytes in History

def test_fedsgd_float64_bytes_per_round(parties):
    h = fl.fedsgd(parties, lr=LR, rounds=ROUNDS)
    k = N
    np.testing.assert_array_equal(h.bytes_up, np.full(ROUNDS, k * (P + 1) * 8))      # update + weight
    np.testing.assert_array_equal(h.bytes_down, np.full(ROUNDS, k * P * 8))          # the model
    assert h.bytes_up.dtype.kind == "i" and h.bytes_up.shape == (ROUNDS,)


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
def test_fedavg_with_sampling_counts_the_selected_parties_only(parties, engine):
    h = fl.fedavg(parties, lr=LR, rounds=ROUNDS, fraction=0.3, local_epochs=2, batch_size=5, seed=SEED,
                  engine=engine)
    k = round(0.3 * N)                                                               # 2
    assert all(len(s) == k for s in h.selected)
    np.testing.assert_array_equal(h.bytes_up, np.full(ROUNDS, k * (P + 1) * 8))
    np.testing.assert_array_equal(h.bytes_down, np.full(ROUNDS, k * P * 8))


@pytest.mark.parametrize("engine", ["loop", "vectorized"])
def test_float16_transform_shrinks_bytes_up(parties, engine):
    h = fl.fedsgd(parties, lr=LR, rounds=ROUNDS, engine=engine, keep_updates=True,
                  client_transform=lambda u, **_: u.astype(np.float16))
    np.testing.assert_array_equal(h.bytes_up, np.full(ROUNDS, N * (P * 2 + 8)))      # weights still float64
    np.testing.assert_array_equal(h.bytes_down, np.full(ROUNDS, N * P * 8))
    # the server aggregated the float16 values
    for u in h.updates:
        np.testing.assert_array_equal(u, u.astype(np.float16).astype(np.float64))


class TopN:
    """A sparse update: the n largest coordinates as float32 values and int32 indices."""

    def __init__(self, update, n):
        self.size = update.shape[0]
        self.indices = np.sort(np.argsort(-np.abs(update))[:n]).astype(np.int32)
        self.values = update[self.indices].astype(np.float32)

    def wire_arrays(self):
        return (self.values, self.indices)

    def __array__(self, dtype=None, copy=None):
        dense = np.zeros(self.size, dtype=np.float64)
        dense[self.indices] = self.values
        return dense if dtype is None else dense.astype(dtype)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_sparse_payload_counts_values_and_indices(parties, n):
    h = fl.fedsgd(parties, lr=LR, rounds=ROUNDS, keep_updates=True,
                  client_transform=lambda u, **_: TopN(u, n))
    np.testing.assert_array_equal(h.bytes_up, np.full(ROUNDS, N * (n * (4 + 4) + 8)))
    for u in h.updates:                       # the server saw the densified sparse updates
        assert np.all(np.count_nonzero(u, axis=1) == n)
    dense = fl.fedsgd(parties, lr=LR, rounds=1)
    assert not np.allclose(h.thetas[1], dense.thetas[1])


def test_payload_without_wire_arrays_is_refused_naming_payload(parties):
    class DenseOnly:
        def __init__(self, u):
            self.u = u

        def __array__(self, dtype=None, copy=None):
            return self.u if dtype is None else self.u.astype(dtype)

    with pytest.raises(TypeError, match="payload.*DenseOnly"):
        fl.fedsgd(parties, lr=LR, rounds=1, client_transform=lambda u, **_: DenseOnly(u))


def test_tensorflow_float32_engine_sends_float32(parties):
    require_tensorflow()
    from fl_helpers.engines import make_engine

    eng = make_engine("tensorflow", parties, dtype="float32", device="cpu")
    h = fl.fedsgd(parties, lr=LR, rounds=ROUNDS, engine=eng)
    np.testing.assert_array_equal(h.bytes_up, np.full(ROUNDS, N * (P + 1) * 4))
    np.testing.assert_array_equal(h.bytes_down, np.full(ROUNDS, N * P * 4))
