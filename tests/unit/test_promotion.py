import pytest

from ctpipe.registry import PromotionPolicy, decide

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


def test_policy_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("CTPIPE_PROMOTION_MARGIN", "0.02")
    assert PromotionPolicy.from_env().margin == 0.02
    monkeypatch.setenv("CTPIPE_PROMOTION_MARGIN", "lots")
    with pytest.raises(ValueError, match="CTPIPE_PROMOTION_MARGIN must be a number"):
        PromotionPolicy.from_env()
