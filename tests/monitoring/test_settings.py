"""The ``[monitor]`` section: defaults, the file, variables, and malformed alert rules as a
clear error at load that points at the rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml.config import load_settings
from loopml.exceptions import InvalidConfig
from loopml.monitoring.rules import AlertRule
from loopml.monitoring.settings import MonitorSettings, duration_seconds

RULES = """
[[monitor.alerts]]
name = "input drift"
deployment = "churn"
when = "max(psi) > 0.25"
for = 2
severity = "critical"
channels = ["log", "webhook:https://hooks.example/ml"]

[[monitor.alerts]]
name = "latency"
when = "p99_ms > 250"
"""


def load(tmp_path: Path, text: str, **environ: str) -> MonitorSettings:
    (tmp_path / "loopml.toml").write_text(text)
    return load_settings(tmp_path, environ=environ).monitor


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings == MonitorSettings()
    assert (settings.bins, settings.psi_bands, settings.window) == (10, (0.1, 0.25), "1h")
    assert settings.window_seconds == 3600.0 and settings.alerts == ()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (None, 25, False)


def test_file_and_variables(tmp_path: Path) -> None:
    text = '[monitor]\nbins = 20\npsi_bands = [0.2, 0.4]\nwindow = "30m"\n' + RULES
    settings = load(tmp_path, text)
    assert (settings.bins, settings.psi_bands, settings.window_seconds) == (20, (0.2, 0.4), 1800)
    assert settings.alerts == (
        AlertRule(
            "input drift",
            "max(psi) > 0.25",
            deployment="churn",
            for_windows=2,
            severity="critical",
            channels=("log", "webhook:https://hooks.example/ml"),
        ),
        AlertRule("latency", "p99_ms > 250"),
    )
    varied = load(
        tmp_path,
        text,
        LOOPML_MONITOR_PSI_BANDS="0.05,0.3",
        LOOPML_MONITOR_WINDOW="1d",
        LOOPML_MONITOR_SMTP_HOST="mail.example.com",
        LOOPML_MONITOR_SMTP_USER="loopml",
        LOOPML_MONITOR_SMTP_PASSWORD="s3cret",
        LOOPML_MONITOR_SMTP_STARTTLS="true",
    )
    assert varied.psi_bands == (0.05, 0.3) and varied.window_seconds == 86400
    assert (varied.smtp_host, varied.smtp_user, varied.smtp_password, varied.smtp_starttls) == (
        "mail.example.com",
        "loopml",
        "s3cret",
        True,
    )
    assert len(varied.alerts) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            RULES.replace('"p99_ms > 250"', '"max(psi) >> 0.25"'),
            'loopml.toml [[monitor.alerts]] #2 "latency": when = "max(psi) >> 0.25": expected '
            "a number, found '>' at position 11",
        ),
        (
            RULES.replace("for = 2", "for = 0"),
            '[[monitor.alerts]] #1 "input drift": for = 0: the number of consecutive windows',
        ),
        (
            RULES.replace('"critical"', '"page"'),
            '#1 "input drift": severity = "page": use one of info, warning, critical',
        ),
        (
            RULES.replace('"log", ', '"slack:#ml", '),
            "#1 \"input drift\": unknown channel 'slack:#ml': use log, stdout, webhook:URL",
        ),
        (RULES.replace("for = 2", "every = 2"), "#1 \"input drift\": unknown key 'every'"),
        (RULES.replace('when = "p99_ms > 250"', ""), '#2 "latency": when is missing'),
        (
            RULES.replace('"webhook:https://hooks.example/ml"', '"email:ops@example.com"'),
            'alerts: rule #1 "input drift" sends e-mail (email:ops@example.com) but [monitor] '
            "smtp_host is not set",
        ),
        ('[monitor]\nalerts = "x"\n', "[monitor] alerts must be an array of tables"),
        ('[monitor]\nwindow = "soon"\n', "[monitor] window: 'soon' is not a duration"),
        (
            "[monitor]\nwindow = 0\n",
            "[monitor] window: '0' is a duration of zero: it must be positive",
        ),
        ("[monitor]\npsi_bands = [0.3, 0.1]\n", "[monitor] psi_bands must be two PSI thresholds"),
        ("[monitor]\npsi_bands = [0.1]\n", "[monitor] psi_bands must be two PSI thresholds"),
        ("[monitor]\nbins = 1\n", "[monitor] bins must be a whole number, at least 2"),
        ("[monitor]\nsmtp_port = 70000\n", "smtp_port: must be a port number"),
        ('[monitor]\nsmtp_user = "me"\n', "smtp_user: is set but smtp_password is not"),
        ("[monitor]\nbinz = 3\n", "unknown key 'binz'; did you mean 'bins'?"),
    ],
)
def test_malformed_settings_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        load(tmp_path, text)
    assert message in str(caught.value), str(caught.value)


def test_rules_cannot_come_from_a_variable(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match="LOOPML_MONITOR_ALERTS: alert rules can't be set"):
        load(tmp_path, "", LOOPML_MONITOR_ALERTS="max(psi) > 0.2")
    with pytest.raises(InvalidConfig, match="LOOPML_MONITOR_PSI_BANDS must be two"):
        load(tmp_path, "", LOOPML_MONITOR_PSI_BANDS="high")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), (" 2d ", 172800.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "1w", "-1h", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidConfig, match="is not a duration"):
        duration_seconds(text)


@pytest.mark.parametrize("text", ["0", "0s", "0.0h"])
def test_a_zero_duration_is_a_duration_that_must_be_positive(text: str) -> None:
    with pytest.raises(InvalidConfig) as caught:
        duration_seconds(text)
    assert str(caught.value).startswith(f"{text!r} is a duration of zero: it must be positive")
