"""The word lists of the triage: the packaged ``words.toml`` plus a site's own file.

A site names its file in ``triage.words_file``; it has the shape of ``words.toml`` and
every list in it is added to the packaged list of the same name. A name the packaged
file does not have (a misspelt list, a category that does not exist) is refused with the
file and the name, so a site's words are never silently ignored.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import SettingsError
from core.tickets import CATEGORY_NAMES

PACKAGED_WORDS = Path(__file__).with_name("words.toml")
# Category word weights by their name in the file (see words.toml).
WEIGHTS = {"parts": 4, "decisive": 3, "names": 2, "hints": 1}


class VocabularyError(SettingsError):
    """A word file that cannot be used; the message names the file and the list."""


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Every word list by section and name: ``lists[("subjects", "pipes")] == ("水管子", ...)``."""

    lists: dict[tuple[str, str], tuple[str, ...]]

    def words(self, section: str, name: str) -> tuple[str, ...]:
        return self.lists[(section, name)]  # a KeyError here is a misspelt name in the code

    def category_words(self, category: str, weight_name: str) -> tuple[str, ...]:
        return self.words(f"category.{category}", weight_name)

def load_vocabulary(site_file: str | Path | None = None) -> Vocabulary:
    """The packaged words, with a site's file (if any) added to them."""
    lists = _read(PACKAGED_WORDS)
    if site_file:
        for key, words in _read(Path(site_file), allowed=set(lists)).items():
            lists[key] = lists[key] + tuple(word for word in words if word not in lists[key])
    return Vocabulary(lists)


def _read(path: Path, allowed: set[tuple[str, str]] | None = None) -> dict[tuple[str, str], tuple[str, ...]]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise VocabularyError(f"词表文件无法读取 / cannot read the word file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise VocabularyError(f"词表文件格式错误 / invalid TOML in {path}: {error}") from None
    lists: dict[tuple[str, str], tuple[str, ...]] = {}
    for section, names in _sections(document, path):
        for name, value in names.items():
            key = (section, name)
            if allowed is not None and key not in allowed:
                raise VocabularyError(f"词表文件 {path} 中未知的词表 / unknown word list in {path}: [{section}] {name}")
            lists[key] = _words(value, path, key)
    if allowed is None:  # the packaged file: every category may take words of every weight
        for category in CATEGORY_NAMES:
            for weight_name in WEIGHTS:
                lists.setdefault((f"category.{category}", weight_name), ())
    return lists


def _sections(document: dict[str, Any], path: Path):
    """(section, {name: words}) pairs; the category tables are one level deeper ([category.plumbing])."""
    for section, table in document.items():
        if not isinstance(table, dict):
            raise VocabularyError(f"词表文件 {path}: {section} 应为表 / must be a table")
        if section != "category":
            yield section, table
            continue
        for category, weights in table.items():
            if category not in CATEGORY_NAMES or not isinstance(weights, dict):
                raise VocabularyError(f"词表文件 {path}: 未知类别 / unknown category [category.{category}]; "
                                      f"categories are {', '.join(CATEGORY_NAMES)}")
            yield f"category.{category}", weights


def _words(value: Any, path: Path, key: tuple[str, str]) -> tuple[str, ...]:
    if isinstance(value, str):
        words = value.split()
    elif isinstance(value, list) and all(isinstance(word, str) for word in value):
        words = [word.strip() for word in value if word.strip()]
    else:
        raise VocabularyError(f"词表文件 {path}: [{key[0]}] {key[1]} 应为字符串或字符串数组 / "
                              f"must be a string of words or an array of strings")
    if any(word.isspace() or not word for word in words):
        raise VocabularyError(f"词表文件 {path}: [{key[0]}] {key[1]} 含空词 / has an empty word")
    return tuple(dict.fromkeys(words))
