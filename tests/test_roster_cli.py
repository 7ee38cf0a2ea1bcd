"""`callcenter roster ...` run as a user runs it: a separate process on the configured database."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.store import RosterOverride, Shift
from tests.test_cli import run, stored

SHANGHAI = ZoneInfo("Asia/Shanghai")
HEADER = "name,weekdays,start,end,skill,chain\n"


@pytest.fixture
def site(tmp_path):
    data_dir = tmp_path / "data"
    engineers = tmp_path / "engineers.csv"
    engineers.write_text("name,phone,skills\n张工,13800000001,水电\n李工,13800000002,水电\n"
                         "王主管,sip:wang@127.0.0.1,\n孙工,13800000005,电梯\n", encoding="utf-8")
    assert run(["engineers", "import", str(engineers)], data_dir).returncode == 0
    return data_dir


def write(tmp_path, text):
    path = tmp_path / "roster.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_import_replaces_the_pattern_and_warns_of_empty_slots(site, tmp_path):
    roster = HEADER + "白班,1-5,08:00,20:00,,张工>李工>王主管\n夜班,1-7,20:00,08:00,,李工>张工:40>王主管\n" \
                      "电梯,\"6,7\",00:00,24:00,电梯,孙工\n"
    result = run(["roster", "import", write(tmp_path, roster)], site)
    assert result.returncode == 0, result.stderr
    assert "已导入 3 个班次" in result.stdout
    shifts = {s.name: s for s in stored(site, Shift)}
    assert shifts["夜班"].weekdays == [1, 2, 3, 4, 5, 6, 7] and shifts["电梯"].weekdays == [6, 7]
    assert (shifts["夜班"].start_time.hour, shifts["夜班"].end_time.hour) == (20, 8)
    assert [(link.position, link.ring_seconds) for link in shifts["夜班"].links] == [(0, None), (1, 40), (2, None)]
    # Weekend days have only the lift engineer: a burst pipe would find nobody. Said now, not at night.
    warnings = [line for line in result.stdout.splitlines() if line.startswith("注意")]
    assert warnings and all("08:00" in line or "20:00" in line for line in warnings)
    assert {line.split()[-1] for line in warnings} == {"水电：没有排班", "燃气：没有排班"}
    result = run(["roster", "import", write(tmp_path, HEADER + "全天,1-7,00:00,24:00,,张工\n")], site)
    assert result.returncode == 0 and "warning" not in result.stdout
    assert [s.name for s in stored(site, Shift)] == ["全天"]  # the file is the whole pattern


def test_a_bad_line_refuses_the_whole_file_with_its_line_number(site, tmp_path):
    # Every kind of bad line is in tests/test_roster.py; here: what the person at the terminal sees.
    assert run(["roster", "import", write(tmp_path, HEADER + "早班,1-5,08:00,20:00,,张工\n")], site).returncode == 0
    bad = HEADER + "白班,1-5,08:00,20:00,,张工\n夜班,1-7,20:00,08:00,,李工>钱工\n"
    result = run(["roster", "import", write(tmp_path, bad)], site)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "第 3 行: 没有名为「钱工」的维修人员" in result.stderr and "未导入任何班次" in result.stderr
    assert [s.name for s in stored(site, Shift)] == ["早班"]


def test_import_needs_the_documented_header(site, tmp_path):
    result = run(["roster", "import", write(tmp_path, "name,days,start,end\n白班,1-5,08:00,20:00\n")], site)
    assert result.returncode == 1 and "表头缺少列 weekdays, skill, chain" in result.stderr


def test_override_records_who_stands_in_and_when(site, tmp_path):
    assert run(["roster", "import", write(tmp_path, HEADER + "全天,1-7,00:00,24:00,,张工>王主管\n")], site).returncode == 0
    result = run(["roster", "override", "--from", "2026-11-27T20:00", "--to", "2026-11-28T08:00",
                  "--replace", "张工", "--with", "李工", "--note", "调休"], site)
    assert result.returncode == 0, result.stderr
    # A date alone: from its first moment to the end of the last day.
    assert run(["roster", "override", "--from", "2026-12-01", "--to", "2026-12-02", "--replace", "王主管"],
               site).returncode == 0
    swap, leave = sorted(stored(site, RosterOverride), key=lambda o: o.starts_at)
    assert (swap.starts_at, swap.ends_at) == (datetime(2026, 11, 27, 20, tzinfo=SHANGHAI),
                                              datetime(2026, 11, 28, 8, tzinfo=SHANGHAI))
    assert (swap.note, swap.created_by, swap.substitute_id is not None) == ("调休", "cli", True)
    assert (leave.starts_at, leave.ends_at) == (datetime(2026, 12, 1, tzinfo=SHANGHAI),
                                                datetime(2026, 12, 3, tzinfo=SHANGHAI))
    assert leave.substitute_id is None


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-11-27", "--to", "2026-11-26", "--replace", "张工", "--with", "李工"], "结束时间应晚于开始时间"),
    (["--from", "明天", "--to", "2026-11-28", "--replace", "张工", "--with", "李工"], "--from 应为 ISO 8601"),
])
def test_override_refuses_plainly(site, args, message):
    result = run(["roster", "override", *args], site)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert stored(site, RosterOverride) == []
