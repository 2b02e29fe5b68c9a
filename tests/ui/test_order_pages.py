"""The office's page of orders pending signature: what it shows, recording a signature or a return (ORD-02,
ORD-03), and who may use it."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from tests.ui.conftest import end_order_chases, htmx, sign_in
from visitflow.db.session import write_session
from visitflow.db.tables import ChangeRecord, PhysicianOrder, PhysicianOrderCreate
from visitflow.services import orders


async def enter(visits, sent_days_ago: int, frequency: str = "PCA 3W4") -> int:
    # The agency's today: the page counts an order's age in the agency's days (UTC's date is a day ahead in the
    # Chicago evening).
    agency, today = visits.agency, datetime.now(ZoneInfo(visits.settings.agency_timezone)).date()
    with write_session(visits.engine) as s:
        s.expire_on_commit = False
        order = orders.new_order(s, PhysicianOrderCreate(
            kind="verbal", patient_id=agency.patient.id, practitioner_npi="1234567893",
            practitioner_name=f"Dr. Okafor {agency.tag}", frequencies=[frequency], effective_from=today,
            sent_on=today - timedelta(days=sent_days_ago)), agency.actor("admin"))
        s.commit()
    with Session(visits.engine) as s:
        await orders.after_order_stored(s, visits.client, visits.settings, order, "order entered")
    return order.id


async def test_the_office_sees_pending_orders_and_records_signatures_and_returns(web, visits, engine):
    agency = visits.agency
    signed_id, returned_id = await enter(visits, 4), await enter(visits, 2, "PCA 1W2")
    try:
        token = await sign_in(web, agency.users["admin"].username)
        page = await web.get("/orders")
        assert page.status_code == 200 and f"Dr. Okafor {agency.tag}" in page.text
        assert f"Verbal order #{signed_id}" in page.text and "4 days" in page.text and "PCA 1W2" in page.text

        bad = await web.post(f"/orders/{signed_id}/sign", headers=htmx(token), data={"signed_on": "someday"})
        assert bad.status_code == 422 and "Give the date the practitioner signed" in bad.text
        early = await web.post(f"/orders/{signed_id}/sign", headers=htmx(token), data={"signed_on": "2001-01-01"})
        assert early.status_code == 422 and "before the order was sent" in early.text
        day = datetime.now(ZoneInfo("America/Chicago")).date().isoformat()  # signed today, in the agency's day
        ok = await web.post(f"/orders/{signed_id}/sign", headers=htmx(token),
                            data={"signed_on": day, "document_ref": "fax-88", "idempotency_key": "k-1"})
        assert ok.status_code == 200 and "recorded as signed" in ok.text
        again = await web.post(f"/orders/{signed_id}/sign", headers=htmx(token),
                               data={"signed_on": day, "document_ref": "fax-88", "idempotency_key": "k-1"})
        assert again.status_code == 200 and "recorded as signed" in again.text  # a double click: the same outcome

        blank = await web.post(f"/orders/{returned_id}/return", headers=htmx(token), data={"reason": " "})
        assert blank.status_code == 422 and "say why" in blank.text
        returned = await web.post(f"/orders/{returned_id}/return", headers=htmx(token),
                                  data={"reason": "frequency should be 2W2"})
        assert returned.status_code == 200 and "returned unsigned" in returned.text
        with Session(engine) as s:
            assert s.get(PhysicianOrder, signed_id).document_ref == "fax-88"
            assert s.get(PhysicianOrder, returned_id).status == "returned"
        after = await web.get("/orders")
        assert f"Verbal order #{signed_id}" not in after.text and f"Verbal order #{returned_id}" not in after.text
    finally:
        await end_order_chases(visits.client, visits.engine, [signed_id, returned_id])


async def test_supervisors_read_the_page_and_only_the_office_records(web, visits):
    agency = visits.agency
    order_id = await enter(visits, 1)
    try:
        token = await sign_in(web, agency.users["supervisor"].username)
        page = await web.get("/orders")
        assert page.status_code == 200 and f"#{order_id}" in page.text and "Signed on" not in page.text
        refused = await web.post(f"/orders/{order_id}/sign", headers=htmx(token), data={"signed_on": "2026-01-01"})
        assert refused.status_code == 403
        await web.post("/signout", headers=htmx(token))
        await sign_in(web, agency.users["biller"].username)
        assert (await web.get("/orders")).status_code == 403
    finally:
        await end_order_chases(visits.client, visits.engine, [order_id])


async def test_the_office_enters_an_order_from_the_page(web, visits, engine):
    agency = visits.agency
    token = await sign_in(web, agency.users["admin"].username)
    page = await web.get("/orders")
    assert page.status_code == 200 and "Enter an order sent for signature" in page.text
    today = datetime.now(ZoneInfo(visits.settings.agency_timezone)).date()  # the agency's day
    form = {"csrf_token": token, "kind": "plan_of_care", "patient_id": str(agency.patient.id),
            "practitioner_name": "Dr. Rivera", "practitioner_npi": "1234567890", "frequencies": "HHA 3W2, 2Q2",
            "effective_from": (today - timedelta(days=3)).isoformat(), "sent_on": today.isoformat()}
    wrong = await web.post("/orders", data=form)
    assert wrong.status_code == 422 and "NPI" in wrong.text and 'value="Dr. Rivera"' in wrong.text
    wrong = await web.post("/orders", data={**form, "practitioner_npi": "1234567893"})
    assert wrong.status_code == 422 and "position 9: expected W after the visit count" in wrong.text

    good = {**form, "practitioner_npi": "1234567893", "frequencies": "HHA 3W2, 2W2\nSN 1W4"}
    entered = await web.post("/orders", data=good)
    assert entered.status_code == 303 and "entered" in entered.headers["location"]
    shown = await web.get(entered.headers["location"])
    assert "its signature is being chased" in shown.text and "Dr. Rivera" in shown.text
    again = await web.post("/orders", data=good)  # a double click or a resend: one order
    assert again.status_code == 303 and "already+entered" in again.headers["location"]
    with Session(engine) as s:
        mine = s.exec(select(PhysicianOrder).where(PhysicianOrder.patient_id == agency.patient.id,
                                                   PhysicianOrder.practitioner_name == "Dr. Rivera")).all()
    assert len(mine) == 1 and mine[0].frequencies == ["HHA 3W2, 2W2", "SN 1W4"]
    await end_order_chases(visits.client, visits.engine, [mine[0].id])


async def test_the_office_changes_an_orders_frequencies_from_the_page(web, visits, engine):
    """AUTH-03 from the orders page: a changed frequency is checked, recorded (CHG-01), and sent again is the same."""
    agency = visits.agency
    order_id = await enter(visits, 1, "PCA 3W4")
    try:
        token = await sign_in(web, agency.users["admin"].username)
        page = await web.get("/orders")
        assert "Change an order&#39;s frequencies" in page.text or "Change an order's frequencies" in page.text
        form = {"csrf_token": token, "order_id": str(order_id), "frequencies": "pca 2x4"}
        wrong = await web.post("/orders/frequencies", data=form)
        assert wrong.status_code == 422 and "expected W after the visit count" in wrong.text
        assert 'value="' + str(order_id) + '"' in wrong.text  # what was typed stays
        missing = await web.post("/orders/frequencies",
                                 data={**form, "order_id": "1999999999", "frequencies": "PCA 1W4"})
        assert missing.status_code == 422 and "order 1999999999 not found" in missing.text
        nothing = await web.post("/orders/frequencies", data={**form, "order_id": "#", "frequencies": " "})
        assert nothing.status_code == 422 and "Give the order&#39;s number" in nothing.text

        changed = await web.post("/orders/frequencies", data={**form, "frequencies": " PCA 1W4 \n"})
        assert changed.status_code == 303 and f"Order+{order_id}+now+orders+PCA+1W4" in changed.headers["location"]
        again = await web.post("/orders/frequencies", data={**form, "frequencies": "PCA 1W4"})  # a resend
        assert again.status_code == 303
        with Session(engine) as s:
            assert s.get(PhysicianOrder, order_id).frequencies == ["PCA 1W4"]
            cut = s.exec(select(ChangeRecord).where(ChangeRecord.subject == f"order {order_id}",
                                                    ChangeRecord.kind == "order_changed")).all()
        assert len(cut) == 1 and cut[0].fields[0]["after"] == ["PCA 1W4"]  # the resend recorded nothing more
    finally:
        await end_order_chases(visits.client, visits.engine, [order_id])
