"""Finding age and SLA: which clock starts it, due dates per severity, closed findings."""

from __future__ import annotations

import pytest

from mirrorscope.lifecycle import (
    CLOSED_STATUSES,
    DEFAULT_SLA_DAYS,
    STATUSES,
    SlaStatus,
    detected_at,
    parse_sla_days,
    sla_status,
)

DAY = 86400.0
NOW = 1_700_000_000.0


def _finding(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"severity": "high", "status": "open",
                               "first_seen": NOW - 10 * DAY, "first_run_at": NOW - 11 * DAY}
    base.update(fields)
    return base


def test_status_vocabulary() -> None:
    assert STATUSES == ("open", "acknowledged", "resolved", "false_positive", "risk_accepted")
    assert set(CLOSED_STATUSES) == {"resolved", "false_positive", "risk_accepted"}
    assert DEFAULT_SLA_DAYS == {"critical": 7, "high": 30, "medium": 90, "low": 180,
                                "info": None}


def test_live_capture_counts_from_packet_time() -> None:
    # Packets seen after the run started and before now: the packet time is the detection.
    assert detected_at(_finding(), NOW) == NOW - 10 * DAY


def test_replayed_old_capture_counts_from_when_it_was_stored() -> None:
    # A capture from last year replayed yesterday: the clock starts yesterday.
    old = _finding(first_seen=NOW - 400 * DAY, first_run_at=NOW - 1 * DAY)
    assert detected_at(old, NOW) == NOW - DAY
    assert sla_status(old, NOW).age_days == pytest.approx(1.0)
    assert not sla_status(old, NOW).breached


def test_future_packet_times_are_not_trusted() -> None:
    future = _finding(first_seen=NOW + 50 * DAY, first_run_at=NOW - 2 * DAY)
    assert detected_at(future, NOW) == NOW - 2 * DAY


def test_without_run_time_the_packet_time_is_used() -> None:
    alert = {"severity": "critical", "status": "open", "first_seen": NOW - 8 * DAY}
    status = sla_status(alert, NOW)
    assert status.age_days == pytest.approx(8.0)
    assert status.breached
    assert status.due_at == pytest.approx(NOW - DAY)
    assert status.days_left == pytest.approx(-1.0)


def test_open_and_acknowledged_findings_run_against_their_sla() -> None:
    for status in ("open", "acknowledged"):
        result = sla_status(_finding(status=status), NOW)
        assert result == SlaStatus(age_days=pytest.approx(10.0), due_at=NOW + 20 * DAY,
                                   breached=False, days_left=pytest.approx(20.0))
    medium = sla_status(_finding(severity="critical"), NOW)
    assert medium.breached and medium.days_left == pytest.approx(-3.0)


def test_closed_findings_never_breach_and_stop_ageing() -> None:
    for status in CLOSED_STATUSES:
        closed = _finding(severity="critical", status=status, status_at=NOW - 4 * DAY)
        result = sla_status(closed, NOW)
        assert not result.breached
        assert result.days_left is None
        assert result.age_days == pytest.approx(6.0)
        assert result.due_at == pytest.approx(NOW - 3 * DAY)


def test_info_has_no_sla_and_custom_tables_apply() -> None:
    info = sla_status(_finding(severity="info", first_seen=NOW - 900 * DAY,
                               first_run_at=None), NOW)
    assert info.due_at is None and not info.breached and info.days_left is None
    assert info.age_days == pytest.approx(900.0)
    strict = sla_status(_finding(severity="low"), NOW, {"low": 5})
    assert strict.breached and strict.days_left == pytest.approx(-5.0)


def test_parse_sla_days() -> None:
    table = parse_sla_days("critical=3, high=14,info=none")
    assert table == {"critical": 3, "high": 14, "medium": 90, "low": 180, "info": None}
    assert parse_sla_days("") == dict(DEFAULT_SLA_DAYS)
    for bad in ("urgent=3", "high", "high=soon", "high=-1"):
        with pytest.raises(ValueError):
            parse_sla_days(bad)


def test_cli_triage_statuses_are_the_stores() -> None:
    from mirrorscope.cli_analysis import TRIAGE_STATUSES
    from mirrorscope.store.lifecycle_repo import STATUSES

    assert tuple(TRIAGE_STATUSES) == tuple(STATUSES)
