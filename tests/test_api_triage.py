"""POST /api/triage: the new-ticket form reads a description with the hotline's triage, against the
real app and a real database (SQLite and PostgreSQL), as the desk page calls it."""

from dataclasses import replace

import pytest

from core.settings import TriageSettings

BURST = "三号楼二单元1101厨房水管爆了，水漫出来了"


async def read(client, text, **extra):
    return await client.post("/api/triage", json={"text": text} | extra)


async def test_the_desk_gets_the_draft_the_phone_would_make(api):
    response = await read(await api("desk"), BURST)
    assert response.status == 200
    draft = await response.json()
    assert draft["category"] == "plumbing" and draft["urgency"] == "emergency"
    assert draft["address"] == {"building": "3", "unit": "2", "room": "1101", "area": None}
    assert [(w["word"], w["kind"]) for w in draft["emergency_words"]] == [("水管爆", "burst_pipe"), ("水漫", "flooding")]
    assert draft["said"] == BURST
    assert [BURST[w["start"]:w["end"]] for w in draft["emergency_words"]] == ["水管爆", "水漫"]
    assert draft["appointment"] is None and draft["phone"] is None
    assert draft["summary"] == "厨房水管爆了，水漫出来了"


async def test_appointment_and_phone_are_read_in_site_time_from_the_app_clock(api, clock):
    # The test clock: Monday 2026-11-23 10:00 in Shanghai, so 明天下午 is Tuesday 14:00-18:00.
    text = "电梯厅的灯不亮了，明天下午来修，电话138 1234 5678"
    draft = await (await read(await api("boss"), text)).json()
    assert draft["appointment"] == {"start": "2026-11-24T14:00:00+08:00", "end": "2026-11-24T18:00:00+08:00"}
    assert draft["phone"] == "13812345678"
    assert draft["address"]["area"] == "电梯厅" and draft["address"]["room"] is None
    assert draft["category"] == "electrical" and draft["urgency"] == "normal" and draft["emergency_words"] == []
    clock.advance(days=1)  # (past the boss's 12-hour login: the desk logs in now)
    later = await (await read(await api("desk"), text)).json()
    assert later["appointment"]["start"] == "2026-11-25T14:00:00+08:00"


async def test_the_offsets_point_into_the_text_as_read_whitespace_and_all(api):
    text = "\n  🔥 三号楼 楼道里 冒烟了，\t有 焦糊味，厨房水管 爆了  \n"  # what a paste or a recogniser gives
    draft = await (await read(await api("desk"), text)).json()
    said = draft["said"]
    assert said == text.strip()
    words = draft["emergency_words"]
    assert [w["kind"] for w in words] == ["smoke", "burning_smell", "burst_pipe"]
    assert [said[w["start"]:w["end"]] for w in words] == [w["word"] for w in words] == ["冒烟", "焦糊", "水管 爆"]


async def test_who_may_read_descriptions(api):
    for name in ("desk", "boss", "root"):
        assert (await read(await api(name), BURST)).status == 200, name
    engineer = await read(await api("zhang"), BURST)
    assert engineer.status == 403
    assert (await read(api.anonymous, BURST)).status == 401


async def test_nothing_is_stored(api):
    desk = await api("desk")
    await read(desk, BURST)
    assert (await (await desk.get("/api/tickets")).json())["total"] == 0


@pytest.mark.parametrize(("text", "message"), [
    ("", "请填写报修内容"),
    (" \n\t　", "请填写报修内容"),  # an ideographic space too
    ("漏" * 2001, "报修内容不能超过 2000 个字"),
    (5, "报修内容应为文字"),
    (None, "报修内容应为文字"),
    (["厨房水管爆了"], "报修内容应为文字"),
])
async def test_bad_text_is_422_with_the_reason(api, text, message):
    response = await read(await api("desk"), text)
    assert response.status == 422
    assert (await response.json())["fields"] == {"text": message}


async def test_the_limit_is_the_description_s_and_counts_without_the_outer_blanks(api):
    desk = await api("desk")
    longest = "厨房水管爆了" + "漏" * 1994
    assert len(longest) == 2000
    response = await read(desk, "  " + longest + "\n\n")
    assert response.status == 200 and (await response.json())["urgency"] == "emergency"
    # ...the same length that a new ticket's description may have
    ticket = await desk.post("/api/tickets", json={"description": longest, "room": "1101"})
    assert ticket.status == 201


async def test_bodies_that_are_not_a_json_object_are_refused(api):
    desk = await api("desk")
    for data, content_type in (("{not json", "application/json"), ('"厨房水管爆了"', "application/json"),
                               ("[1]", "application/json"), ("text=厨房水管爆了", "application/x-www-form-urlencoded")):
        response = await desk.post("/api/triage", data=data.encode(), headers={"Content-Type": content_type})
        assert response.status == 422, data
        assert "error" in await response.json()
    assert (await desk.post("/api/triage", json={})).status == 422
    huge = await desk.post("/api/triage", data=b'{"text": "' + b"a" * 70_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert huge.status == 400 and "请求内容过大" in (await huge.json())["error"]
    assert (await desk.get("/api/triage")).status == 405


async def test_another_site_s_page_cannot_make_the_desk_s_browser_ask(api):
    desk = await api("desk")
    refused = await desk.post("/api/triage", json={"text": BURST}, headers={"Origin": "http://evil.example"})
    assert refused.status == 403


async def test_the_site_s_words_and_policy_are_used(api, tmp_path, settings, sessions, clock, aiohttp_client):
    from callcenter.web.app import create_app
    from tests.conftest import STAFF_PASSWORD, console_client

    words = tmp_path / "words.toml"
    words.write_text('[category.appliance]\ndecisive = "足浴盆"\n', encoding="utf-8")
    site = replace(settings, triage=TriageSettings(words_file=str(words), lift_fault_is_emergency=False))
    client = await console_client(aiohttp_client, create_app(site, sessions, clock))
    assert (await client.post("/api/login", json={"username": "desk", "password": STAFF_PASSWORD})).status == 200
    assert (await (await read(client, "足浴盆不出水了")).json())["category"] == "appliance"
    assert (await (await read(client, "三号楼电梯停了，没有人在里面")).json())["urgency"] == "normal"
    # ...and the packaged words and policy where the site says nothing
    default = await api("desk")
    assert (await (await read(default, "足浴盆不出水了")).json())["category"] == "plumbing"
    assert (await (await read(default, "三号楼电梯停了，没有人在里面")).json())["urgency"] == "emergency"
