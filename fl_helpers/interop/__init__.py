"""Bridges from the course's parties and round blocks to existing federated learning engines.

:mod:`fl_helpers.interop.flower`
    the same parties as a Flower ``ClientApp`` and the course's sampling, aggregators and server
    update as a Flower strategy; ``run(..., runtime="simulation" | "deployment")`` (Flower is
    imported only when this submodule is).
:mod:`fl_helpers.interop.federation`
    Flower's deployment runtime on one machine: a SuperLink and SuperNodes as local processes,
    TLS certificates and node keys.
:mod:`fl_helpers.interop.classroom`
    the classroom federation: ``python -m fl_helpers.interop.classroom serve | join | local``.
"""
