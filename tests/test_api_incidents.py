"""/api/incidents: the desk declares an outage, lists it with its callers, closes it (with a call-back)."""

from __future__ import annotations

from core import incidents
from core.incidents import Place

OUTAGE = {"kind": "water", "buildings": ["3"], "action": "repairing", "note": "主管爆裂，已关总阀",
          "expected_end": "2026-11-23T15:00"}


async def test_the_desk_declares_lists_and_closes_an_incident(api, sessions, clock):
    desk = await api("desk")
    response = await desk.post("/api/incidents", json=OUTAGE)
    assert response.status == 201, await response.text()
    declared = await response.json()
    assert (declared["kind_name"], declared["buildings"], declared["action_name"], declared["opened_by"]) == \
           ("停水", ["3"], "正在抢修", "desk")
    assert declared["expected_end"] == "2026-11-23T15:00:00+08:00" and declared["open"]

    with sessions() as session, session.begin():  # two residents call; the hotline counts them
        incident = incidents.get(session, declared["id"])
        for phone in ("13800138000", "13900139000"):
            incidents.attach_call(session, incident, at=clock(), phone=phone, call_record_id=None,
                                  place=Place("3", "2", "1101"), words="没水了", how="caller_id")

    listed = await (await desk.get("/api/incidents?open=1")).json()
    assert [(i["id"], i["caller_count"]) for i in listed["incidents"]] == [(declared["id"], 2)]
    assert listed["kinds"]["power"] == "停电"
    shown = await (await desk.get(f"/api/incidents/{declared['id']}")).json()
    assert [c["phone"] for c in shown["callers"]] == ["13800138000", "13900139000"]
    assert shown["callers"][0]["words"] == "没水了"

    clock.advance(hours=2)
    closed = await desk.post(f"/api/incidents/{declared['id']}/close", json={"call_back": True})
    assert closed.status == 200, await closed.text()
    body = await closed.json()
    assert not body["open"] and body["closed_by"] == "desk" and body["call_back"]
    assert [c["call_back_state"] for c in body["callers"]] == ["pending", "pending"]
    assert (await (await desk.get("/api/incidents?open=1")).json())["incidents"] == []
    again = await desk.post(f"/api/incidents/{declared['id']}/close", json={})
    assert again.status == 409 and "已关闭" in (await again.json())["error"]


async def test_a_bad_declaration_is_refused_field_by_field_and_nothing_is_kept(api, sessions):
    desk = await api("desk")
    response = await desk.post("/api/incidents", json={**OUTAGE, "kind": "flood", "buildings": [],
                                                      "expected_end": "tomorrow"})
    assert response.status == 422
    assert set((await response.json())["fields"]) == {"kind", "buildings", "expected_end"}
    assert (await (await desk.get("/api/incidents")).json())["incidents"] == []


async def test_declared_from_a_ticket_the_form_starts_from_its_words(api):
    desk = await api("desk")
    made = await desk.post("/api/tickets", json={"description": "整栋楼都停电了", "phone": "13800138000",
                                                 "building": "7", "unit": "1", "room": "0302",
                                                 "category": "electrical", "urgency": "emergency", "channel": "desk"})
    ticket_id = (await made.json())["id"]
    proposal = await (await desk.get(f"/api/tickets/{ticket_id}/incident-proposal")).json()
    assert (proposal["kind"], proposal["buildings"]) == ("power", ["7"])
    declared = await (await desk.post("/api/incidents", json={**proposal, "ticket_id": ticket_id})).json()
    assert declared["ticket_id"] == ticket_id and declared["callers"][0]["ticket_id"] == ticket_id
    twice = await desk.post("/api/incidents", json={**proposal, "ticket_id": ticket_id})
    assert twice.status == 409


async def test_engineers_and_strangers_are_kept_out(api):
    engineer = await api("zhang")
    assert (await engineer.get("/api/incidents")).status == 403
    assert (await engineer.post("/api/incidents", json=OUTAGE)).status == 403
    assert (await api.anonymous.get("/api/incidents")).status == 401
    manager = await api("boss")
    assert (await manager.post("/api/incidents", json=OUTAGE)).status == 201
