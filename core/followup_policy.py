"""How a resident's answers to the follow-up call (回访) count: the rating menu and scores out of five.

The survey (callcenter/ivr/flows/survey.py) hears the words and keys; which rating (core.tickets.RATINGS)
an answer gives is decided here, so the call, the console and the reports agree on it.
"""

from __future__ import annotations

from core.tickets import RATINGS

SATISFIED, BASICALLY_SATISFIED, DISSATISFIED = RATINGS
# The rating menu as the call offers it (「满意请按1，基本满意请按2，不满意请按3」): key or spoken number.
MENU_RATINGS = {"1": SATISFIED, "2": BASICALLY_SATISFIED, "3": DISSATISFIED}
SCORE_RANGE = range(1, 6)  # a score out of five, as residents often give one (「打五分」, 「四星」)


def rating_for_score(score: int) -> str:
    """A score out of five as a rating: 4-5 满意, 3 基本满意, 1-2 不满意."""
    if score not in SCORE_RANGE:
        raise ValueError(f"a score is 1 to 5, not {score}")
    if score >= 4:
        return SATISFIED
    return BASICALLY_SATISFIED if score == 3 else DISSATISFIED
