"""AUTH-02 under concurrency: visits checked at the same moment never share the last units."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, func, select

from tests.conftest import HOME
from visitflow.activities.visits import VisitActivities
from visitflow.db.tables import AuthorizationUsage
from visitflow.models import (
    GeoPoint,
    Note,
    Punch,
    PunchKind,
    PunchMethod,
    Signature,
    VisitSnapshot,
    VisitState,
)


def signed_visit(agency, start: datetime) -> VisitSnapshot:
    spec = agency.spec(start)
    home = GeoPoint(lat=HOME[0], lon=HOME[1])
    punches = [Punch(seq=i + 1, kind=kind, at=at, method=PunchMethod.gps, location=home, recorded_by="t",
                     recorded_at=at) for i, (kind, at) in enumerate(
        [(PunchKind.clock_in, spec.scheduled_start), (PunchKind.clock_out, spec.scheduled_end)])]
    return VisitSnapshot(spec=spec, state=VisitState.signed, version=3, punches=punches,
                         note=Note(fields={"tasks_performed": "x", "client_condition": "y"}, submitted_by="t",
                                   submitted_at=spec.scheduled_end),
                         signature=Signature(attestation="ok", signed_by="t", signed_at=spec.scheduled_end))


def test_only_one_of_many_simultaneous_visits_gets_the_last_units(agency, engine):
    start = datetime(2026, 11, 10, 9, tzinfo=UTC)
    auth = agency.authorize(start.date() - timedelta(days=5), start.date() + timedelta(days=5), units_total=10)
    visits = [signed_visit(agency, start + timedelta(hours=3 * i)) for i in range(8)]  # 8 units each
    activities = VisitActivities(engine)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(activities.evaluate_gates, visits))
    passed = [r for r in results if not r.findings]
    held = [r for r in results if [f.rule_id for f in r.findings] == ["AUTH-02"]]
    assert (len(passed), len(held)) == (1, 7)
    with Session(engine) as s:
        used = s.exec(select(func.sum(AuthorizationUsage.units)).where(
            AuthorizationUsage.authorization_id == auth.id)).one()
    assert used == 8
