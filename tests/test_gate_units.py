"""The gate check's units (AUTH-02), run by the real `evaluate_gates` activity against a database of the test's own:
held once, kept when nothing changed, moved when the visit's authorization changes, given back when none covers
it; a visit whose payer is gone is refused for good."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError

from tests.test_read_model import NOW, Model, lifecycle
from visitflow.db.session import write_session
from visitflow.db.tables import Authorization, AuthorizationUsage


@pytest.fixture
def model(empty_database_url) -> Model:
    return Model(empty_database_url)


def add_authorization(model: Model, number: str) -> int:
    with write_session(model.engine) as s:
        auth = Authorization(auth_number=number, patient_id=model.patient.id, payer_id=model.payers[0].id,
                             service_code="T1019", start_date=(NOW - timedelta(days=30)).date(),
                             end_date=(NOW + timedelta(days=30)).date(), units_total=100)
        s.add(auth)
        s.commit()
        return auth.id


def held(model: Model) -> list[tuple]:
    with Session(model.engine) as s:
        return [(u.visit_id, u.authorization_id, u.units) for u in s.exec(select(AuthorizationUsage))]


def test_units_are_held_kept_moved_and_given_back(model: Model):
    first = add_authorization(model, "A-1")
    signed = lifecycle(model, "G-1", NOW - timedelta(days=1))[2]
    other = lifecycle(model, "G-2", NOW - timedelta(days=2))[2]
    gates = model.activities.evaluate_gates

    assert model.env.run(gates, signed).authorization_id == first
    model.env.run(gates, other)
    assert held(model) == [("G-1", first, 8), ("G-2", first, 8)]
    model.env.run(gates, signed)  # checked again (a re-sent note, a retried activity): the same units, once
    assert held(model) == [("G-1", first, 8), ("G-2", first, 8)]

    # The first authorization is withdrawn and a new one covers the visit: its units move there.
    with write_session(model.engine) as s:
        s.execute(update(Authorization).where(Authorization.id == first).values(active=False))
        s.commit()
    second = add_authorization(model, "A-2")
    assert model.env.run(gates, signed).authorization_id == second
    assert sorted(held(model)) == [("G-1", second, 8), ("G-2", first, 8)]

    # Now it is under an authorization for another service, which is not a candidate for this visit any more:
    # the units it holds there are found all the same and given back, as none covers it.
    with write_session(model.engine) as s:
        s.execute(update(Authorization).where(Authorization.id == second).values(service_code="S5125"))
        s.commit()
    result = model.env.run(gates, signed)
    assert any(f.gate.value == "authorized" for f in result.findings)
    assert held(model) == [("G-2", first, 8)]


def test_a_visit_whose_payer_is_gone_is_refused_for_good(model: Model):
    add_authorization(model, "A-1")
    snap = lifecycle(model, "G-3", NOW - timedelta(days=1))[2]
    gone = snap.model_copy(update={"spec": snap.spec.model_copy(update={"payer_id": 999_999})})
    with pytest.raises(ApplicationError, match="missing patient or payer") as refused:
        model.env.run(model.activities.evaluate_gates, gone)
    assert refused.value.non_retryable
    assert held(model) == []
