"""The ``[monitor]`` section of ``loopml.toml``: drift bins and bands, the window, alert rules
and the SMTP server e-mail alerts go through.

::

    [monitor]
    bins = 10                     # LOOPML_MONITOR_BINS: quantile bins of a reference profile
    psi_bands = [0.1, 0.25]       # LOOPML_MONITOR_PSI_BANDS=0.1,0.25: none | moderate | significant
    window = "1h"                 # LOOPML_MONITOR_WINDOW: 30m, 1h, 1d, …
    smtp_host = "mail.example.com"
    smtp_port = 587
    smtp_from = "loopml@example.com"
    smtp_user = "loopml"
    smtp_password = ""            # better: LOOPML_MONITOR_SMTP_PASSWORD
    smtp_starttls = true

    [[monitor.alerts]]
    name = "input drift"
    deployment = "churn"          # a name or a glob; "*" (the default): every deployment
    when = "max(psi) > 0.25"      # the language: loopml.monitoring.rules
    for = 2                       # consecutive non-empty windows
    severity = "critical"         # info | warning | critical
    channels = ["log", "webhook:https://hooks.example/ml", "email:ml-oncall@example.com"]

Loaded and checked by :func:`loopml.config.load_settings`; read as ``settings.monitor``.
A malformed rule is an error at load that names the rule (``[[monitor.alerts]] #2 "input
drift": when = …``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from loopml.exceptions import InvalidConfig
from loopml.monitoring.rules import AlertRule, parse_rules

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration_seconds(text: str) -> float:
    """``"30m"``, ``"1h"``, ``"1.5h"``, ``"1d"`` or plain seconds → seconds (positive).

    >>> duration_seconds("1h"), duration_seconds("90")
    (3600.0, 90.0)
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else 0.0
    if match and seconds == 0:
        raise InvalidConfig(
            f"{text!r} is a duration of zero: it must be positive, e.g. 30m, 1h, 1d or a "
            "number of seconds."
        )
    if not match or not math.isfinite(seconds) or seconds <= 0:
        raise InvalidConfig(
            f"{text!r} is not a duration: use e.g. 30m, 1h, 1d or a number of seconds."
        )
    return seconds


def _window(value: Any, where: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    try:
        duration_seconds(value)
    except InvalidConfig as exc:
        raise InvalidConfig(f"{where}: {exc}") from None
    return str(value).strip()


def _bands(value: Any, where: str) -> tuple[float, float]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        low, high = (float(item) for item in items)
        ok = (
            not any(isinstance(item, bool) for item in items)
            and math.isfinite(high)
            and 0 < low < high
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidConfig(
            f"{where} must be two PSI thresholds, low then high, both above 0 "
            f"(e.g. [0.1, 0.25]), got {value!r}"
        )
    return (low, high)


@dataclass(frozen=True)
class MonitorSettings:
    """How drift is binned and banded, how long a window is, the alert rules, and SMTP."""

    bins: int = field(
        default=10,
        metadata={"min": 2, "help": "quantile bins of a numeric feature's reference profile"},
    )
    psi_bands: tuple[float, float] = field(
        default=(0.1, 0.25),
        metadata={
            "parse": _bands,
            "help": "PSI below the first: no drift; up to the second: moderate; above: significant",
        },
    )
    window: str = field(
        default="1h",
        metadata={"parse": _window, "help": "length of a monitoring window (30m, 1h, 1d)"},
    )
    alerts: tuple[AlertRule, ...] = field(
        default=(),
        metadata={
            "parse": parse_rules,
            "help": "[[monitor.alerts]] rules: name, deployment, when, for, severity, channels",
        },
    )
    smtp_host: str | None = field(
        default=None, metadata={"help": "SMTP server for email: channels (none: no e-mail)"}
    )
    smtp_port: int = field(default=25, metadata={"min": 1, "help": "SMTP server port"})
    smtp_from: str = field(
        default="loopml@localhost",
        metadata={"nonempty": True, "help": "sender address of alert e-mails"},
    )
    smtp_user: str | None = field(
        default=None, metadata={"help": "SMTP login (none: send without logging in)"}
    )
    smtp_password: str | None = field(
        default=None,
        metadata={
            "help": "SMTP password; set LOOPML_MONITOR_SMTP_PASSWORD, not the file",
            "secret": True,
        },
    )
    smtp_starttls: bool = field(
        default=False, metadata={"help": "upgrade the SMTP connection with STARTTLS"}
    )

    @property
    def window_seconds(self) -> float:
        """:attr:`window` in seconds."""
        return duration_seconds(self.window)

    def problem(self) -> tuple[str, str] | None:
        """A check across keys: (key, message) or None."""
        if self.smtp_port > 65535:
            return "smtp_port", f"must be a port number (1-65535), got {self.smtp_port}"
        if self.smtp_user and self.smtp_password is None:
            return (
                "smtp_user",
                "is set but smtp_password is not: set LOOPML_MONITOR_SMTP_PASSWORD",
            )
        for number, rule in enumerate(self.alerts, start=1):
            mail = [c for c in rule.channels if c.startswith("email:")]
            if mail and not self.smtp_host:
                return (
                    "alerts",
                    f'rule #{number} "{rule.name}" sends e-mail ({mail[0]}) but [monitor] '
                    "smtp_host is not set: set it (or LOOPML_MONITOR_SMTP_HOST)",
                )
        return None
