"""When Temporal is down, the API says so (503) instead of failing with a 500, and loses nothing."""

from __future__ import annotations

import httpx
from sqlmodel import Session, func, select

from tests.e2e.test_up import free_port
from visitflow.db.tables import Visit
from visitflow.devserver import DevServer
from visitflow.main import create_app
from visitflow.settings import Settings
from visitflow.temporal import connect


async def test_a_stopped_temporal_server_answers_503(agency, database_url, engine, tmp_path):
    server = DevServer(tmp_path / "temporal", port=free_port(), ui_port=None)
    server.start()
    try:
        settings = Settings(database_url=database_url, task_queue="outage", data_dir=tmp_path,
                            temporal_address=server.address)
        client = await connect(settings)
    finally:
        server.stop()  # the server goes away after the API connected
    with Session(engine) as s:
        visits_before = s.exec(select(func.count()).select_from(Visit)).one()
    app = create_app(settings, temporal=client)
    headers = {"Authorization": f"Bearer {agency.token('clinician')}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as api:
        r = await api.get("/api/visits/not-projected-yet", headers=headers)
        assert r.status_code == 503 and "try again" in r.json()["detail"]
        keyed = {**headers, "Idempotency-Key": "outage-1"}
        r = await api.post("/api/visits/V-9/note", json={"fields": {"x": "y"}}, headers=keyed)
        assert r.status_code == 503 and "may have been applied" in r.json()["detail"]
        assert "same Idempotency-Key" in r.json()["detail"] and r.headers["Retry-After"]
        # Not an answer to keep: the retry with the same key is tried again, not told "503" from a store.
        r = await api.post("/api/visits/V-9/note", json={"fields": {"x": "y"}}, headers=keyed)
        assert r.status_code == 503 and "Idempotent-Replayed" not in r.headers
        assert (await api.get("/api/visits", headers=headers)).status_code == 200  # the read model still answers
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Visit)).one() == visits_before
