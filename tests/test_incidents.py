"""core.incidents: declaring, the one attach rule (kind, building, window), closing and the call-back list,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from core import callouts, desk, incidents
from core.desk import Actor, NewTicket, ValidationError
from core.incident_store import Incident, IncidentCaller
from core.incidents import IncidentError, Place
from core.store import CallOut
from core.tickets import Channel, Role, Urgency
from core.triage import triage

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)
CLERK = Actor("desk1", Role.FRONTDESK)
ENGINEER = Actor("zhang", Role.ENGINEER, 1)


def phone_emergency(sessions, settings, description="我家停水了，一滴水都没有", at=START, **fields) -> int:
    facts = {"description": description, "building": "3", "unit": "2", "room": "1101", "category": "plumbing",
             "urgency": Urgency.EMERGENCY, "channel": Channel.PHONE, "reported_at": at} | fields
    with sessions() as session, session.begin():
        return desk.create_ticket(session, NewTicket(**facts), desk.HOTLINE, at, settings).id


def declare(sessions, **values) -> int:
    values = {"kind": "water", "buildings": ["3"], "actor": CLERK, "now": START} | values
    with sessions() as session, session.begin():
        return incidents.declare(session, **values).id


def test_the_kind_is_read_from_the_callers_words():
    now = START

    def kind(text):
        return incidents.kind_of(triage(text, now))

    assert kind("我家停水了") == "water"
    assert kind("楼里全都停电了，一片漆黑") == "power"
    assert kind("家里燃气有味道，闻到煤气味") == "gas"
    assert kind("卫生间水龙头滴水") is None  # not an outage
    assert kind("厨房水管爆了") is None  # a burst pipe is its own job
    assert kind("电梯里困了人，出不来") is None  # somebody in danger is never just counted


def test_the_desk_declares_with_what_the_callers_will_hear(sessions):
    incident_id = declare(sessions, buildings=["3", "5", "3"], action="checking", note="二次供水泵房故障",
                          expected_end=START + timedelta(hours=6))
    with sessions() as session:
        incident = session.get(Incident, incident_id)
        assert (incident.kind, incident.buildings, incident.action, incident.opened_by) == \
               ("water", ["3", "5"], "checking", "desk1")
        assert incident.closed_at is None and incident.callers == []


@pytest.mark.parametrize("values, field", [
    ({"kind": "flood"}, "kind"), ({"buildings": []}, "buildings"), ({"action": "praying"}, "action"),
    ({"expected_end": START - timedelta(minutes=1)}, "expected_end"), ({"buildings": ["x" * 17]}, "buildings"),
])
def test_a_bad_declaration_says_which_field(sessions, values, field):
    with pytest.raises(ValidationError) as error:
        declare(sessions, **values)
    assert field in error.value.errors
    with sessions() as session:
        assert session.scalars(select(Incident)).all() == []


def test_only_the_desk_declares_and_closes(sessions):
    with pytest.raises(IncidentError):
        declare(sessions, actor=ENGINEER)
    incident_id = declare(sessions)
    with sessions() as session, session.begin(), pytest.raises(IncidentError):
        incidents.close(session, incident_id, ENGINEER, START)


def test_a_caller_belongs_to_an_open_incident_of_the_same_kind_in_a_building_it_covers(sessions, settings):
    water = declare(sessions, buildings=["3", "5"])
    power = declare(sessions, kind="power", buildings=["7"])
    later = START + timedelta(hours=5)  # a declared incident holds while it is open, window or not
    with sessions() as session:
        def belongs(building, kind):
            found = incidents.incident_for(session, Place(building=building), kind, later, settings)
            return found.id if found else None

        assert belongs("3", "water") == water and belongs("5", "water") == water
        assert belongs("3", "power") is None  # another kind
        assert belongs("4", "water") is None  # another building
        assert belongs("7", "power") == power
        assert belongs("", "water") is None and belongs("3", None) is None


def test_an_area_incident_covers_that_public_area(sessions, settings):
    garage = declare(sessions, kind="power", buildings=[], area="车库")
    with sessions() as session:
        assert incidents.incident_for(session, Place(area="车库"), "power", START, settings).id == garage
        assert incidents.incident_for(session, Place(area="大堂"), "power", START, settings) is None


def test_a_second_emergency_of_the_same_kind_within_the_window_forms_an_incident(sessions, settings):
    first = phone_emergency(sessions, settings)
    phone_emergency(sessions, settings, description="我家水管爆了", room="0901")  # another kind
    soon = START + timedelta(minutes=settings.callout.incident_window_minutes - 1)
    with sessions() as session, session.begin():
        assert incidents.incident_for(session, Place("4"), "water", soon, settings) is None  # other building
        formed = incidents.incident_for(session, Place("3", "1", "0501"), "water", soon, settings)
        assert (formed.kind, formed.buildings, formed.ticket_id, formed.opened_by) == ("water", ["3"], first, "hotline")
        assert [(c.ticket_id, c.how) for c in formed.callers] == [(first, "ticket")]
        assert desk.get_ticket(session, first).events[-1].kind == "incident"
    with sessions() as session:  # formed once: the next caller finds the same one
        again = incidents.incident_for(session, Place("3"), "water", soon, settings)
        assert again.id == formed.id and len(session.scalars(select(Incident)).all()) == 1


def test_outside_the_window_an_earlier_emergency_forms_nothing(sessions, settings):
    phone_emergency(sessions, settings)
    late = START + timedelta(minutes=settings.callout.incident_window_minutes + 1)
    with sessions() as session, session.begin():
        assert incidents.incident_for(session, Place("3"), "water", late, settings) is None
        assert session.scalars(select(Incident)).all() == []


def test_a_counted_caller_keeps_number_words_and_call(sessions):
    incident_id = declare(sessions)
    with sessions() as session, session.begin():
        incident = incidents.get(session, incident_id)
        incidents.attach_call(session, incident, at=START, phone="13800138000", call_record_id=None,
                              place=Place("3", "2", "1101"), words="我家也没水了", how="caller_id")
    with sessions() as session:
        (caller,) = session.get(Incident, incident_id).callers
        assert (caller.phone, caller.room, caller.words, caller.how, caller.ticket_id) == \
               ("13800138000", "1101", "我家也没水了", "caller_id", None)


def test_the_emergency_call_out_attaches_an_outage_ticket_to_the_open_incident_and_pages_nobody(sessions, settings):
    incident_id = declare(sessions)
    ticket_id = phone_emergency(sessions, settings)
    with sessions() as session, session.begin():
        callout, attached = callouts.start_or_attach(session, ticket_id, desk.HOTLINE, START, settings)
    assert (callout, attached) == (None, True)
    with sessions() as session:
        assert session.scalars(select(CallOut)).all() == []
        assert [c.ticket_id for c in session.get(Incident, incident_id).callers] == [ticket_id]


def test_closing_with_a_call_back_lists_each_number_once(sessions):
    incident_id = declare(sessions)
    with sessions() as session, session.begin():
        incident = incidents.get(session, incident_id)
        for phone in ("13800138000", "13800138000", "13900139000", ""):
            incidents.attach_call(session, incident, at=START, phone=phone, call_record_id=None, place=Place("3"),
                                  words="", how="caller_id")
    with sessions() as session, session.begin():
        closed = incidents.close(session, incident_id, CLERK, START + timedelta(hours=2), call_back=True)
        assert (closed.closed_by, closed.call_back) == ("desk1", True)
    with sessions() as session, session.begin():
        assert [c.call_back_state for c in session.get(Incident, incident_id).callers] == \
               ["pending", "", "pending", "skipped"]
        pending = incidents.pending_call_backs(session, 10)
        assert [c.phone for c in pending] == ["13800138000", "13900139000"]
        assert incidents.claim_call_back(session, pending[0].id) is not None
        assert incidents.claim_call_back(session, pending[0].id) is None  # taken once, by one node
        incidents.record_call_back(session, pending[0].id, "called", None)
    with sessions() as session:
        assert [c.phone for c in incidents.pending_call_backs(session, 10)] == ["13900139000"]
        with pytest.raises(IncidentError):
            incidents.close(session, incident_id, CLERK, START + timedelta(hours=3))


def test_a_closed_incident_takes_no_more_callers(sessions, settings):
    incident_id = declare(sessions)
    with sessions() as session, session.begin():
        incidents.close(session, incident_id, CLERK, START + timedelta(hours=1))
    with sessions() as session:
        assert incidents.open_for_place(session, Place("3")) is None
        assert incidents.incident_for(session, Place("3"), "water", START + timedelta(hours=1), settings) is None


def test_declared_from_a_ticket_it_is_the_first_caller_and_only_once(sessions, settings):
    ticket_id = phone_emergency(sessions, settings)
    incident_id = declare(sessions, ticket_id=ticket_id)
    with sessions() as session:
        assert [(c.ticket_id, c.how) for c in session.get(Incident, incident_id).callers] == [(ticket_id, "ticket")]
    with pytest.raises(IncidentError):
        declare(sessions, ticket_id=ticket_id)
    with sessions() as session:
        assert len(session.scalars(select(IncidentCaller)).all()) == 1


def test_the_call_backs_go_to_the_follow_up_dialler_in_calling_hours_only(sessions, settings, engine):
    from core.jobs import Jobs

    incident_id = declare(sessions)
    with sessions() as session, session.begin():
        incident = incidents.get(session, incident_id)
        caller = incidents.attach_call(session, incident, at=START, phone="13800138000", call_record_id=None,
                                       place=Place("3"), words="", how="caller_id")
        caller_id = caller.id
        incidents.close(session, incident_id, CLERK, START, call_back=True)
    dialled = []
    night = START.replace(hour=23)
    assert Jobs(settings, engine, dialled.append, clock=lambda: night).followup_tick() == []
    handed = Jobs(settings, engine, dialled.append, clock=lambda: START.replace(hour=10)).followup_tick()
    assert handed == [("incident", caller_id)]
    deadline = datetime.now().timestamp() + 5
    while not dialled and datetime.now().timestamp() < deadline:
        pass
    assert dialled == [("incident", caller_id)]
