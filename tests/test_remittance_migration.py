"""Migration 0019 on a database that imported one payment twice (a copy re-sent under new control numbers, before
payments were keyed): the first import keeps the payment key, the copy keeps none and no longer counts as money
paid; lines paid less are counted apart from denied ones; the way back restores the old counts."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from tests.test_access_migration import alembic_config
from visitflow.db.session import get_engine


def add_old_remittance(conn, digest: str, at: datetime, lines: list[tuple[str, int]]) -> int:
    denied = sum(outcome in ("denied", "adjusted") for outcome, _ in lines)  # as the old import counted them
    conn.execute(sa.text(
        "INSERT INTO remittance (payer_name, payer_code, trace_number, payment_method, amount_cents, imported_at, "
        "imported_by, claims_matched, lines_paid, lines_denied, lines_unmatched, digest, content) VALUES "
        "('TEXAS MEDICAID', '1512345678', 'EFT5001', 'ACH', 13996, :at, 'biller', 1, 1, :denied, 1, :digest, 'x')"),
        {"at": at, "denied": denied, "digest": digest})
    remittance_id = conn.execute(sa.text("SELECT id FROM remittance WHERE digest = :d"), {"d": digest}).scalar()
    for outcome, paid in lines:
        conn.execute(sa.text(
            "INSERT INTO remittanceline (remittance_id, claim_control_number, charge_cents, paid_cents, outcome, "
            "reasons) VALUES (:r, 'VF1', 9328, :paid, :outcome, '[]')"), {"r": remittance_id, "paid": paid,
                                                                           "outcome": outcome})
    return remittance_id


def test_a_payment_imported_twice_is_keyed_once_and_counted_once(empty_database_url):
    url, cfg = empty_database_url, alembic_config(empty_database_url)
    command.upgrade(cfg, "0018")
    engine = get_engine(url)
    at = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    lines = [("paid", 4664), ("adjusted", 6000), ("denied", 0), ("unmatched", 3332)]
    with engine.begin() as conn:
        first = add_old_remittance(conn, "a" * 64, at, lines)
        copy = add_old_remittance(conn, "b" * 64, at, lines)

    command.upgrade(cfg, "0019")
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.text(
            "SELECT id, payment_key, lines_adjusted, lines_denied FROM remittance"))}
        paid = conn.execute(sa.text("SELECT day, applied_cents, unmatched_cents FROM paymentday")).all()
    assert rows[first].payment_key == "1512345678|EFT5001" and rows[copy].payment_key is None
    assert (rows[first].lines_adjusted, rows[first].lines_denied) == (1, 1)
    assert [(str(day), applied, unmatched) for day, applied, unmatched in paid] == [("2026-11-20", 10664, 3332)]
    with engine.begin() as conn:  # the key now holds in the database
        try:
            conn.execute(sa.text("UPDATE remittance SET payment_key = '1512345678|EFT5001' WHERE id = :id"),
                         {"id": copy})
        except sa.exc.IntegrityError:
            refused = True
        else:
            refused = False
    assert refused

    command.downgrade(cfg, "0018")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT lines_denied FROM remittance WHERE id = :id"), {"id": first}).scalar() == 2
