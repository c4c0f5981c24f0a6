"""The search: a campaign of Hypothesis rounds over a target's case space (`campaign`), the
fresh-draw backend (`fresh`) and batches of cases per example (`batch`)."""

from kfuzz.search.campaign import (
    CampaignConfig,
    CampaignResult,
    HypothesisStorage,
    ProgressFn,
    run_campaign,
)

__all__ = ["CampaignConfig", "CampaignResult", "HypothesisStorage", "ProgressFn", "run_campaign"]
