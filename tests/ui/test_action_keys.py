"""Every UI action form carries a key drawn with the form: a double click or a resend acts once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

from tests.ui.conftest import NOTE, VisitSetup, htmx, recent_start, sign_in
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

KEY = re.compile(r'<form id="([^"]+)"[^>]*>\s*<input type="hidden" name="idempotency_key" value="([0-9a-f]{32})">')


def form_keys(html: str) -> dict[str, str]:
    """Each action form on the page (by its id) and the key it was drawn with."""
    return dict(KEY.findall(html))


async def timeline(visits: VisitSetup, visit_id: str) -> Counter:
    snap = await visits.client.get_workflow_handle(visit_workflow_id(visit_id)).query(VisitWorkflow.snapshot)
    return Counter(e.kind for e in snap.timeline)


async def test_a_double_submitted_note_and_signature_are_recorded_once(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start())
    token = await sign_in(web, agency.users["clinician"].username)
    page = (await web.get(f"/visits/{visit_id}")).text
    keys = form_keys(page)
    note_key = next(k for fid, k in keys.items() if fid.startswith("note"))
    note = {f"note_{name}": text for name, text in NOTE.items()} | {"idempotency_key": note_key}
    # Two clicks before the first answer arrives, as an impatient person on a slow phone makes them.
    first, second = await asyncio.gather(
        web.post(f"/visits/{visit_id}/note", data=note, headers=htmx(token)),
        web.post(f"/visits/{visit_id}/note", data=note, headers=htmx(token)))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert (await timeline(visits, visit_id))["note_submitted"] == 1

    panel = first.text  # the work panel comes back with a fresh sign form, and a fresh key
    sign_key = next(k for fid, k in form_keys(panel).items() if fid.startswith("sign"))
    assert sign_key != note_key
    signed = {"attestation": "yes", "idempotency_key": sign_key}
    assert (await web.post(f"/visits/{visit_id}/sign", data=signed, headers=htmx(token))).status_code == 200
    again = await web.post(f"/visits/{visit_id}/sign", data=signed, headers=htmx(token))  # resent after a timeout
    assert again.status_code == 200 and "already signed" not in again.text
    assert (await timeline(visits, visit_id))["signed"] == 1


async def test_a_form_drawn_again_with_an_error_keeps_its_key(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start())
    token = await sign_in(web, agency.users["clinician"].username)
    keys = form_keys((await web.get(f"/visits/{visit_id}")).text)
    note_key = next(k for fid, k in keys.items() if fid.startswith("note"))
    rejected = await web.post(f"/visits/{visit_id}/note", headers=htmx(token),
                              data={"note_tasks_performed": "Bathing", "idempotency_key": note_key})
    assert rejected.status_code == 422
    assert note_key in form_keys(rejected.text).values()  # a resend of the fixed form is still one action
