"""A claim's states and the moves between them: the one table every change of a claim's state goes through.

created ─submitted─▶ submitted ─▶ accepted ─▶ paid | partially_paid | denied
                          └──────▶ rejected (the 999 or 277CA refused it before adjudication): fix what it named
                                   and send it again ─▶ created (the same claim, in a new file), or void it
held: made but kept out of the file (CLM-05: the service is already billed on another live claim). It closes as
  replaced when its visits are billed on that claim (its replacement, or the claim itself while never sent), or
  voided, its visits going back to billing. A created or rejected claim voided sends its visits back the same way:
  the payer never had it.
replaced / voided: what a frequency 7 or 8 claim does to the claim it replaces.
"""

from __future__ import annotations

from enum import StrEnum


class ClaimState(StrEnum):
    created = "created"  # written into an 837P file, not yet sent
    held = "held"  # not sent: a problem (the note says which) must be settled first
    submitted = "submitted"  # the biller uploaded its file to the payer or clearinghouse
    accepted = "accepted"  # the 999 / 277CA accepted it into adjudication
    rejected = "rejected"  # the 999 / 277CA refused it; it never reached adjudication
    paid = "paid"  # the 835 paid it in full
    partially_paid = "partially_paid"  # the 835 paid part of it, adjusting the rest
    denied = "denied"  # the 835 paid nothing
    replaced = "replaced"  # a frequency 7 claim took its place
    voided = "voided"  # a frequency 8 claim cancelled it


# What each state may move to. Paid and denied claims can still be corrected (a 7) or cancelled (an 8); an 835
# may also correct an earlier payment (a reversal and a new CLP), hence the moves between the paid states.
TRANSITIONS: dict[ClaimState, frozenset[ClaimState]] = {
    ClaimState.created: frozenset({ClaimState.submitted, ClaimState.held, ClaimState.voided}),
    ClaimState.held: frozenset({ClaimState.created, ClaimState.replaced, ClaimState.voided}),
    ClaimState.submitted: frozenset({ClaimState.accepted, ClaimState.rejected, ClaimState.paid,
                                     ClaimState.partially_paid, ClaimState.denied}),
    ClaimState.accepted: frozenset({ClaimState.paid, ClaimState.partially_paid, ClaimState.denied}),
    # Sent again (same control number, a new file) once what the rejection named is fixed: the payer never
    # adjudicated it, so it goes as it was, not as a replacement.
    ClaimState.rejected: frozenset({ClaimState.created, ClaimState.replaced, ClaimState.voided}),
    ClaimState.paid: frozenset({ClaimState.partially_paid, ClaimState.denied, ClaimState.replaced,
                                ClaimState.voided}),
    ClaimState.partially_paid: frozenset({ClaimState.paid, ClaimState.denied, ClaimState.replaced,
                                          ClaimState.voided}),
    ClaimState.denied: frozenset({ClaimState.paid, ClaimState.partially_paid, ClaimState.replaced,
                                  ClaimState.voided}),
    ClaimState.replaced: frozenset(),
    ClaimState.voided: frozenset(),
}

# What a biller may set by hand: the file went out, and what the 999 / 277CA said. Payment states come from
# the 835 import only.
SET_BY_BILLER = frozenset({ClaimState.submitted, ClaimState.accepted, ClaimState.rejected})

# Billed and not yet adjudicated: accounts receivable, aged from the day the claim was made.
RECEIVABLE = frozenset({ClaimState.created, ClaimState.submitted, ClaimState.accepted})

# A claim in one of these no longer bills its visits: a replacement or void took them over.
CLOSED_OUT = frozenset({ClaimState.replaced, ClaimState.voided})


def can_move(from_state: ClaimState | str, to_state: ClaimState | str) -> bool:
    return ClaimState(to_state) in TRANSITIONS[ClaimState(from_state)]


def refusal(from_state: ClaimState | str, to_state: ClaimState | str) -> str | None:
    """Why a claim in `from_state` cannot move to `to_state`, in words; None when it can."""
    try:
        source, target = ClaimState(from_state), ClaimState(to_state)
    except ValueError:
        return f"{to_state!r} is not a claim state (one of: {', '.join(s.value for s in ClaimState)})"
    if target in TRANSITIONS[source]:
        return None
    if source == target:
        return f"the claim is already {source.value}"
    allowed = ", ".join(sorted(s.value for s in TRANSITIONS[source])) or "nothing: it is final"
    return f"a {source.value} claim cannot become {target.value}; it can become {allowed}"
