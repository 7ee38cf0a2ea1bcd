"""The ticket desk on a real database (SQLite file and PostgreSQL)."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import desk, directory, moves, reports
from core.base import Actor, ValidationError
from core.desk import HOTLINE, NewTicket, TicketFilter
from core.store import Engineer, FeeItem
from core.tickets import Channel, Role, Status, TransitionError, TransitionRequest, Urgency

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLERK = Actor("desk1", Role.FRONTDESK)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def new(**fields) -> NewTicket:
    return NewTicket(**({"description": "卫生间漏水", "building": "3", "unit": "2", "room": "1101"} | fields))


@pytest.fixture
def engineers(sessions):
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")])
    with sessions() as session:
        return {e.name: e.id for e in session.scalars(select(Engineer))}


def test_numbers_are_local_date_plus_daily_sequence_across_midnight(sessions, settings):
    with sessions() as session, session.begin():
        first = desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 23, 58), settings)
        second = desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 23, 59), settings)
        # 00:01 in Shanghai is still the 22nd in UTC: the local day decides.
        third = desk.create_ticket(session, new(), CLERK, at(2026, 11, 23, 0, 1), settings)
    assert [first.number, second.number, third.number] == ["20261122001", "20261122002", "20261123001"]


def test_a_ticket_walks_its_whole_life_and_every_step_is_an_event(sessions, settings, engineers):
    now = at(2026, 11, 22, 9, 0)
    engineer = Actor("zhang", Role.ENGINEER, engineers["张工"])
    steps = [
        (CLERK, TransitionRequest(Status.DISPATCHED, engineer_id=engineers["张工"])),
        (engineer, TransitionRequest(Status.ACCEPTED)),
        (engineer, TransitionRequest(Status.ON_SITE)),
        (engineer, TransitionRequest(Status.COMPLETED, actual_item="更换角阀", material_fee=35,
                                     labour_fee=20, material_check="passed", customer_confirmed=True)),
        (CLERK, TransitionRequest(Status.FOLLOWED_UP, rating="满意")),
        (CLERK, TransitionRequest(Status.ARCHIVED)),
    ]
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, new(), CLERK, now, settings)
        for minutes, (actor, step) in enumerate(steps, start=1):
            moves.move_ticket(session, ticket, step, actor, now + timedelta(minutes=minutes * 10), settings)
        ticket_id = ticket.id
    with sessions() as session:
        ticket = desk.get_ticket(session, ticket_id)
        assert ticket.status == Status.ARCHIVED
        assert (ticket.material_fee, ticket.labour_fee, ticket.actual_item) == (35, 20, "更换角阀")
        assert ticket.accepted_at == now + timedelta(minutes=20)
        assert ticket.rating == "满意" and ticket.customer_confirmed
        events = [(e.kind, e.actor, e.from_status, e.to_status) for e in ticket.events]
    assert events == [
        ("created", "desk1", None, "received"),
        ("transition", "desk1", "received", "dispatched"),
        ("transition", "zhang", "dispatched", "accepted"),
        ("transition", "zhang", "accepted", "on_site"),
        ("transition", "zhang", "on_site", "completed"),
        ("followup", "followup", None, None),  # no phone: 不安排自动回访, the desk calls
        ("transition", "desk1", "completed", "followed_up"),
        ("transition", "desk1", "followed_up", "archived"),
    ]


def test_engineers_act_only_on_their_own_tickets_and_reassignment_needs_another(sessions, settings, engineers):
    now = at(2026, 11, 22, 9, 0)
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, new(), CLERK, now, settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineers["张工"]),
                        CLERK, now, settings)
        stranger = Actor("li", Role.ENGINEER, engineers["李工"])
        with pytest.raises(TransitionError, match="只能处理派给自己的维修单"):
            moves.move_ticket(session, ticket, TransitionRequest(Status.ACCEPTED), stranger, now, settings)
        with pytest.raises(TransitionError, match="另一位维修人员"):
            moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineers["张工"],
                                                               reason="换人"), CLERK, now, settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.DISPATCHED, engineer_id=engineers["李工"],
                                                           reason="张工请假"), CLERK, now, settings)
        assert ticket.engineer_id == engineers["李工"]
        assert ticket.events[-1].data["engineer"]["previous_id"] == engineers["张工"]


def test_cancelling_records_the_reason_from_the_fixed_list(sessions, settings):
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 9, 0), settings)
        moves.move_ticket(session, ticket, TransitionRequest(Status.CANCELLED, reason="self_fixed", note="住户自己修好了"),
                        CLERK, at(2026, 11, 22, 9, 5), settings)
        assert (ticket.status, ticket.cancel_reason, ticket.due_at) == (Status.CANCELLED, "self_fixed", None)
        assert ticket.events[-1].note == "住户自己修好了"


def test_hotline_tickets_start_as_drafts_and_corrections_are_events(sessions, settings):
    with sessions() as session, session.begin():
        draft = desk.create_ticket(session, new(channel=Channel.PHONE, room="", area="电梯"), HOTLINE,
                                   at(2026, 11, 22, 2, 0), settings)
        assert draft.status == Status.DRAFT
        assert draft.due_at == at(2026, 11, 22, 2, 2)
        desk.edit_ticket(session, draft, {"room": "1102", "area": "", "urgency": "emergency"}, CLERK,
                         at(2026, 11, 22, 8, 0), settings)
        change = draft.events[-1]
        assert change.kind == "edit"
        assert change.data["changes"]["room"] == {"from": "", "to": "1102"}
        assert change.data["changes"]["urgency"] == {"from": "normal", "to": "emergency"}
        with pytest.raises(ValidationError):
            desk.edit_ticket(session, draft, {"number": "1"}, CLERK, at(2026, 11, 22, 8, 0), settings)


def test_public_areas_are_free_and_paid_work_is_priced_from_the_standard(sessions, settings):
    with sessions() as session, session.begin():
        item = FeeItem(code="P01", name="更换水龙头", material_fee=45, labour_fee=20)
        session.add(item)
        session.flush()
        paid = desk.create_ticket(session, new(is_paid=True, fee_item_id=item.id), CLERK, at(2026, 11, 22, 9), settings)
        public = desk.create_ticket(session, new(room="", area="车库", is_paid=True), CLERK, at(2026, 11, 22, 9), settings)
        unpriced = desk.create_ticket(session, new(is_paid=True), CLERK, at(2026, 11, 22, 9), settings)
        assert paid.quoted_fee == 65
        assert (public.is_paid, public.quoted_fee) == (False, 0)
        assert unpriced.quoted_fee is None  # outside the standard: goes to 待评审


def test_queue_filters_and_overdue(sessions, settings):
    now = at(2026, 11, 22, 10, 0)
    with sessions() as session, session.begin():
        desk.create_ticket(session, new(urgency=Urgency.EMERGENCY), CLERK, now - timedelta(hours=1), settings)
        desk.create_ticket(session, new(building="5"), CLERK, now - timedelta(minutes=1), settings)
        desk.create_ticket(session, new(building="5", description="门锁坏了"), CLERK, now, settings)
    with sessions() as session:
        everything, total = desk.find_tickets(session, TicketFilter(), now)
        assert total == 3 and everything[0].urgency == Urgency.EMERGENCY  # emergencies first
        overdue, _ = desk.find_tickets(session, TicketFilter(overdue=True), now)
        assert [t.urgency for t in overdue] == [Urgency.EMERGENCY]
        assert desk.find_tickets(session, TicketFilter(building="5"), now)[1] == 2
        assert desk.find_tickets(session, TicketFilter(search="门锁"), now)[1] == 1
        assert desk.find_tickets(session, TicketFilter(statuses=[Status.DRAFT]), now)[1] == 0


def test_an_engineer_finds_only_their_own_tickets_whatever_they_ask_for(sessions, settings):
    now = at(2026, 11, 22, 10, 0)
    with sessions() as session, session.begin():
        zhang, li = Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")
        session.add_all([zhang, li])
        session.flush()
        for engineer in (zhang, li, None):
            ticket = desk.create_ticket(session, new(), CLERK, now, settings)
            ticket.engineer_id = engineer.id if engineer else None
        ids = zhang.id, li.id
    with sessions() as session:
        def found(actor, wanted=None):
            return [t.engineer_id for t in desk.find_tickets(session, wanted or TicketFilter(), now, seen_by=actor)[0]]
        assert found(Actor("张工", Role.ENGINEER, ids[0])) == [ids[0]]
        assert found(Actor("张工", Role.ENGINEER, ids[0]), TicketFilter(engineer_id=ids[1])) == []
        assert found(Actor("ghost", Role.ENGINEER, None)) == []  # linked to nobody: nothing, not the unassigned
        assert sorted(found(CLERK), key=str) == sorted([ids[0], ids[1], None], key=str)


def test_report_counts_states_and_the_on_time_rate(sessions, settings, engineers):
    start = at(2026, 11, 1, 0, 0)
    with sessions() as session, session.begin():
        for late in (False, True):
            t = desk.create_ticket(session, new(urgency=Urgency.EMERGENCY), CLERK, at(2026, 11, 5, 9, 0), settings)
            for minutes, step in ((1, TransitionRequest(Status.DISPATCHED, engineer_id=engineers["张工"])),
                                  (2, TransitionRequest(Status.ACCEPTED)),
                                  (45 if late else 20, TransitionRequest(Status.ON_SITE)),
                                  (90, TransitionRequest(Status.COMPLETED, actual_item="修好了"))):
                moves.move_ticket(session, t, step, CLERK, at(2026, 11, 5, 9, 0) + timedelta(minutes=minutes), settings)
        desk.create_ticket(session, new(category="electrical"), CLERK, at(2026, 11, 6, 9, 0), settings)
        desk.create_ticket(session, new(), CLERK, at(2026, 12, 1, 9, 0), settings)  # outside the range
    with sessions() as session:
        report = reports.ticket_report(session, start, at(2026, 12, 1, 0, 0), settings.sla)
    assert report["total"] == 3
    assert report["by_status"] == {"completed": 2, "received": 1}
    assert report["by_category"] == {"other": 2, "electrical": 1}
    assert (report["completed"], report["on_time"], report["on_time_rate"]) == (2, 1, 0.5)


def test_the_17_00_list_has_everything_open_reported_by_the_cutoff(sessions, settings, engineers):
    with sessions() as session, session.begin():
        morning = desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 9, 0), settings)
        done = desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 9, 30), settings)
        moves.move_ticket(session, done, TransitionRequest(Status.CANCELLED, reason="duplicate"), CLERK,
                        at(2026, 11, 22, 9, 31), settings)
        yesterday = desk.create_ticket(session, new(), CLERK, at(2026, 11, 21, 15, 0), settings)
        desk.create_ticket(session, new(), CLERK, at(2026, 11, 22, 17, 1), settings)  # after the cut-off
        expected = {morning.id, yesterday.id}
    with sessions() as session:
        listed = {t.id for t in desk.daily_report(session, date(2026, 11, 22), settings)}
    assert listed == expected


def test_directory_import_adds_updates_and_refuses_bad_files_whole(sessions, tmp_path):
    good = tmp_path / "residents.csv"
    good.write_text("\ufeffphone,name,building,unit,room\n13800138000,王女士,3,2,1101\n139-0000-0000,李先生,5,1,602\n",
                    encoding="utf-8")
    with sessions() as session, session.begin():
        result = directory.import_residents(session, directory.read_csv(good, directory.RESIDENT_COLUMNS))
    assert (result.added, result.updated) == (2, 0)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone,name,building,unit,room\n13800138000,王女士,3,2,1102\nabc,x,1,1,101\n", encoding="utf-8")
    with pytest.raises(directory.DirectoryError, match="第 3 行"):
        with sessions() as session, session.begin():
            directory.import_residents(session, directory.read_csv(bad, directory.RESIDENT_COLUMNS))
    with sessions() as session:
        resident = desk.resident_by_phone(session, "138 0013 8000")
        assert resident.room == "1101"  # the failed import changed nothing
        assert desk.resident_by_phone(session, "13900000000").name == "李先生"
    with pytest.raises(directory.DirectoryError, match="表头缺少列"):
        directory.read_csv(good, directory.ENGINEER_COLUMNS)
