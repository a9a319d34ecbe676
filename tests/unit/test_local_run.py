"""The main job: how it tells the drift checks (a drift start only when it seeded one), and what it refuses."""

from datetime import date

import pytest

from ctpipe.local_run import drift_story, main

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


def test_a_dataset_without_a_generator_is_refused_before_the_state_is_cleared(tmp_path, monkeypatch):

    package = tmp_path / "their_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "real_data.py").write_text(
        "import dataclasses\nfrom ctpipe.datasets.shop_returns import SHOP_RETURNS\n"
        "SPEC = dataclasses.replace(SHOP_RETURNS, name='real_data', generator=None)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CTPIPE_DATASET", "their_package.real_data:SPEC")
    state = tmp_path / "state"
    monkeypatch.setenv("CTPIPE_STATE_DIR", str(state))
    (state / "lake").mkdir(parents=True)
    with pytest.raises(SystemExit, match="Cannot seed: dataset 'real_data' ships no synthetic generator"):
        main(["--days", "1"])
    assert (state / "lake").is_dir()
