"""The claim transition table, every pair of states: what may follow what, and the words for what may not."""

from __future__ import annotations

import itertools

import pytest

from visitflow.claims.states import TRANSITIONS, ClaimState, can_move, refusal

S = ClaimState
ALLOWED = {
    (S.created, S.submitted), (S.created, S.held), (S.created, S.voided),
    (S.held, S.created), (S.held, S.replaced), (S.held, S.voided),
    (S.submitted, S.accepted), (S.submitted, S.rejected), (S.submitted, S.paid), (S.submitted, S.partially_paid),
    (S.submitted, S.denied),
    (S.accepted, S.paid), (S.accepted, S.partially_paid), (S.accepted, S.denied),
    (S.rejected, S.created), (S.rejected, S.replaced), (S.rejected, S.voided),
    (S.paid, S.partially_paid), (S.paid, S.denied), (S.paid, S.replaced), (S.paid, S.voided),
    (S.partially_paid, S.paid), (S.partially_paid, S.denied), (S.partially_paid, S.replaced),
    (S.partially_paid, S.voided),
    (S.denied, S.paid), (S.denied, S.partially_paid), (S.denied, S.replaced), (S.denied, S.voided),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ClaimState, ClaimState)))
def test_every_pair(source, target):
    assert can_move(source, target) == ((source, target) in ALLOWED)
    why = refusal(source, target)
    if (source, target) in ALLOWED:
        assert why is None
    else:
        assert why and (target.value in why or "already" in why)


def test_every_state_has_a_row_and_replaced_and_voided_are_final():
    assert set(TRANSITIONS) == set(ClaimState)
    assert not TRANSITIONS[S.replaced] and not TRANSITIONS[S.voided]
    assert "it is final" in refusal(S.voided, S.paid)


def test_an_unknown_state_is_named():
    assert "not a claim state" in refusal(S.created, "lost")
