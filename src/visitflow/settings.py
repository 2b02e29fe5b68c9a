"""All of VisitFlow's configuration, in one place.

Values come from (highest first) environment variables `VISITFLOW_*` (and `DATABASE_URL`), then the
TOML file named by `VISITFLOW_CONFIG` (default `visitflow.toml` in the working directory, if present),
then the defaults below. Durations accept `90s`, `30m`, `24h`, `2d` or seconds.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from visitflow.claims.models import Agency
from visitflow.models import DEFAULT_TIMERS, DOCUMENTATION_DENIAL_CODES, Timers
from visitflow.rules.documentation import REQUIRED_NOTE_FIELDS_DEFAULT

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> Any:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 15m, 24h, 2d)")
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _TomlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]):
        super().__init__(settings_cls)
        path = Path(os.environ.get("VISITFLOW_CONFIG", "visitflow.toml"))
        self._data = tomllib.loads(path.read_text()) if path.is_file() else {}

    def get_field_value(self, field, field_name):  # pragma: no cover - required by the base class
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    # VISITFLOW_AGENCY__NPI=... sets one field of the [agency] table.
    model_config = SettingsConfigDict(env_prefix="VISITFLOW_", env_nested_delimiter="__", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "VISITFLOW_DATABASE_URL")
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue: str = "visitflow"
    embedded_temporal: bool = True  # `visitflow up` starts the dev server itself
    # Open visits a worker keeps in memory between their workflow tasks (Temporal's workflow cache). Visits not
    # in it replay their short history when next acted on; see visitflow.temporal and bench/README.md.
    worker_cached_visits: int = Field(default=1000, ge=0, le=100_000)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    seed_demo: bool = True
    secret_key: str = ""  # signs UI sessions; generated into data_dir when empty
    secure_cookies: bool = False  # true behind TLS: the session cookie is then sent over HTTPS only
    # True only when a reverse proxy we run sits in front: the audit trail then takes the client address from
    # the last X-Forwarded-For entry (the one that proxy added); otherwise anyone could write their own.
    behind_proxy: bool = False
    # Sign-in sessions: an idle browser is signed out (the usual automatic log-off for systems holding health
    # records), and every session ends after one long shift however busy it is.
    session_idle_timeout: Duration = timedelta(minutes=30)
    session_max_age: Duration = timedelta(hours=12)
    # Guessing passwords: each failed sign-in waits longer (this, doubling per consecutive failure, at most
    # eight times it); after `signin_max_failures` in a row the account is locked for `signin_lockout`.
    signin_failure_delay: Duration = timedelta(seconds=0.5)
    signin_max_failures: int = Field(default=5, ge=1, le=100)
    signin_lockout: Duration = timedelta(minutes=15)
    # Answers to requests sent with an Idempotency-Key are replayed to retries for this long, then deleted.
    idempotency_keep: Duration = timedelta(hours=24)

    # Agency policy (DOC-01, SIG-01 deadlines): configuration, not law.
    note_due: Duration = DEFAULT_TIMERS.note_due
    note_escalate_after: Duration = DEFAULT_TIMERS.note_escalate_after
    sign_due: Duration = DEFAULT_TIMERS.sign_due
    sign_escalate_after: Duration = DEFAULT_TIMERS.sign_escalate_after
    hold_recheck_every: Duration = DEFAULT_TIMERS.hold_recheck_every
    # ORD-03: an order sent for signature is chased: the office is reminded this often until it is signed or
    # returned, and a supervisor is told once it is this old.
    order_reminder_every: Duration = timedelta(days=7)
    order_escalate_after: Duration = timedelta(days=21)
    # SUP-01: days between supervisory visits of aide care (42 CFR 484.80(h): 14 with skilled services, 60 for
    # aide-only care), and how many days ahead of the due date the supervising clinician is prompted.
    supervision_skilled_days: int = Field(default=14, ge=1, le=366)
    supervision_aide_only_days: int = Field(default=60, ge=1, le=366)
    supervision_prompt_days: int = Field(default=3, ge=0, le=60)
    # DOC-02: documented minutes per service code, e.g. {"T1019": [15, 720]}; unset codes are not bounded.
    visit_minutes: dict[str, tuple[int, int]] = Field(default_factory=dict)
    required_note_fields: dict[str, list[str]] = Field(
        default_factory=lambda: {d.value: list(f) for d, f in REQUIRED_NOTE_FIELDS_DEFAULT.items()})

    agency_timezone: str = "America/Chicago"  # dates of service are local dates
    agency_name: str = "Sunrise Home Care"  # shown on every page
    # Who bills, as the 837P names it: the [agency] table of the TOML file, or VISITFLOW_AGENCY__<FIELD>
    # variables (name, npi, tax_id, address, submitter_id, submitter_name, receiver_id, receiver_name, contact).
    # Checked as the claim models check it, so a wrong NPI or ZIP stops the start with the field named; left
    # out, VisitFlow runs but blocks claim files until it is set (`claim_file_blocker`).
    agency: Agency | None = None

    # Who fixes what a payer denies (835 CARC numbers and RARC codes): codes meaning the record does not support
    # the service go back to the clinician; the codes the agency's state uses for EVV mismatches go to a
    # supervisor; anything else is the biller's. E.g. VISITFLOW_DENIAL_EVV_CODES='["N519"]'.
    denial_documentation_codes: list[str] = Field(default_factory=lambda: sorted(DOCUMENTATION_DENIAL_CODES))
    denial_evv_codes: list[str] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'visitflow.db').resolve()}"

    def claim_file_blocker(self) -> str | None:
        """Why no claim file can be written with this configuration, in words; None when one can."""
        if self.agency is None:
            return ("The agency's billing identity is not configured, so no claim file can be written: set the "
                    "[agency] table in visitflow.toml (name, npi, tax_id, address with a ZIP+4, submitter_id, "
                    "submitter_name, receiver_id, receiver_name, contact) or the VISITFLOW_AGENCY__* variables.")
        return None

    def timers(self) -> Timers:
        return Timers(
            note_due=self.note_due, note_escalate_after=self.note_escalate_after,
            sign_due=self.sign_due, sign_escalate_after=self.sign_escalate_after,
            hold_recheck_every=self.hold_recheck_every,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
