"""Roles (issue 14, item 2), against the real app over HTTP: an engineer account is linked to an active
engineer or sees nothing; recordings are heard by the desk, managers and admins, by an engineer only
for the tickets assigned to them; every playback and download, login, failed login and account
change is in the audit log, which only admins read."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from core.accounts import hash_password
from core.calls import CallLog
from core.store import AuditEntry, Engineer, User
from tests.conftest import STAFF_PASSWORD

TICKET = {"description": "厨房水管漏水", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101"}
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(200)


async def new_ticket(client, people=None, engineer=None) -> dict:
    ticket = await (await client.post("/api/tickets", json=TICKET)).json()
    if engineer:
        response = await client.post(f"/api/tickets/{ticket['id']}/transitions",
                                     json={"to": "dispatched", "engineer_id": people[engineer]})
        assert response.status == 200
        ticket = await response.json()
    return ticket


async def test_an_engineer_account_needs_an_active_engineer(api, people, sessions):
    root = await api("root")
    account = {"username": "wang", "password": "long-enough-1", "role": "engineer"}
    refused = await root.post("/api/users", json=account)
    assert refused.status == 422 and "必须关联" in (await refused.json())["fields"]["engineer_name"]
    unknown = await root.post("/api/users", json=account | {"engineer_name": "王工"})
    assert unknown.status == 422 and "不存在" in (await unknown.json())["fields"]["engineer_name"]
    with sessions() as session, session.begin():
        session.add(Engineer(name="王工", phone="13800000003", active=False))
    retired = await root.post("/api/users", json=account | {"engineer_name": "王工"})
    assert retired.status == 422 and "已停用" in (await retired.json())["fields"]["engineer_name"]
    linked = await root.post("/api/users", json=account | {"engineer_name": "李工"})
    assert linked.status == 201 and (await linked.json())["engineer_id"] == people["李工"]
    # Making a desk account an engineer needs the link too.
    desk_id = {u["username"]: u["id"] for u in await (await root.get("/api/users")).json()}["desk"]
    assert (await root.patch(f"/api/users/{desk_id}", json={"role": "engineer"})).status == 422
    moved = await root.patch(f"/api/users/{desk_id}", json={"role": "engineer", "engineer_name": "张工"})
    assert moved.status == 200 and (await moved.json())["engineer_id"] == people["张工"]


def test_user_add_on_the_command_line_refuses_an_engineer_without_an_engineer(tmp_path):
    env = os.environ | {"CALLCENTER_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "callcenter.cli", "user", "add", "wang", "--role", "engineer"]
    result = subprocess.run(command, input="long-enough-1\n", env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "必须关联" in result.stderr
    result = subprocess.run(command + ["--engineer", "王工"], input="long-enough-1\n", env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1 and "不存在" in result.stderr


async def test_an_unlinked_or_deactivated_engineer_account_sees_nothing(api, people, sessions):
    desk = await api("desk")
    unassigned = await new_ticket(desk)  # a draft nobody has: "only my tickets" once let None == None through
    mine = await new_ticket(desk, people, "张工")
    # An account left unlinked by an older version (the API refuses to make one now).
    with sessions() as session, session.begin():
        session.add(User(username="ghost", display_name="ghost", role="engineer", engineer_id=None,
                         password_hash=hash_password(STAFF_PASSWORD), created_at=datetime.now(UTC)))
    ghost = await api("ghost")
    assert (await (await ghost.get("/api/tickets")).json())["total"] == 0
    assert (await ghost.get(f"/api/tickets/{unassigned['id']}")).status == 404
    moved = await ghost.post(f"/api/tickets/{unassigned['id']}/transitions", json={"to": "price_review"})
    assert moved.status == 404
    assert (await ghost.post(f"/api/tickets/{unassigned['id']}/notes", json={"note": "看看"})).status == 404
    zhang = await api("zhang")
    assert (await (await zhang.get("/api/tickets")).json())["total"] == 1
    with sessions() as session, session.begin():  # 张工 leaves; his account stays, linked
        session.execute(update(Engineer).where(Engineer.id == people["张工"]).values(active=False))
    assert (await (await zhang.get("/api/tickets")).json())["total"] == 0
    assert (await zhang.get(f"/api/tickets/{mine['id']}")).status == 404
    assert (await (await zhang.get("/api/me")).json())["engineer_id"] is None


@pytest.fixture
def recorded(sessions, settings):
    """record(ticket_id) -> the id of a call with a recording on that ticket (None: no ticket)."""
    log = CallLog(sessions)

    def record(ticket_id):
        call_id = log.open(sip_call_id=f"c{ticket_id}", direction="inbound", line="hotline",
                           caller="13800138000", called="hotline")
        path = settings.recordings_dir / "2026" / "11" / f"{call_id}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(WAV)
        log.update(call_id, ticket_id=ticket_id, recording_path=f"2026/11/{call_id}.wav")
        log.close(call_id, "completed")
        return call_id
    return record


async def test_recordings_for_whom_and_every_playback_audited(api, people, recorded, sessions, clock):
    desk = await api("desk")
    zhangs, lis = await new_ticket(desk, people, "张工"), await new_ticket(desk, people, "李工")
    survey, hotline, stray = recorded(zhangs["id"]), recorded(lis["id"]), recorded(None)
    for name in ("desk", "boss", "root"):  # the desk, managers and admins hear every call
        client = await api(name)
        for call_id in (survey, hotline, stray):
            response = await client.get(f"/api/calls/{call_id}/recording")
            assert response.status == 200 and await response.read() == WAV, (name, call_id)
    zhang = await api("zhang")
    assert (await zhang.get(f"/api/calls/{survey}/recording")).status == 200  # his ticket's call
    for call_id in (hotline, stray, 10**6):  # not his, no ticket, no such call: all look the same
        assert (await zhang.get(f"/api/calls/{call_id}/recording")).status == 404
    ticket = await (await zhang.get(f"/api/tickets/{zhangs['id']}")).json()
    assert ticket["calls"][0]["recording_url"] == f"/api/calls/{survey}/recording"

    with sessions() as session:
        played = [(e.username, e.target, e.address, e.at) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "recording").order_by(AuditEntry.id))]
    expected = [(name, f"call:{call_id}") for name in ("desk", "boss", "root") for call_id in (survey, hotline, stray)]
    assert [(who, what) for who, what, _, _ in played] == expected + [("zhang", f"call:{survey}")]
    assert all(address == "127.0.0.1" and at == clock.now for _, _, address, at in played)


async def test_a_players_seeking_is_not_a_playback_of_its_own(api, people, recorded, sessions):
    desk = await api("desk")
    call_id = recorded((await new_ticket(desk))["id"])
    start = await desk.get(f"/api/calls/{call_id}/recording", headers={"Range": "bytes=0-"})
    assert start.status == 206
    seek = await desk.get(f"/api/calls/{call_id}/recording", headers={"Range": "bytes=100-"})
    assert seek.status == 206 and await seek.read() == WAV[100:]
    assert (await desk.head(f"/api/calls/{call_id}/recording")).status == 200  # asks, plays nothing
    with sessions() as session:
        assert session.scalar(select(AuditEntry.target).where(AuditEntry.action == "recording")) == f"call:{call_id}"
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.action == "recording")).all()) == 1


async def test_admins_read_the_audit_log_of_logins_and_account_changes(api, people, clock):
    root = await api("root")
    wrong = await api.anonymous.post("/api/login", json={"username": "desk", "password": "guess-1234"})
    assert wrong.status == 401
    users = {u["username"]: u["id"] for u in await (await root.get("/api/users")).json()}
    await root.patch(f"/api/users/{users['desk']}", json={"role": "manager"})
    await root.patch(f"/api/users/{users['li']}", json={"password": "a-new-password"})
    await root.patch(f"/api/users/{users['li']}", json={"active": False})
    entries = (await (await root.get("/api/audit")).json())["entries"]
    seen = [(e["action"], e["username"], e["target"]) for e in entries]
    assert ("login", "root", f"user:{users['root']}") in seen
    assert ("login_failed", "desk", "") in seen
    changes = [e for e in entries if e["action"] == "user_changed"]
    assert [c["detail"] for c in changes] == [  # newest first
        {"username": "li", "active": {"from": True, "to": False}},
        {"username": "li", "password": "changed"},
        {"username": "desk", "role": {"from": "frontdesk", "to": "manager"}}]
    assert all(c["username"] == "root" and c["address"] == "127.0.0.1" for c in changes)
    failed = (await (await root.get("/api/audit?action=login_failed")).json())
    assert failed["total"] == 1 and failed["entries"][0]["action_name"] == "登录失败"
    assert (await root.get("/api/audit?action=nonsense")).status == 422
    for name in ("boss", "desk"):
        assert (await (await api(name)).get("/api/audit")).status in (401, 403)
