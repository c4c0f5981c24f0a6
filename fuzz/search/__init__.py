"""The search: a campaign of Hypothesis rounds over a target's case space (`campaign`), what
it is asked and what it did (`config`), the scores it climbs (`feedback`), the fresh-draw
backend (`fresh`), batches of cases per example (`batch`), where Hypothesis keeps its files
(`storage`) and interrupts (`interrupts`). Shrinking past Hypothesis' own pass is
`kfuzz.shrink`'s."""

from kfuzz.search.campaign import ProgressFn, run_campaign
from kfuzz.search.config import CampaignConfig, CampaignResult
from kfuzz.search.storage import HypothesisStorage

__all__ = ["CampaignConfig", "CampaignResult", "HypothesisStorage", "ProgressFn", "run_campaign"]
