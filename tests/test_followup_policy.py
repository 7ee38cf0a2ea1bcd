"""The follow-up policy's reading of a rating: the menu and scores out of five."""

import pytest

from core.followup_policy import MENU_RATINGS, rating_for_score
from core.tickets import RATINGS


@pytest.mark.parametrize("score, rating", [(5, "满意"), (4, "满意"), (3, "基本满意"), (2, "不满意"), (1, "不满意")])
def test_a_score_out_of_five_is_a_rating(score, rating):
    assert rating_for_score(score) == rating


@pytest.mark.parametrize("score", [0, 6, -1])
def test_a_score_outside_one_to_five_is_refused(score):
    with pytest.raises(ValueError):
        rating_for_score(score)


def test_the_menu_offers_every_rating_once_in_order():
    assert list(MENU_RATINGS.values()) == list(RATINGS)
