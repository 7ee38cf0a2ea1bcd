"""The resident directory and the engineers, loaded from the CSV files a site already keeps."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.contacts import ContactError, check_contact, is_sip_address
from core.db import affected_rows
from core.phones import PHONE_PATTERN, normalise_phone
from core.store import Engineer, Resident

RESIDENT_COLUMNS = ("phone", "name", "building", "unit", "room")
ENGINEER_COLUMNS = ("name", "phone", "skills")


class DirectoryError(ValueError):
    """A file that cannot be imported; nothing of it was saved. The message names the line."""


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    removed: int = 0


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV (Excel's BOM allowed) whose header has at least ``columns``."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DirectoryError(f"{path}: 表头缺少列 {', '.join(missing)}（应为 {','.join(columns)}）")
            return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]
    except FileNotFoundError:
        raise DirectoryError(f"文件不存在: {path}") from None
    except UnicodeDecodeError:
        raise DirectoryError(f"{path}: 不是 UTF-8 编码的 CSV 文件") from None


def import_residents(session: Session, rows: list[dict[str, str]], replace: bool = False) -> ImportResult:
    """Add or update residents by phone number; any bad line stops the whole import. ``replace``:
    the file is the whole directory, so numbers missing from it are dropped (a number given up and
    handed to somebody else must not keep the previous owner's address)."""
    result = ImportResult()
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        phone = normalise_phone(row["phone"])
        if not PHONE_PATTERN.match(phone):
            raise DirectoryError(f"第 {line} 行: 电话号码无效 {row['phone']!r}")
        if phone in seen:
            raise DirectoryError(f"第 {line} 行: 电话号码重复 {phone}")
        if not row["room"]:
            raise DirectoryError(f"第 {line} 行: 缺少房号")
        seen.add(phone)
        resident = session.scalar(select(Resident).where(Resident.phone == phone))
        if resident is None:
            resident = Resident(phone=phone)
            session.add(resident)
            result.added += 1
        else:
            result.updated += 1
        for key in ("name", "building", "unit", "room"):
            setattr(resident, key, row[key])
    if replace:
        result.removed = affected_rows(session.execute(delete(Resident).where(Resident.phone.not_in(seen))))
    return result


def import_engineers(session: Session, rows: list[dict[str, str]]) -> ImportResult:
    """Add or update engineers by name; ``phone`` may be a number or a SIP address (sip:...)."""
    result = ImportResult()
    for line, row in enumerate(rows, start=2):
        name = row["name"]
        if not name:
            raise DirectoryError(f"第 {line} 行: 缺少姓名")
        try:
            contact = check_contact(row["phone"])
        except ContactError as error:
            raise DirectoryError(f"第 {line} 行: {error}") from None
        is_sip = is_sip_address(contact)
        engineer = session.scalar(select(Engineer).where(Engineer.name == name))
        if engineer is None:
            engineer = Engineer(name=name)
            session.add(engineer)
            result.added += 1
        else:
            result.updated += 1
        engineer.phone = "" if is_sip else contact
        engineer.sip_uri = contact if is_sip else ""
        engineer.skills = [s.strip() for s in row["skills"].split(";") if s.strip()]
        engineer.active = True
    return result
