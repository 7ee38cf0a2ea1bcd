"""The category reader's keyword hits: a word inside a longer word does not count (电梯门 hides 门),
read in time linear in the text (a 2000-character description is the form's limit)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from core.triage import Triage

READER = Triage.default().categories
WORDS = sorted(READER.keywords)


def hits_by_definition(text: str) -> list:
    """Every occurrence of every keyword, less those inside a strictly longer occurrence."""
    spans = [(at, at + len(word), *READER.keywords[word])
             for word in READER.keywords for at in range(len(text)) if text.startswith(word, at)]
    return ordered([(category, weight, start) for start, end, category, weight in spans
                    if not any(s <= start and end <= e and e - s > end - start for s, e, _, _ in spans)])


def ordered(hits: list) -> list:
    return sorted(hits, key=lambda hit: (hit[2], hit[1], hit[0] or ""))


def test_a_word_inside_a_longer_word_is_hidden():
    assert {"电梯门", "门"} <= set(WORDS)
    starts = {start: category for category, _, start in READER.hits("电梯门关不上，门也坏了")}
    assert starts == {0: READER.keywords["电梯门"][0], 7: READER.keywords["门"][0]}


@settings(max_examples=300, deadline=None, database=None, derandomize=True)  # no .hypothesis directory
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from("的了，我家坏漏水管门电")), max_size=40))
def test_the_hits_are_those_of_the_definition(pieces):
    text = "".join(pieces)
    assert ordered(READER.hits(text)) == hits_by_definition(text)
