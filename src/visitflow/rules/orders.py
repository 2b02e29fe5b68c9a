"""Ordered gate: a physician order covers the visit (ORD-01), is signed where billing needs it (ORD-02), and the
visit fits the order's frequency (AUTH-03).

The office acts on these holds: it gets the order written, signed, or its frequency changed. Pure functions of a
`GateInput`; the orders and the patient's other visits are loaded by the caller.
"""

from __future__ import annotations

from datetime import date

from visitflow.models import Discipline, Finding, Gate, Role, service_date
from visitflow.rules.facts import GateInput, OrderedVisit, OrderFacts
from visitflow.rules.frequency import (
    CountedVisit,
    Frequency,
    FrequencyError,
    check_visit,
    explain,
    parse_frequency,
)

ORDER_KINDS = {"plan_of_care": "plan of care", "verbal": "verbal order", "interim": "interim order"}


def order_words(order: OrderFacts) -> str:
    return f"{ORDER_KINDS.get(order.kind, 'order')} #{order.id} ({order.practitioner_name})"


def frequencies(order: OrderFacts) -> list[Frequency]:
    parsed = []
    for line in order.frequencies:
        try:
            parsed.append(parse_frequency(line))
        except FrequencyError:
            continue  # checked when the order was entered; an unreadable line orders nothing
    return parsed


def frequency_for(order: OrderFacts, discipline: Discipline | str) -> Frequency | None:
    return next((f for f in frequencies(order) if f.covers(discipline)), None)


def in_effect(order: OrderFacts, day: date) -> bool:
    return (order.status != "returned" and order.effective_from <= day
            and (order.effective_to is None or day <= order.effective_to))


def covering_orders(ctx: GateInput) -> list[OrderFacts]:
    """Orders for this patient in effect on the date of service that order the visit's discipline; newest first."""
    spec = ctx.visit.spec
    day = service_date(spec)
    covering = [o for o in ctx.orders if o.patient_id == spec.patient_id and in_effect(o, day)
                and frequency_for(o, spec.discipline) is not None]
    return sorted(covering, key=lambda o: (o.effective_from, o.id), reverse=True)


def _finding(rule_id: str, message: str, key: str, gate: Gate = Gate.ordered) -> Finding:
    return Finding(rule_id=rule_id, gate=gate, message=f"{rule_id} {message}", role=Role.admin, key=key)


def ord_01_ordered(ctx: GateInput) -> list[Finding]:
    """ORD-01: where the payer requires orders, an order in effect on the date of service orders the discipline."""
    spec = ctx.visit.spec
    if spec.discipline not in ctx.payer.orders_required or covering_orders(ctx):
        return []
    day = service_date(spec)
    message = f"no physician order covers this {spec.discipline.value} visit on {day.isoformat()}"
    hints = []
    for order in sorted(ctx.orders, key=lambda o: (o.effective_from, o.id)):
        if frequency_for(order, spec.discipline) is None:
            continue
        if order.status == "returned":
            hints.append(f"{order_words(order)} was returned unsigned")
        elif day < order.effective_from:
            hints.append(f"{order_words(order)} takes effect {order.effective_from.isoformat()}")
        elif order.effective_to is not None and day > order.effective_to:
            hints.append(f"{order_words(order)} ended {order.effective_to.isoformat()}")
    if hints:
        message += "; " + "; ".join(hints)
    return [_finding("ORD-01", message, "ORD-01")]


def ord_02_signed(ctx: GateInput) -> list[Finding]:
    """ORD-02: where the payer requires it, every covering order is signed before the visit is billed."""
    if not ctx.payer.signed_orders_before_billing:
        return []
    return [_finding("ORD-02", f"{order_words(o)} sent for signature, not signed yet", f"ORD-02:order-{o.id}")
            for o in sorted(covering_orders(ctx), key=lambda o: o.id) if o.signed_on is None]


def counted_visits(ctx: GateInput, order: OrderFacts, freq: Frequency) -> list[CountedVisit]:
    """This visit and the patient's other live visits of the discipline in the order's dates."""
    spec = ctx.visit.spec
    mine = OrderedVisit(visit_id=spec.visit_id, discipline=spec.discipline.value,
                        service_date=service_date(spec), scheduled_start=spec.scheduled_start)
    others = [v for v in ctx.ordered_visits if v.visit_id != spec.visit_id]
    return [CountedVisit(v.visit_id, v.service_date, v.scheduled_start.isoformat())
            for v in [mine, *others]
            if freq.covers(v.discipline) and in_effect(order, v.service_date)]


def auth_03_within_frequency(ctx: GateInput) -> list[Finding]:
    """AUTH-03: visits in each order week stay within the frequency; visits over it use the PRN visits."""
    covering = covering_orders(ctx)
    if not covering:
        return []
    order = covering[0]  # the newest order in effect says how often now
    freq = frequency_for(order, ctx.visit.spec.discipline)
    verdict = check_visit(freq, order.effective_from, counted_visits(ctx, order, freq), ctx.visit.spec.visit_id)
    if verdict.within:
        return []
    return [_finding("AUTH-03", explain(freq, verdict, order_words(order)), "AUTH-03", gate=Gate.authorized)]
