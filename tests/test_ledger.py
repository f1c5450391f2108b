"""The round log: each hash is SHA-256 of the entry's fields (recomputed here with hashlib), and any edit breaks it."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

import fl_helpers as fl
from fl_helpers import ledger


@pytest.fixture(scope="module")
def run():
    X, y, _ = fl.make_regression(200, 3, noise=0.5, seed=0)
    return fl.fedavg(fl.split(X, y, 6, seed=0), lr=0.1, rounds=5, fraction=0.5, seed=3)


def test_the_chain_is_sha256_of_each_entrys_fields_by_hand(run):
    log = ledger.RoundLog.from_history(run)
    previous = "0" * 64
    for t, entry in enumerate(log.entries, start=1):
        model = np.ascontiguousarray(run.thetas[t - 1], dtype="<f8")
        change = np.ascontiguousarray(run.thetas[t] - run.thetas[t - 1], dtype="<f8")
        assert entry.model_hash == hashlib.sha256(repr(model.shape).encode() + model.tobytes()).hexdigest()
        assert entry.aggregate_hash == hashlib.sha256(repr(change.shape).encode() + change.tobytes()).hexdigest()
        assert list(entry.participants) == [int(i) for i in run.selected[t - 1]]
        fields = {"round": t, "participants": list(entry.participants), "model_hash": entry.model_hash,
                  "aggregate_hash": entry.aggregate_hash, "previous": previous}
        want = hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        assert entry.previous == previous and entry.hash == want
        previous = want
    assert log.head == previous and log.verify() is None and log.verify(head=previous) is None


@pytest.mark.parametrize("field, value", [
    ("participants", (0, 1, 2)), ("model_hash", "f" * 64), ("aggregate_hash", "0" * 64), ("round", 9),
])
def test_editing_any_field_of_a_past_entry_is_found(run, field, value):
    log = ledger.RoundLog.from_history(run)
    log._entries[2] = dataclasses.replace(log._entries[2], **{field: value})
    assert log.verify() == 3


def test_rehashing_an_edited_entry_breaks_the_next_link(run):
    log = ledger.RoundLog.from_history(run)
    edited = dataclasses.replace(log._entries[1], participants=(5,))
    log._entries[1] = dataclasses.replace(edited, hash=edited.expected_hash())
    assert log.verify() == 3


def test_rewriting_the_whole_tail_is_caught_by_the_kept_head(run):
    log = ledger.RoundLog.from_history(run)
    head = log.head
    forged = ledger.RoundLog()
    for entry in log.entries[:-1]:
        forged._entries.append(entry)
    forged.append(5, [0], run.thetas[4], np.zeros_like(run.thetas[0]))    # a different last round, well-formed
    assert forged.verify() is None and forged.verify(head=head) == 5


def test_the_log_is_append_only_and_checks_its_input(run):
    log = ledger.RoundLog()
    with pytest.raises(ValueError, match="round must be the next round number 1"):
        log.append(2, [0], np.zeros(2), np.zeros(2))
    log.append(1, [0], np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="round must be an integer"):
        log.append(2.0, [0], np.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="history must be"):
        ledger.RoundLog.from_history([1, 2])
    assert isinstance(log.entries, tuple)


def test_an_emptied_log_fails_against_the_kept_head_and_participants_are_checked(run):
    head = ledger.RoundLog.from_history(run).head
    assert ledger.RoundLog().verify(head=head) == 1
    with pytest.raises(ValueError, match="participants must be party indices"):
        ledger.RoundLog().append(1, [1.7, -3], np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="participants must be party indices"):
        ledger.RoundLog().append(1, [-1], np.zeros(2), np.zeros(2))
