"""The product documents itself: nothing points outside the repository, and docs/process.md says
what the code does (every state, 撤单 reason and time-limit setting, with the code's values; the
table of moves is the code's RULES), so the document cannot silently fall behind the code."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import pytest

from core.settings import SlaSettings
from core.tickets import CANCEL_REASONS, RULES, STATUS_NAMES, Role, Status

ROOT = Path(__file__).resolve().parent.parent
PROCESS = ROOT / "docs" / "process.md"

# Directories that are not the repository's own files: git's, virtual environments, caches, builds.
NOT_OURS = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "build", "var"}
# A path into the development machine's shared folder or an absolute path on it. Written with a
# character class so that this file does not match itself.
OUTSIDE = re.compile(r"(?<![\w.-])share[d]/|(?<![\w.])/wor[k]/")


def repository_text_files() -> list[Path]:
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in NOT_OURS and not name.endswith(".egg-info")]
        for name in set(names) - NOT_OURS:  # a worktree's .git is a file
            path = Path(folder, name)
            if path.is_file() and _is_text(path):
                files.append(path)
    return sorted(files)


def _is_text(path: Path) -> bool:
    """Not audio or a model: no NUL byte at the start."""
    with path.open("rb") as file:
        return b"\0" not in file.read(8192)


def test_no_file_points_outside_the_repository():
    offenders = {}
    for path in repository_text_files():
        name = path.relative_to(ROOT).as_posix()
        hits = [number for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                if OUTSIDE.search(line)]
        if hits:
            offenders[name] = hits
    assert not offenders, f"references to files a user of the product does not have (file: line numbers): {offenders}"


def test_the_documentation_is_part_of_the_repository():
    assert PROCESS in repository_text_files()


@pytest.fixture(scope="module")
def process() -> str:
    return PROCESS.read_text(encoding="utf-8")


def test_every_state_is_documented_with_its_code_and_name(process):
    for status in Status:
        assert f"| `{status.value}` | {STATUS_NAMES[status]} |" in process, status


def test_every_cancel_reason_is_documented_with_its_code_and_name(process):
    for code, name in CANCEL_REASONS.items():
        assert f"| `{code}` | {name} |" in process, code


def test_every_time_limit_setting_is_documented_with_its_default(process):
    for setting in fields(SlaSettings):
        row = re.search(rf"^\| `sla\.{setting.name}` \| ([^|]+) \|", process, re.MULTILINE)
        assert row, f"sla.{setting.name} has no row in the time limits table"
        assert row.group(1).strip() == str(setting.default), setting.name


def test_the_table_of_moves_is_the_codes(process):
    documented = {}
    for frm, to, label, who in re.findall(r"^\| `(\w+)` → `(\w+)` \| ([^|]+) \| ([^|]+) \|", process, re.MULTILINE):
        documented[(Status(frm), Status(to))] = (label.strip(), set(re.findall(r"`(\w+)`", who)))
    in_code = {move: (rule.label, {role.value for role in rule.roles} - {Role.ADMIN.value})
               for move, rule in RULES.items()}
    assert documented == in_code


def test_sections_the_code_points_to_exist(process):
    headings = set(re.findall(r"^## (.+)$", process, re.MULTILINE))
    pointers = set()
    sources = [ROOT / "README.md", *sorted(ROOT.glob("core/**/*.py")), *sorted(ROOT.glob("callcenter/**/*.py"))]
    for path in sources:
        text = re.sub(r"\s*\n\s*", " ", path.read_text(encoding="utf-8"))  # a pointer may wrap
        for quoted in re.findall(r'docs/process\.md ((?:(?:and )?"[^"]+" ?)+)', text):
            pointers.update(re.findall(r'"([^"]+)"', quoted))
    assert pointers, "the code points to sections of docs/process.md"
    assert pointers <= headings, pointers - headings
