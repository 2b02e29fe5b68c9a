"""POST /api/remittances as a billing system would use it: a file, a retry, a bad file."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.workflows.test_denials import released_visit
from tests.workflows.test_remittance_import import claim_for
from visitflow.main import create_app
from visitflow.settings import Settings


@pytest_asyncio.fixture
async def api(env, worker, database_url, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path)
    app = create_app(settings, temporal=env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_a_billing_system_posts_an_835_and_retries_it(api, client, agency, engine, t0):
    _handle, spec = await released_visit(client, agency, t0)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    text = write_835([ClaimAnswer(claim.control_number, "PAY-5", [LineAnswer(
        spec.visit_id, "T1019", 4800, 0, 8, spec.scheduled_start.date(), adjustments=[("CO", "197", 4800)],
        remarks=["M62"])])], trace=f"EFT-{uuid.uuid4().hex[:8]}")
    auth = {"Authorization": f"Bearer {agency.token('biller')}"}

    first = await api.post("/api/remittances", json={"x12": text, "filename": "era-1215.835"}, headers=auth)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["remittance"]["filename"] == "era-1215.835" and body["returned_to_work"] == [spec.visit_id]
    [line] = body["lines"]
    assert line["outcome"] == "denied" and line["denial_kind"] == "billing"
    assert line["reasons"] == ["CO-197: prior authorization absent ($48.00)",
                               "M62: treatment authorization code missing, incomplete or invalid"]

    # The same file sent again as plain text (a client that timed out and resends): nothing changes.
    again = await api.post("/api/remittances", content=text, headers={**auth, "Content-Type": "text/plain"})
    assert again.status_code == 200 and again.json()["already_imported"] is True
    assert again.json()["remittance"]["id"] == body["remittance"]["id"]

    listed = (await api.get("/api/remittances?limit=1", headers=auth)).json()
    assert listed["items"][0]["id"] == body["remittance"]["id"]
    detail = await api.get(f"/api/remittances/{body['remittance']['id']}", headers=auth)
    assert detail.status_code == 200 and detail.json()["lines"][0]["visit_id"] == spec.visit_id


async def test_bad_files_are_refused_in_words(api, agency):
    auth = {"Authorization": f"Bearer {agency.token('biller')}"}
    garbage = await api.post("/api/remittances", json={"x12": "hello"}, headers=auth)
    assert garbage.status_code == 422 and "not a readable 835 file" in garbage.json()["detail"]
    an_837 = await api.post("/api/remittances", content=open("tests/claims/files/clean_837p.txt").read(),
                            headers={**auth, "Content-Type": "text/plain"})
    assert an_837.status_code == 422 and "not an 835" in an_837.json()["detail"]
    clinician = await api.post("/api/remittances", json={"x12": "hello"},
                               headers={"Authorization": f"Bearer {agency.token('clinician')}"})
    assert clinician.status_code == 403
    missing = await api.get("/api/remittances/999999", headers=auth)
    assert missing.status_code == 404


async def test_import_835_from_the_shell_and_again(client, env, agency, engine, database_url, t0, tmp_path):
    _handle, spec = await released_visit(client, agency, t0)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    day = spec.scheduled_start.date()
    era = tmp_path / "era-0001.835"
    era.write_text(write_835([
        ClaimAnswer(claim.control_number, "PAY-7", [LineAnswer(spec.visit_id, "T1019", 4800, 4800, 8, day)]),
        ClaimAnswer("SOMEONE-ELSES", "PAY-8", [LineAnswer(None, "T1019", 1200, 1200, 2, day)]),
    ], trace=f"EFT-{uuid.uuid4().hex[:8]}"))
    junk = tmp_path / "junk.txt"
    junk.write_text("not an 835")
    cut = tmp_path / "era-cut.835"  # the first part of a file that did not arrive whole
    cut.write_text(era.read_text()[:era.read_text().index("CLP*SOMEONE-ELSES") + 10])
    environment = {**os.environ, "DATABASE_URL": database_url, "VISITFLOW_TASK_QUEUE": "visits-test",
                   "VISITFLOW_TEMPORAL_ADDRESS": env.client.service_client.config.target_host}

    async def visitflow(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "visitflow.cli", *args, env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode, out.decode(), err.decode()

    biller = agency.users["biller"].username
    status, out, _ = await visitflow("import-835", str(era), "--as", biller)
    # One line matched no claim of ours: listed, and the exit status says so.
    assert status == 1, out
    assert "1 line(s) paid, 0 paid less, 0 denied, 1 unmatched" in out and "no claim SOMEONE-ELSES in VisitFlow" in out
    status, out, _ = await visitflow("import-835", str(era), "--as", biller)
    assert status == 0 and "imported before" in out
    status, out, err = await visitflow("import-835", str(junk), "--as", biller, "--json")
    assert status == 2 and json.loads(out)["files"][0]["imported"] is False
    status, _, err = await visitflow("import-835", str(cut), "--as", biller)
    assert status == 2 and "not imported" in err and "the file is incomplete" in err, err
    status, _, err = await visitflow("import-835", str(era), "--as", agency.users["clinician"].username)
    assert status == 2 and "no active biller or admin" in err
