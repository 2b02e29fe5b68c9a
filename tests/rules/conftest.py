"""Builders for rule tests: a clean, billable visit by default; each test changes only what it is about.

Test modules import these with `from .conftest import ...` (tests/rules is a package).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any, Self

from visitflow.models import (
    Acknowledgement,
    Discipline,
    GeoPoint,
    Note,
    PayerRules,
    Punch,
    PunchKind,
    PunchMethod,
    Signature,
    VisitSnapshot,
    VisitSpec,
    VisitState,
)
from visitflow.rules import AuthorizationFacts, GateInput, PatientFacts, UsageEntry
from visitflow.rules.geo import EARTH_RADIUS_M

SERVICE_DAY = date(2026, 11, 20)  # a Friday
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
HOME = GeoPoint(lat=30.2672, lon=-97.7431)  # the patient's service address
PATIENT_ID, CLINICIAN_ID, PAYER_ID = 7, 11, 3
PCA_FIELDS = {"tasks_performed": "bathing, meal prep", "client_condition": "stable, in good spirits"}


def moved(point: GeoPoint, north_m: float = 0.0, east_m: float = 0.0) -> GeoPoint:
    """A point roughly `north_m` north and `east_m` east of `point` (good enough for tests of a few km)."""
    metres_per_degree = EARTH_RADIUS_M * math.pi / 180
    return GeoPoint(lat=point.lat + north_m / metres_per_degree,
                    lon=point.lon + east_m / (metres_per_degree * math.cos(math.radians(point.lat))))


def punch(seq: int, kind: PunchKind, at: datetime, method: PunchMethod = PunchMethod.gps,
          location: GeoPoint | None = HOME, **extra: Any) -> Punch:
    return Punch(seq=seq, kind=kind, at=at, method=method, location=location,
                 recorded_by=extra.pop("recorded_by", "caregiver.ana"), recorded_at=extra.pop("recorded_at", at),
                 **extra)


def approval(key: str, decision: str = "approved", at: datetime = END + timedelta(hours=2)) -> Acknowledgement:
    return Acknowledgement(key=key, rule_id=key.split(":")[0], decision=decision, reason="checked with the family",
                           by="supervisor.sam", at=at)


def authorization(**overrides: Any) -> AuthorizationFacts:
    values: dict[str, Any] = dict(id=1, auth_number="PA-1", patient_id=PATIENT_ID, payer_id=PAYER_ID,
                                  service_code="T1019", modifiers=[], start_date=date(2026, 11, 1),
                                  end_date=date(2026, 12, 31), units_per_week=40)
    values.update(overrides)
    return AuthorizationFacts(**values)


class VisitBuilder:
    """A PCA T1019 visit 09:00-10:00 on 2026-11-20, punched by GPS at the home, documented and signed."""

    def __init__(self, **spec: Any) -> None:
        values: dict[str, Any] = dict(visit_id="v-1", patient_id=PATIENT_ID, clinician_id=CLINICIAN_ID,
                                      payer_id=PAYER_ID, discipline=Discipline.PCA, service_code="T1019",
                                      modifiers=[], scheduled_start=START, scheduled_end=END)
        values.update(spec)
        self.spec = VisitSpec(**values)
        self.punches: list[Punch] = [punch(1, PunchKind.clock_in, self.spec.scheduled_start),
                                     punch(2, PunchKind.clock_out, self.spec.scheduled_end)]
        self.next_seq = 2
        self.note: Note | None = Note(fields=dict(PCA_FIELDS), submitted_by="caregiver.ana",
                                      submitted_at=self.spec.scheduled_end + timedelta(minutes=5))
        self.signature: Signature | None = Signature(attestation="I attest", signed_by="caregiver.ana",
                                                     signed_at=self.spec.scheduled_end + timedelta(minutes=10))
        self.acknowledgements: list[Acknowledgement] = []

    # --- punches
    def no_punches(self) -> Self:
        self.punches = []
        return self

    def without(self, kind: PunchKind) -> Self:
        self.punches = [p for p in self.punches if p.kind != kind]
        return self

    def add_punch(self, kind: PunchKind, at: datetime, method: PunchMethod = PunchMethod.gps,
                  location: GeoPoint | None = HOME, **extra: Any) -> Self:
        """A further punch; it supersedes earlier ones of its kind."""
        self.next_seq += 1  # sequence numbers are never reused, as in the workflow
        self.punches.append(punch(self.next_seq, kind, at, method, location, **extra))
        return self

    # clock_in/clock_out replace the punch of that kind; the new one takes the next sequence number (3, 4, ...)
    def clock_in(self, at: datetime | None = None, **kw: Any) -> Self:
        return self.without(PunchKind.clock_in).add_punch(PunchKind.clock_in, at or self.spec.scheduled_start, **kw)

    def clock_out(self, at: datetime | None = None, **kw: Any) -> Self:
        return self.without(PunchKind.clock_out).add_punch(PunchKind.clock_out, at or self.spec.scheduled_end,
                                                           **kw)

    def worked(self, minutes: float) -> Self:
        """Clock in at the scheduled start and out `minutes` later."""
        return self.clock_in().clock_out(self.spec.scheduled_start + timedelta(minutes=minutes))

    # --- note, signature, acknowledgements
    def note_fields(self, **fields: str) -> Self:
        assert self.note is not None
        self.note = self.note.model_copy(update={"fields": fields})
        return self

    def no_note(self) -> Self:
        self.note = None
        return self

    def unsigned(self) -> Self:
        self.signature = None
        return self

    def ack(self, key: str, decision: str = "approved") -> Self:
        at = END + timedelta(hours=2, minutes=len(self.acknowledgements))
        self.acknowledgements.append(approval(key, decision, at))
        return self

    def build(self) -> VisitSnapshot:
        return VisitSnapshot(spec=self.spec, state=VisitState.signed, version=1, punches=list(self.punches),
                             note=self.note, signature=self.signature,
                             acknowledgements=list(self.acknowledgements))

    def ctx(self, *, payer: PayerRules | None = None, patient: PatientFacts | None = None,
            authorizations: list[AuthorizationFacts] | None = None,
            usage: dict[int, list[UsageEntry]] | None = None, **extra: Any) -> GateInput:
        """The visit with its facts: a Medicaid patient at HOME and one roomy authorization by default."""
        extra.setdefault("required_note_fields", ["tasks_performed", "client_condition"])
        return GateInput(
            visit=self.build(),
            patient=patient or PatientFacts(patient_id=PATIENT_ID, medicaid_id="TX123456789",
                                            service_location=HOME),
            payer=payer or PayerRules(),
            authorizations=[authorization()] if authorizations is None else authorizations,
            usage=usage or {},
            **extra,
        )


def visit(**spec: Any) -> VisitBuilder:
    return VisitBuilder(**spec)


def keys(findings: list[Any]) -> list[str]:
    return [f.key for f in findings]
