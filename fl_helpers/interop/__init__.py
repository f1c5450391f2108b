"""Bridges from the course's parties and round blocks to existing federated learning engines.

:mod:`fl_helpers.interop.flower`
    the same parties as a Flower ``ClientApp`` and the course's sampling, aggregators and server
    update as a Flower strategy (Flower is imported only when this submodule is).
"""
