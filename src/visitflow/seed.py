"""A small, realistic demo agency, seeded when the database is empty.

Visits are driven through the same service calls the API uses, so the demo shows every queue:
claim-ready visits, an EVV exception, a missing authorization, a manual punch, an overdue note, a missed visit
(MV-02) and a lapsed aide supervision holding an aide visit (SUP-01).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel import Session, select
from temporalio.client import Client

from visitflow.db.session import get_engine, write_session
from visitflow.db.tables import (
    ApiToken,
    Authorization,
    Clinician,
    Patient,
    PatientSupervisionCreate,
    Payer,
    PhysicianOrderCreate,
    User,
)
from visitflow.models import (
    Discipline,
    GeoPoint,
    MarkMissed,
    MissedReason,
    PunchInput,
    PunchKind,
    PunchMethod,
    ReasonCode,
    RecordPunch,
    Role,
    RoundingStrategy,
    SignNote,
    SubmitNote,
    VisitState,
)
from visitflow.security import hash_password, token_digest
from visitflow.services.changes import AUTHORIZATION_FACTS, announce_change, record_authorization_change
from visitflow.services.commands import (
    ScheduleRequest,
    act,
    actor_of,
    recheck_visits_for,
    schedule_visit,
    visit_snapshot,
)
from visitflow.services.orders import after_order_stored, new_order, sign_order
from visitflow.services.supervision import agency_today, set_supervision
from visitflow.services.users import TOKEN_PREFIX_CHARS
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow

DEMO_PASSWORD = "demo"
DEMO_USERS = [  # username, display name, role, clinician (by last name)
    ("olivia", "Olivia Grant (office)", Role.admin, None),
    ("carla", "Carla Reyes, RN", Role.clinician, "Reyes"),
    ("devon", "Devon Price (PCA)", Role.clinician, "Price"),
    ("sam", "Sam Okafor (clinical supervisor)", Role.supervisor, None),
    ("bea", "Bea Lindqvist (billing)", Role.biller, None),
]


def demo_token(username: str) -> str:
    return f"demo-{username}-token"


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=UTC)


async def seed_demo(settings: Settings, client: Client) -> str | None:
    """Seed the demo agency if there are no users yet; returns a summary to print, or None."""
    engine = get_engine(settings.resolved_database_url)
    with Session(engine) as s:
        if s.exec(select(User)).first() is not None:
            return None
        tx = Payer(name="Texas Medicaid (TMHP)", payer_code="TXMCD", evv_radius_m=402, clock_tolerance_min=15,
                   rounding=RoundingStrategy.nearest_quarter, rate_per_unit_cents=583,
                   billing_period="week", filing_limit_days=95, filing_warning_days=20)
        mco = Payer(name="Superior HealthPlan STAR+PLUS", payer_code="SUPHP", evv_radius_m=250,
                    clock_tolerance_min=7, rounding=RoundingStrategy.cms_8_minute, rate_per_unit_cents=612,
                    billing_period="visit", filing_limit_days=120,
                    missed_visit_notice_to="STAR+PLUS service coordinator")
        patients = [
            Patient(first_name="Alice", last_name="Moreno", birth_date=date(1941, 3, 9), medicaid_id="518273645",
                    address_line="1100 Congress Ave", city="Austin", state="TX", zip_code="78701",
                    latitude=30.2747, longitude=-97.7404, phone="512-555-0101", gender="F",
                    diagnosis_codes=["R26.89", "Z74.1"]),
            Patient(first_name="Bob", last_name="Whitfield", birth_date=date(1938, 11, 2), medicaid_id="518273646",
                    address_line="2300 S Lamar Blvd", city="Austin", state="TX", zip_code="78704",
                    latitude=30.2459, longitude=-97.7796, phone="512-555-0102", gender="M",
                    diagnosis_codes=["I69.351", "Z74.09"]),
            Patient(first_name="Dora", last_name="Kim", birth_date=date(1950, 6, 21), medicaid_id="518273647",
                    address_line="4800 Burnet Rd", city="Austin", state="TX", zip_code="78756",
                    latitude=30.3205, longitude=-97.7391, phone="512-555-0103", gender="F",
                    diagnosis_codes=["G30.9"]),
            Patient(first_name="Ernest", last_name="Hall", birth_date=date(1944, 1, 30), medicaid_id="518273648",
                    address_line="6500 Manchaca Rd", city="Austin", state="TX", zip_code="78745",
                    latitude=30.2010, longitude=-97.7990, phone="512-555-0104", gender="M",
                    diagnosis_codes=["M62.81", "Z74.1"]),
        ]
        carla = Clinician(first_name="Carla", last_name="Reyes", discipline=Discipline.RN, npi="1245319599")
        devon = Clinician(first_name="Devon", last_name="Price", discipline=Discipline.PCA, npi="1679576722")
        s.add_all([tx, mco, *patients, carla, devon])
        s.flush()
        clinicians = {"Reyes": carla, "Price": devon}
        for username, name, role, clin in DEMO_USERS:
            user = User(username=username, display_name=name, role=role,
                        clinician_id=clinicians[clin].id if clin else None, password_hash=hash_password(DEMO_PASSWORD))
            s.add(user)
            s.flush()
            token = demo_token(username)
            s.add(ApiToken(user_id=user.id, name="Demo token", token_hash=token_digest(token),
                           prefix=token[:TOKEN_PREFIX_CHARS], created_at=datetime.now(UTC)))
        today = datetime.now(UTC).date()
        s.add_all([
            Authorization(auth_number="PA-TX-24017", patient_id=patients[0].id, payer_id=tx.id, service_code="T1019",
                          start_date=today - timedelta(days=60), end_date=today + timedelta(days=120),
                          units_per_week=60),
            Authorization(auth_number="PA-TX-24018", patient_id=patients[0].id, payer_id=tx.id, service_code="G0299",
                          start_date=today - timedelta(days=60), end_date=today + timedelta(days=120), units_total=80),
            Authorization(auth_number="SUP-88120", patient_id=patients[1].id, payer_id=mco.id, service_code="S5125",
                          modifiers=["U1"], start_date=today - timedelta(days=30),
                          end_date=today + timedelta(days=60), units_per_day=16),
            Authorization(auth_number="PA-TX-24031", patient_id=patients[3].id, payer_id=tx.id, service_code="T1019",
                          start_date=today - timedelta(days=90), end_date=today + timedelta(days=90),
                          units_per_week=40),
        ])
        s.commit()
        users = {u.username: u for u in s.exec(select(User))}
        ids = {"tx": tx.id, "mco": mco.id, "alice": patients[0].id, "bob": patients[1].id, "dora": patients[2].id,
               "ernest": patients[3].id,
               "carla": carla.id, "devon": devon.id}

        admin, devon_user = actor_of(users["olivia"]), actor_of(users["devon"])
        supervisor = actor_of(users["sam"])
        alice_home, bob_home = GeoPoint(lat=30.2747, lon=-97.7404), GeoPoint(lat=30.2459, lon=-97.7796)
        ernest_home = GeoPoint(lat=30.2010, lon=-97.7990)
        yesterday = today - timedelta(days=1)
        aide_note = {"tasks_performed": "Bathing, meal preparation, light housekeeping",
                     "client_condition": "Alert and in good spirits; ate full lunch"}

        async def visit(visit_id, patient, payer, clinician, code, start, end, modifiers=()):
            await schedule_visit(s, client, settings, ScheduleRequest(
                id=visit_id, patient_id=ids[patient], clinician_id=ids[clinician], payer_id=ids[payer],
                service_code=code, modifiers=list(modifiers), scheduled_start=start, scheduled_end=end), admin)

        async def punch(visit_id, kind, at, where, method=PunchMethod.gps, reason=None, text=None, by=None):
            await act(client, visit_id, VisitWorkflow.record_punch, RecordPunch(
                actor=by or devon_user, now=datetime.now(UTC), punch=PunchInput(
                    kind=kind, at=at, method=method, location=where, reason_code=reason, reason_text=text)))

        async def document(visit_id, actor, fields):
            await act(client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=actor, fields=fields))
            await act(client, visit_id, VisitWorkflow.sign_note, SignNote(actor=actor, attestation=True))

        # Clean visit: claim-ready.
        await visit("V-1001", "alice", "tx", "devon", "T1019", _at(yesterday, 9), _at(yesterday, 13))
        await punch("V-1001", PunchKind.clock_in, _at(yesterday, 9, 2), alice_home)
        await punch("V-1001", PunchKind.clock_out, _at(yesterday, 12, 58), alice_home)
        await document("V-1001", devon_user, aide_note)
        # Clock-in 2.3 km from Bob's home: EVV-02 exception for the supervisor.
        await visit("V-1002", "bob", "mco", "devon", "S5125", _at(yesterday, 14), _at(yesterday, 16), ["U1"])
        await punch("V-1002", PunchKind.clock_in, _at(yesterday, 14, 3), GeoPoint(lat=30.2662, lon=-97.7729))
        await punch("V-1002", PunchKind.clock_out, _at(yesterday, 16, 1), bob_home)
        await document("V-1002", devon_user, aide_note)
        # No authorization on file for Dora: AUTH-01 hold for billing.
        await visit("V-1003", "dora", "tx", "devon", "T1019", _at(yesterday, 17), _at(yesterday, 19))
        await punch("V-1003", PunchKind.clock_in, _at(yesterday, 17), None, PunchMethod.telephony)
        await punch("V-1003", PunchKind.clock_out, _at(yesterday, 19, 2), None, PunchMethod.telephony)
        await document("V-1003", devon_user, aide_note)
        # Forgot to clock out: a manual punch waits for supervisor approval (EVV-04).
        day2 = today - timedelta(days=2)
        await visit("V-1004", "alice", "tx", "devon", "T1019", _at(day2, 9), _at(day2, 12))
        await punch("V-1004", PunchKind.clock_in, _at(day2, 9, 1), alice_home)
        await punch("V-1004", PunchKind.clock_out, _at(day2, 12), None, PunchMethod.manual, ReasonCode.forgot_to_clock)
        await document("V-1004", devon_user, aide_note)
        # RN visit three days ago with no note: reminder sent, escalated to the supervisor.
        day3 = today - timedelta(days=3)
        await visit("V-1005", "alice", "tx", "carla", "G0299", _at(day3, 10), _at(day3, 11))
        # Tomorrow's visits: waiting for the caregiver.
        tomorrow = today + timedelta(days=1)
        await visit("V-1006", "alice", "tx", "devon", "T1019", _at(tomorrow, 9), _at(tomorrow, 13))
        await visit("V-1007", "bob", "mco", "devon", "S5125", _at(tomorrow, 14), _at(tomorrow, 16), ["U1"])
        # Nobody answered at Bob's two days ago: marked missed (MV-02), never billed; the plan's service
        # coordinator is to be told.
        await visit("V-1008", "bob", "mco", "devon", "S5125", _at(day2, 15), _at(day2, 17), ["U1"])
        await act(client, "V-1008", VisitWorkflow.mark_missed, MarkMissed(
            actor=supervisor, reason=MissedReason.not_home, reason_text="Rang twice, no answer; left a voicemail"))
        # Ernest's aide care was last supervised 75 days ago (aide-only: every 60 days): SUP-01 lapsed, so his
        # aide visit yesterday is held until Carla documents a supervisory visit.
        s.rollback()
        local_today = agency_today(settings)
        await set_supervision(engine, client, settings, ids["ernest"], PatientSupervisionCreate(
            care="aide_only", supervising_clinician_id=ids["carla"], last_visit_on=local_today - timedelta(days=75)),
            admin, today=local_today)
        await visit("V-1009", "ernest", "tx", "devon", "T1019", _at(yesterday, 20), _at(yesterday, 22))
        await punch("V-1009", PunchKind.clock_in, _at(yesterday, 20, 1), ernest_home)
        await punch("V-1009", PunchKind.clock_out, _at(yesterday, 21, 59), ernest_home)
        await document("V-1009", devon_user, aide_note)

        # Physician orders (ORD-01..03, AUTH-03). A Medicare home health payer bills nursing only under a signed
        # order: Bob's plan of care went out nine days ago and is still unsigned, so his documented RN visit waits
        # on it (ORD-02) and the office has already been reminded (ORD-03).
        # The worker is running the visits above by now: write as its activities do (write_session queues
        # the writers on SQLite).
        with write_session(engine) as w:
            medicare = Payer(name="Medicare (home health)", payer_code="MCRHH", evv_required=False,
                             rate_per_unit_cents=1450, billing_period="visit", filing_limit_days=365,
                             orders_required=[Discipline.RN, Discipline.LPN, Discipline.PT, Discipline.HHA],
                             signed_orders_before_billing=True)
            w.add(medicare)
            w.flush()
            ids["medicare"] = medicare.id
            w.add(Authorization(auth_number="MCR-HH-5521", patient_id=ids["bob"], payer_id=medicare.id,
                                service_code="G0299", start_date=today - timedelta(days=30),
                                end_date=today + timedelta(days=60)))
            w.commit()
        carla_user = actor_of(users["carla"])
        rn_note = {"assessment": "Vitals stable, wound edges approximating", "interventions": "Dressing change",
                   "patient_response": "Tolerated well", "plan": "Continue weekly skilled nursing"}

        async def order(patient: str, frequency: str, effective_days_ago: int, sent_days_ago: int, doc: str):
            with write_session(engine) as w:
                w.expire_on_commit = False
                placed = new_order(w, PhysicianOrderCreate(
                    kind="plan_of_care", patient_id=ids[patient], practitioner_npi="1234567893",
                    practitioner_name="Dr. Elena Rivera", frequencies=[frequency],
                    effective_from=today - timedelta(days=effective_days_ago),
                    effective_to=today + timedelta(days=40), sent_on=today - timedelta(days=sent_days_ago),
                    document_ref=doc), admin)
                w.commit()
            with Session(engine) as r:
                await after_order_stored(r, client, settings, placed, "order entered")
            return placed.id

        await order("bob", "SN 1W8", 12, 9, "POC-BW-0412")
        await visit("V-1101", "bob", "medicare", "carla", "G0299", _at(yesterday, 10), _at(yesterday, 11))
        await document("V-1101", carla_user, rn_note)
        # Alice's plan of care orders one nursing visit a week and is signed; a second RN visit in the same
        # order week (beside V-1005) is over the frequency and is held for the office (AUTH-03).
        alice_order = await order("alice", "SN 1W8", 20, 19, "POC-AM-0398")
        await sign_order(engine, client, settings, alice_order, today - timedelta(days=15), "POC-AM-0398", admin)
        await visit("V-1102", "alice", "tx", "carla", "G0299", _at(yesterday, 15), _at(yesterday, 16))
        # Clocked in and out at Alice's (Texas Medicaid wants EVV): the frequency is its one problem.
        await punch("V-1102", PunchKind.clock_in, _at(yesterday, 15, 1), alice_home, by=carla_user)
        await punch("V-1102", PunchKind.clock_out, _at(yesterday, 15, 58), alice_home, by=carla_user)
        await document("V-1102", carla_user, rn_note)

        # CHG-01: a claim-ready visit that a cut to its authorization puts back on hold ("What changed" page).
        day4 = today - timedelta(days=4)
        await visit("V-1010", "bob", "mco", "devon", "S5125", _at(day4, 14), _at(day4, 16), ["U1"])
        await punch("V-1010", PunchKind.clock_in, _at(day4, 14), bob_home)
        await punch("V-1010", PunchKind.clock_out, _at(day4, 16), bob_home)
        await document("V-1010", devon_user, aide_note)
        await _cut_authorization(engine, client, settings, "SUP-88120", "V-1010", users["olivia"].username)

    lines = ["Seeded the demo agency. Users (password 'demo'; API token in brackets):"]
    lines += [f"  {u:<7} {role.value:<10} [{demo_token(u)}]" for u, _, role, _ in DEMO_USERS]
    return "\n".join(lines)


async def _cut_authorization(engine, client: Client, settings: Settings, auth_number: str, ready_visit: str,
                             by: str) -> None:
    """The payer cut the daily units after the visit was claim-ready: recorded as a change (CHG-01) that puts the
    visit back on hold, as an authorization PATCH does."""
    for _ in range(200):  # the visit checks its gates within moments of the signature
        if (await visit_snapshot(client, ready_visit)).state == VisitState.claim_ready:
            break
        await asyncio.sleep(0.05)
    with write_session(engine) as s:
        auth = s.exec(select(Authorization).where(Authorization.auth_number == auth_number)).one()
        before = {k: getattr(auth, k) for k in AUTHORIZATION_FACTS}
        auth.units_per_day, auth.version, auth.updated_at = 4, auth.version + 1, datetime.now(UTC)
        s.add(auth)
        change_id = record_authorization_change(s, by, auth, before).id
        s.commit()
        s.refresh(auth)
        rechecked = await recheck_visits_for(s, client, auth, "changed (units_per_day=4)", change_id=change_id)
    await announce_change(engine, client, settings, change_id, rechecked)
