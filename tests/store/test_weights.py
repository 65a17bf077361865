"""A model's weights read a slice at a time (the downloads stream them), on each kind of database."""

from __future__ import annotations

import os

from service.store.db import session_scope
from service.store.models import TrainedModel
from service.store.queries import weights_size, weights_slice
from tests.factories import store_trained_job, tiny_spec


def test_slices_of_the_weights_put_back_together_are_the_weights(sessions):
    job_id = store_trained_job(sessions, tiny_spec(epochs=1), every=10)
    blob = os.urandom(700_001)  # three whole slices of 256 kB and a short one
    with session_scope(sessions) as s:
        s.get_one(TrainedModel, job_id).weights = blob
    with session_scope(sessions) as s:
        size = weights_size(s, job_id)
        pieces = [weights_slice(s, job_id, start, 262_144) for start in range(0, size, 262_144)]
    assert size == len(blob)
    assert [len(p) for p in pieces] == [262_144, 262_144, 175_713]
    assert b"".join(pieces) == blob
    with session_scope(sessions) as s:
        assert weights_slice(s, job_id, 699_999, 10) == blob[-2:]  # a slice past the end stops at it
