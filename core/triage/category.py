"""Which trade should go: the heaviest category word of ``[category.*]``, unless a hazard decides it."""

from __future__ import annotations

import re

from core.tickets import CATEGORY_NAMES
from core.triage.emergency import EmergencyWord
from core.triage.text import alternation, blank
from core.triage.vocabulary import WEIGHTS, Vocabulary

# When no category word was said, the hazard names the trade.
CATEGORY_OF_KIND = {
    "burst_pipe": "plumbing", "flooding": "plumbing", "sewage": "plumbing", "water_outage": "plumbing",
    "smoke": "electrical", "sparks": "electrical", "burning_smell": "electrical", "short_circuit": "electrical",
    "electric_shock": "electrical", "power_outage": "electrical", "gas_leak": "gas",
    "lift_trapped": "elevator", "lift_fault": "elevator", "falling_object": "structure",
}
# These hazards decide the category even over heavier words (燃气热水器有煤气味 is a gas job).
CATEGORY_FORCED_BY_KIND = {"gas_leak": "gas", "lift_trapped": "elevator"}
OTHER = "other"
HINT = 1  # the weight of a place or vague part: a hazard's own trade outweighs it
# Between an appliance and its connection: 洗衣机的水管, 热水器那根管子, 洗衣机接水龙头的地方.
CONNECTORS = r"的|那根|那个|这根|这个|后面的?|下面的?|底下的?|后面那根|下面那根|的那根|接"
WATER_CONNECTION_CATEGORY = "plumbing"
# Water running into or along the lift names the lift as a place, not as what is broken:
# 水流进电梯井 and 水顺着电梯门缝往下灌 are the plumber's first.
WATER_ROUTE = re.compile(r"(?:流|淌|灌|涌|冲|漫|漏|渗)(?:进|到|入)了?(?:电梯井?|井道|轿厢|电梯门缝?)"
                         r"|(?:顺着|沿着|从)(?:电梯门缝?|电梯井|井道)"
                         r"|往(?:电梯井?|井道|轿厢)(?:那边|这边|里面?|口)?(?:流|淌|灌)")

Hit = tuple[str | None, int, int]  # category (None: a neutral word), weight, start


class CategoryReader:
    """The category words of one vocabulary, as a table word -> (category, weight)."""

    def __init__(self, vocabulary: Vocabulary):
        table: dict[str, tuple[str | None, int]] = {word: (None, 0) for word in vocabulary.words("places", "neutral")}
        for category in CATEGORY_NAMES:
            for weight_name, weight in sorted(WEIGHTS.items(), key=lambda item: item[1]):
                table.update({word: (category, weight) for word in vocabulary.category_words(category, weight_name)})
        self.keywords = table
        self.longest = max(map(len, table), default=0)
        # A lookahead finds overlapping words; the alternation tries the longest first.
        self.pattern = re.compile(f"(?=({alternation(table)}))")
        appliances = alternation(vocabulary.category_words("appliance", "decisive"))
        connections = alternation(vocabulary.words("appliances", "water_connections"))
        self.water_connection = re.compile(rf"(?:{appliances})(?:{CONNECTORS})?(?:{connections})")

    def classify(self, normalized: str, emergencies: list[EmergencyWord]) -> str:
        """The trade that should go: the heaviest category word, unless a hazard decides it."""
        kinds = [word.kind for word in emergencies]
        for kind in kinds:
            if kind in CATEGORY_FORCED_BY_KIND:
                return CATEGORY_FORCED_BY_KIND[kind]
        routes = [match.span() for match in WATER_ROUTE.finditer(normalized)]
        hits = [(category, weight, start) for category, weight, start in self.hits(blank(normalized, routes))
                if category]
        hits += [(WATER_CONNECTION_CATEGORY, WEIGHTS["parts"], match.start())
                 for match in self.water_connection.finditer(normalized)]
        best = max(hits, key=lambda hit: (hit[1], -hit[2])) if hits else None
        by_hazard = next((CATEGORY_OF_KIND[kind] for kind in kinds if kind in CATEGORY_OF_KIND), None)
        if best and (best[1] > HINT or by_hazard is None):
            return best[0]
        return by_hazard or OTHER

    def names_a_category(self, clause: str) -> bool:
        return any(category for category, _, _ in self.hits(clause))

    def hits(self, text: str) -> list[Hit]:
        """Every keyword occurrence not inside a longer keyword (电梯门 hides 门, 上门 hides 门).

        One pass of one pattern, linear in the text: at each place the pattern finds the longest
        keyword starting there (any shorter one starting there is inside it), and a keyword that
        hides another starts at most ``self.longest`` - 1 characters before it."""
        found = [(match.start(), match.end(1)) for match in self.pattern.finditer(text)]
        ends = dict(found)  # start -> the end of the longest keyword starting there
        hits = []
        for start, end in found:
            if not any(ends.get(s, -1) >= end for s in range(max(0, start - self.longest + 1), start)):
                category, weight = self.keywords[text[start:end]]
                hits.append((category, weight, start))
        return hits
