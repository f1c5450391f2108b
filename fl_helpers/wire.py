"""What crosses the network: payloads and their size in bytes, measured.

A payload is what one party sends (its update and weight) or receives (the
model): an ``ndarray`` or numpy scalar (in its own dtype), a Python number
(8 bytes), ``bytes``, any object with a ``wire_arrays()`` method returning
its arrays (a compressed update, say), or a tuple, list or dict of those. Its size is the length of
its raw serialisation, :func:`encode`: every array's bytes one after the
other, in its own dtype. A client transform that sends fewer numbers, or a
smaller dtype, therefore shows fewer bytes in ``History.bytes_up``.

(A real protocol adds framing: gRPC, protobuf and TLS headers, a few dozen
bytes a message. The course counts the payload, which is what compression
and the number of parameters change.)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _parts(payload):
    if payload is None:
        return
    if isinstance(payload, (np.ndarray, np.generic)):
        yield np.asarray(payload)
    elif isinstance(payload, (bytes, bytearray)):
        yield np.frombuffer(bytes(payload), dtype=np.uint8)
    elif isinstance(payload, Mapping):
        for value in payload.values():
            yield from _parts(value)
    elif isinstance(payload, (tuple, list)):
        for value in payload:
            yield from _parts(value)
    elif hasattr(payload, "wire_arrays"):
        yield from _parts(payload.wire_arrays())
    elif isinstance(payload, (int, float, np.number)):
        yield np.asarray(payload, dtype=np.float64)
    else:
        raise TypeError(f"payload must be an ndarray, a number, bytes, or a tuple/list/dict of them "
                        f"(or define wire_arrays()), got {type(payload).__name__}")


def encode(payload) -> bytes:
    """The payload's raw serialisation: each array's bytes, one after the other."""
    return b"".join(np.ascontiguousarray(a).tobytes() for a in _parts(payload))


def nbytes(payload) -> int:
    """Bytes of :func:`encode` (without building it): what the payload costs on the wire."""
    return int(sum(a.nbytes for a in _parts(payload)))
