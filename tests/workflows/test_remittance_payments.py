"""One payment counts once: a cut-short 835 is refused whole, a copy re-sent under new control numbers (or two
imports of it at once) is the payment already imported, and "paid" is the money applied to our claims' lines."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.workflows.test_denials import released_visit
from tests.workflows.test_remittance_api import api  # noqa: F401 (fixture)
from tests.workflows.test_remittance_import import claim_for, run_import
from visitflow.db.session import write_session
from visitflow.db.tables import PaymentDay, Remittance
from visitflow.services import remittances as remittance_service
from visitflow.services.revenue import rebuild_revenue_rollups, revenue_at_risk


def resent(text: str, control: int) -> str:
    """The same payment as the payer's clearinghouse sends it again: only ISA13 and GS06 (and their trailers)
    change."""
    isa13, gs06 = "000002001", "2001"
    new13, new06 = f"{control:09d}", str(control)
    return (text.replace(f"*{isa13}*", f"*{new13}*").replace(f"IEA*1*{isa13}", f"IEA*1*{new13}")
            .replace(f"*1200*{gs06}*X*", f"*1200*{new06}*X*")
            .replace(f"GE*1*{gs06}", f"GE*1*{new06}"))


def money_now(engine):
    now = datetime.now(UTC)
    with Session(engine) as s:
        return revenue_at_risk(s, now, now.astimezone(ZoneInfo("America/Chicago")).date())


def one_payment(engine, agency, spec, paid_cents: int = 4400, trace: str | None = None) -> tuple[str, str]:
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    trace = trace or f"EFT-{uuid.uuid4().hex[:8].upper()}"
    return trace, write_835([
        ClaimAnswer(claim.control_number, "PAY-1", [LineAnswer(
            spec.visit_id, "T1019", 4800, paid_cents, 8, spec.scheduled_start.date(),
            adjustments=[("CO", "45", 4800 - paid_cents)] if paid_cents < 4800 else [])]),
        ClaimAnswer("NOT-OURS-9", "PAY-9", [LineAnswer(None, "T1019", 2400, 2400, 4, spec.scheduled_start.date())]),
    ], trace=trace)


def rows_for(engine, trace: str) -> list[Remittance]:
    with Session(engine) as s:
        return list(s.exec(select(Remittance).where(Remittance.trace_number == trace)).all())


async def test_a_cut_short_835_is_refused_in_words_and_nothing_is_recorded(api, client, agency, engine, t0):
    _handle, spec = await released_visit(client, agency, t0)
    trace, text = one_payment(engine, agency, spec)
    cut = text[:text.index("CLP*NOT-OURS-9") + 12]  # cut short inside a CLP: no SE, GE or IEA
    assert "CLP*" in cut and "IEA" not in cut
    before = money_now(engine).paid_cents
    auth = {"Authorization": f"Bearer {agency.token('biller')}"}
    for sent in ({"content": cut, "headers": {**auth, "Content-Type": "text/plain"}},
                 {"json": {"x12": cut, "filename": "era.835"}, "headers": auth}):
        r = await api.post("/api/remittances", **sent)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert "incomplete" in detail and "nothing was imported" in detail
        assert 'Mandatory segment "Interchange Control Trailer"' in detail
        assert 'Mandatory segment "Transaction Set Trailer"' in detail
    assert rows_for(engine, trace) == [] and money_now(engine).paid_cents == before
    # The whole file is taken as usual.
    whole = await api.post("/api/remittances", content=text, headers={**auth, "Content-Type": "text/plain"})
    assert whole.status_code == 201, whole.text


async def test_a_copy_resent_under_new_control_numbers_is_the_payment_already_imported(api, client, agency, engine,
                                                                                     t0):
    _handle, spec = await released_visit(client, agency, t0)
    trace, text = one_payment(engine, agency, spec)
    auth = {"Authorization": f"Bearer {agency.token('biller')}", "Content-Type": "text/plain"}
    before = money_now(engine).paid_cents

    first = await api.post("/api/remittances", content=text, headers=auth)
    assert first.status_code == 201, first.text
    assert money_now(engine).paid_cents == before + 4400
    for control, copy in ((3002, resent(text, 3002)), (3003, resent(text, 3003).replace(trace, trace.lower()))):
        assert copy != text and f"{control:09d}" in copy
        again = await api.post("/api/remittances", content=copy, headers=auth)
        assert again.status_code == 200, again.text
        assert again.json()["already_imported"] is True
        assert again.json()["remittance"]["id"] == first.json()["remittance"]["id"]
    assert len(rows_for(engine, trace)) == 1
    assert money_now(engine).paid_cents == before + 4400
    listed = (await api.get("/api/remittances?limit=200", headers=auth)).json()["items"]
    assert [r["trace_number"] for r in listed].count(trace) == 1


async def test_two_copies_imported_at_once_make_one_remittance(api, client, agency, engine, t0):
    _handle, spec = await released_visit(client, agency, t0)
    trace, text = one_payment(engine, agency, spec)
    auth = {"Authorization": f"Bearer {agency.token('biller')}", "Content-Type": "text/plain"}
    answers = await asyncio.gather(*(api.post("/api/remittances", content=copy, headers=auth)
                                     for copy in (text, resent(text, 4002), resent(text, 4003))))
    assert sorted(a.status_code for a in answers) == [200, 200, 201], [a.text for a in answers]
    assert len({a.json()["remittance"]["id"] for a in answers}) == 1
    assert len(rows_for(engine, trace)) == 1


async def test_the_database_refuses_a_second_row_for_one_payment(client, agency, engine, t0, monkeypatch):
    _handle, spec = await released_visit(client, agency, t0)
    trace, text = one_payment(engine, agency, spec)
    first = await run_import(engine, client, agency, text)
    # A second row for the payment, whatever its file's digest: the unique key refuses it.
    with pytest.raises(IntegrityError), write_session(engine) as s:
        s.add(Remittance(**first.remittance.model_dump(exclude={"id"}), digest=uuid.uuid4().hex, content="x",
                         payment_key=remittance_service.payment_key("1512345678", "TEXAS MEDICAID", trace, "")))
        s.commit()
    # Two imports that both read "not imported yet" before either wrote: the second is refused by the key and
    # answers with the one that stands.
    copy = resent(text, 5002)
    real = remittance_service._imported_before
    calls = []

    def late_reader(session, digest, key):  # the first read misses the other import; the one after the refusal sees it
        calls.append(key)
        return None if len(calls) == 1 else real(session, digest, key)

    monkeypatch.setattr(remittance_service, "_imported_before", late_reader)
    again = await run_import(engine, client, agency, copy)
    assert again.already_imported and again.remittance.id == first.remittance.id and len(calls) == 2
    assert len(rows_for(engine, trace)) == 1


async def test_paid_is_the_money_applied_to_our_claims_and_a_rebuild_recounts_it(client, agency, engine, t0):
    _handle, spec = await released_visit(client, agency, t0)
    _trace, text = one_payment(engine, agency, spec, paid_cents=4400)  # BPR: $44.00 ours + $24.00 not ours
    before = money_now(engine)
    outcome = await run_import(engine, client, agency, text)
    assert outcome.remittance.amount_cents == 6800
    after = money_now(engine)
    assert after.paid_cents - before.paid_cents == 4400
    assert after.unmatched_cents - before.unmatched_cents == 2400

    def kept():
        with Session(engine) as s:
            return sorted((r.day, r.applied_cents, r.unmatched_cents) for r in s.exec(select(PaymentDay)))
    rows = kept()
    with write_session(engine) as s:
        rebuild_revenue_rollups(s)
        s.commit()
    assert kept() == rows
    assert money_now(engine).paid_cents == after.paid_cents


async def test_a_line_paid_less_is_counted_as_adjusted_not_denied(api, client, agency, engine, t0):
    _handle, spec = await released_visit(client, agency, t0)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    text = write_835([ClaimAnswer(claim.control_number, "PAY-2", [LineAnswer(
        spec.visit_id, "T1019", 9328, 6000, 16, spec.scheduled_start.date(), adjustments=[("CO", "96", 3328)],
        remarks=["N130"])])], trace=f"EFT-{uuid.uuid4().hex[:8]}")
    r = await api.post("/api/remittances", content=text,
                       headers={"Authorization": f"Bearer {agency.token('biller')}", "Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["lines"][0]["outcome"] == "adjusted"
    assert (body["remittance"]["lines_paid"], body["remittance"]["lines_adjusted"],
            body["remittance"]["lines_denied"]) == (0, 1, 0)
    assert body["returned_to_work"] == [spec.visit_id]


def test_payment_key_ignores_case_and_spaces_and_falls_back_to_the_file():
    key = remittance_service.payment_key
    assert key("1512345678", "TEXAS MEDICAID", " eft5001 ", "d") == key("1512345678 ", "Texas Medicaid", "EFT5001", "e")
    assert key(None, "Texas Medicaid", "EFT5001", "d") == key("", "TEXAS MEDICAID ", "EFT5001", "e")
    assert key("1512345678", "TEXAS MEDICAID", "EFT5001", "d") != key("1999999999", "TEXAS MEDICAID", "EFT5001", "d")
    assert key("1512345678", "TEXAS MEDICAID", "", "d") != key("1512345678", "TEXAS MEDICAID", "", "e")


async def test_rebuild_rollups_recounts_the_money_paid(client, agency, engine, database_url, t0):
    _handle, spec = await released_visit(client, agency, t0)
    _trace, text = one_payment(engine, agency, spec)
    await run_import(engine, client, agency, text)

    def kept():
        with Session(engine) as s:
            return sorted((r.day, r.applied_cents, r.unmatched_cents) for r in s.exec(select(PaymentDay)))
    rows = kept()
    with write_session(engine) as s:  # lost or wrong, as a repair finds them
        for row in s.exec(select(PaymentDay)):
            row.applied_cents += 999
            s.add(row)
        s.commit()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "visitflow.cli", "rebuild-rollups", env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert "days of payments" in out.decode()
    assert kept() == rows
