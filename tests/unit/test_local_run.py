"""The main job's summary of its drift checks: a drift start is stated only when the job seeded one."""

from datetime import date

from ctpipe.local_run import drift_story

CHECKED = [
    ("2026-02-12", {"reason": "no drift: 0 drifted inputs", "decision": "skip"}),
    ("2026-02-13", {"reason": "drift: 40% of inputs drifted", "decision": "retrain"}),
    ("2026-02-20", {"reason": "drift: 50% of inputs drifted", "decision": "skip"}),
]


def test_a_seeded_drift_is_told_with_the_checks_of_data_from_before_it():
    told = drift_story(CHECKED, date(2026, 2, 13))
    assert told == (
        "Drift checks: 3, drift flagged on 2 days, first on 2026-02-13 "
        "(drift starts 2026-02-13; flagged before it: 1); retrains requested: 1"
    )


def test_without_a_seeded_drift_no_drift_start_is_claimed():
    told = drift_story(CHECKED, None)
    assert "drift starts" not in told
    assert told == "Drift checks: 3, drift flagged on 2 days, first on 2026-02-13; retrains requested: 1"
