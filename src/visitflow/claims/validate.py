"""CLM-06: run pyx12 in-process over a file's text and say what it finds in words.

pyx12 checks the file against the implementation guide's map (segments, loops, element lengths and codes) and
keeps what it finds in an error tree, the tree it writes a 999 from. We take that tree as pyx12's JSON error
output rather than the 999, so each finding keeps pyx12's own sentence beside the 999 code's meaning, and the
file line the 999 leaves out.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pyx12.errors
import pyx12.params
import pyx12.x12file
import pyx12.x12n_document

from visitflow.claims.findings import ClaimFinding, in_file_order

RULE = "CLM-06"

# 999 IK304: why a segment is wrong.
SEGMENT_ERRORS = {
    "1": "unrecognized segment id",
    "2": "unexpected segment",
    "3": "required segment missing",
    "4": "loop occurs more times than allowed",
    "5": "segment used more times than allowed",
    "6": "segment not in this transaction set",
    "7": "segment out of order",
    "8": "segment has element errors",
    "I4": "segment the implementation guide marks not used",
    "I6": "segment the implementation guide requires here is missing",
    "I7": "loop occurs fewer times than the implementation guide requires",
    "I8": "segment used fewer times than the implementation guide requires",
    "I9": "segment the implementation guide does not use in this situation",
}

# 999 IK403: why an element is wrong.
ELEMENT_ERRORS = {
    "1": "required element missing",
    "2": "conditionally required element missing",
    "3": "too many elements",
    "4": "element too short",
    "5": "element too long",
    "6": "invalid character",
    "7": "invalid code value",
    "8": "invalid date",
    "9": "invalid time",
    "10": "exclusion condition violated",
    "12": "too many repetitions",
    "13": "too many components",
    "I6": "code value not used in this implementation guide",
    "I9": "element the implementation guide requires here is missing",
    "I10": "element the implementation guide marks not used",
    "I11": "too few repetitions",
    "I12": "value does not match the implementation guide's pattern",
    "I13": "element the implementation guide does not use in this situation",
}


class UnreadableX12(ValueError):
    """The text is not an X12 interchange pyx12 can read, so nothing in it can be checked."""


# What pyx12 raises when it cannot go on: its own errors for a bad ISA or an unknown transaction set, and plain
# Python errors from its bookkeeping when the envelope segments do not nest (a GE with no GS open, an SE before
# any ST: it indexes an empty stack or reads a transaction set that was never opened). Found by fuzzing.
PYX12_CANNOT_READ = (pyx12.errors.X12Error, pyx12.errors.EngineError, IndexError, KeyError, AttributeError, TypeError)


def unreadable(exc: Exception) -> UnreadableX12:
    if isinstance(exc, pyx12.errors.X12Error | pyx12.errors.EngineError):
        return UnreadableX12(str(exc))
    return UnreadableX12("the envelope segments (ISA, GS, ST ... SE, GE, IEA) do not open and close in order")


def normalized(text: str) -> str:
    # Editors and browsers add a byte-order mark or leading blank lines; the interchange starts at ISA.
    return text.lstrip("\ufeff \t\r\n")


def validate_x12(text: str) -> list[ClaimFinding]:
    """pyx12's findings over `text`, in file order; an accepted file gives none.

    Raises UnreadableX12 when there is no interchange to check (no ISA, a broken ISA, an unknown version or
    transaction set).
    """
    text = normalized(text)
    report = io.StringIO()
    try:
        # x12n_document turns an unreadable ISA into a log line; opening the reader first gives its reason.
        pyx12.x12file.X12Reader(io.StringIO(text)).close()
        pyx12.x12n_document.x12n_document(param=pyx12.params.params(), src_file=io.StringIO(text), fd_997=None,
                                          fd_html=None, fd_json=report)
    except PYX12_CANNOT_READ as exc:
        raise unreadable(exc) from exc
    return in_file_order(list(_findings(json.loads(report.getvalue()))))


def _findings(tree: dict[str, Any]) -> Iterator[ClaimFinding]:
    """Interchange, group, transaction set, then segment and element errors, in the order pyx12 met them."""
    for interchange in tree["interchanges"]:
        yield from _envelope("ISA", interchange)
        for group in interchange["groups"]:
            yield from _envelope("GS", group)
            for transaction in group["transactions"]:
                yield from _envelope("ST", transaction)
                for segment in transaction["segments"]:
                    yield from _segment(segment)


def _envelope(segment_id: str, node: dict[str, Any]) -> Iterator[ClaimFinding]:
    for error in node["errors"]:
        yield ClaimFinding(rule_id=RULE, segment_id=segment_id, line=node["cur_line"],
                           message=_sentence(error["err_str"]))


def _segment(segment: dict[str, Any]) -> Iterator[ClaimFinding]:
    where = {"rule_id": RULE, "segment_id": segment["seg_id"], "segment_number": segment["seg_count"],
             "line": segment["cur_line"]}
    for error in segment["errors"]:
        if error["err_cde"] == "8" and segment["elements"]:
            continue  # "has element errors": each element's own finding below says which and why
        yield ClaimFinding(**where, message=_worded(SEGMENT_ERRORS, error))
    for element in segment["elements"]:
        for error in element["errors"]:
            yield ClaimFinding(**where, message=_worded(ELEMENT_ERRORS, error, element["name"]),
                               element=element_reference(segment["seg_id"], element["ele_pos"],
                                                         element["subele_pos"]))


def element_reference(segment_id: str | None, position: int | None, component: int | None) -> str | None:
    if segment_id is None or position is None:
        return None
    ref = f"{segment_id}{position:02d}"
    return f"{ref}-{component}" if component else ref


def _worded(table: dict[str, str], error: dict[str, Any], name: str | None = None) -> str:
    """The 999 code's meaning, the element's name, then pyx12's own sentence and the bad value."""
    head = " ".join(part for part in (table.get(error["err_cde"]), f"({name})" if name else None) if part)
    detail = _sentence(error["err_str"])
    value = error.get("err_val")
    if value and value not in detail:
        detail += f" (value {value!r})"
    return f"{head}: {detail}" if head else detail


def _sentence(text: str) -> str:
    return " ".join(str(text).split())


# pyx12 also logs what it finds; the findings are returned, so its log lines need not reach stderr.
logging.getLogger("pyx12").addHandler(logging.NullHandler())
