import pytest

from ctpipe.promotion import PromotionPolicy, decide, decision_markdown, stale_markdown, still_current
from ctpipe.records import Review

POLICY = PromotionPolicy(min_roc_auc=0.65, max_brier=0.25, margin=0.005)


def metrics(roc_auc: float, brier: float = 0.15) -> dict[str, float]:
    return {"roc_auc": roc_auc, "brier": brier}


def test_the_first_model_is_promoted_when_it_passes_the_thresholds():
    decision = decide(metrics(0.70), None, POLICY)
    assert decision.promote and decision.verdict == "promote"
    assert "no champion yet" in " ".join(decision.reasons)


@pytest.mark.parametrize(
    "challenger, why",
    [(metrics(0.60), "below threshold 0.6500"), (metrics(0.80, brier=0.3), "brier 0.3000 above limit 0.2500")],
)
def test_the_first_model_is_kept_out_when_it_fails_a_threshold(challenger, why):
    decision = decide(challenger, None, POLICY)
    assert not decision.promote and decision.verdict == "keep_champion"
    assert any(why in reason for reason in decision.reasons)


def test_a_challenger_must_beat_the_champion_by_more_than_the_margin():
    assert decide(metrics(0.760), metrics(0.750), POLICY).promote
    short = decide(metrics(0.754), metrics(0.750), POLICY)
    assert not short.promote and any("ties the champion" in r for r in short.reasons)
    worse = decide(metrics(0.70), metrics(0.75), POLICY)
    assert not worse.promote and any("trails the champion" in r and "gain -0.0500" in r for r in worse.reasons)


def test_a_tie_keeps_the_champion():
    decision = decide(metrics(0.75), metrics(0.75), POLICY)
    assert not decision.promote
    assert any("ties" in r and "gain +0.0000" in r for r in decision.reasons)


def test_beating_the_champion_does_not_excuse_a_failed_threshold():
    decision = decide(metrics(0.64), metrics(0.55), POLICY)
    assert not decision.promote


def test_a_backfill_never_promotes_and_says_so():
    decision = decide(metrics(0.90), metrics(0.70), POLICY, backfill=True)
    assert not decision.promote
    assert any("backfill" in r for r in decision.reasons)
    assert not decide(metrics(0.90), None, POLICY, backfill=True).promote


def test_reasons_are_a_tuple_the_review_record_can_carry():
    decision = decide(metrics(0.76), metrics(0.75), POLICY)
    assert isinstance(decision.reasons, tuple) and decision.verdict == "promote"


@pytest.mark.parametrize(
    ("compared_with", "now", "fresh", "words"),
    [
        ("3", "3", True, "still version 3"),
        (None, None, True, "still no champion"),
        ("3", "4", False, "compared against version 3, but the champion is now version 4"),
        (None, "4", False, "compared against no champion yet, but the champion is now version 4"),
        ("3", None, False, "compared against version 3, but the champion is now no champion"),
    ],
)
def test_a_review_holds_only_while_its_champion_still_is(compared_with, now, fresh, words):
    ok, why = still_current(compared_with, now)
    assert ok is fresh and words in why
    if not fresh:
        assert why.startswith("stale review") and "new review" in why


def review(promote: bool, champion: dict | None) -> Review:
    decision = decide(metrics(0.80, 0.12), champion, POLICY)
    return Review(
        name="m",
        version="5",
        promote=promote,
        reasons=decision.reasons,
        champion_version="4" if champion else None,
        challenger=metrics(0.80, 0.12),
        champion=champion,
        holdout_rows=321,
    )


def test_the_description_shows_the_verdict_both_models_and_links_to_the_evidence():
    text = decision_markdown(review(True, metrics(0.70)), {"drift_report": "http://mlflow:5000/#/x"})
    assert text.startswith("**Decision: promote**")
    assert "Compared with champion: version 4, on 321 holdout rows." in text
    assert "| roc_auc | 0.8000 | 0.7000 |" in text and "| brier | 0.1200 | 0.1500 |" in text
    assert "- [drift_report](http://mlflow:5000/#/x)" in text
    first = decision_markdown(review(True, None), {})
    assert "none (first model)" in first and "| roc_auc | 0.8000 | - |" in first and "- none recorded" in first


def test_a_refused_promotion_puts_why_above_the_review():
    text = stale_markdown("**Decision: promote**\n...", "stale review: it compared against version 3", "2026-02-01")
    assert text.startswith("**Not promoted (2026-02-01): stale review: it compared against version 3.**")
    assert text.endswith("**Decision: promote**\n...") and "Clear `evaluate_models`" in text
