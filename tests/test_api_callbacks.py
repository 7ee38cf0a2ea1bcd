"""/api/callbacks as the desk page uses it: the 回拨 list, its recordings, marking an item; staff only."""

import wave
from datetime import timedelta

from core.callback_list import record_abandoned
from tests.test_callback_list import NUMBER, T0, abandoned_call


def recorded(settings, call_id_path="2026/11/23/x.wav"):
    path = settings.recordings_dir / call_id_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as audio:
        audio.setnchannels(1), audio.setsampwidth(2), audio.setframerate(8000)
        audio.writeframes(b"\x00\x01" * 8000)


async def test_the_desk_sees_who_gave_up_hears_the_recording_and_marks_it_called_back(api, sessions, settings, clock):
    recorded(settings)
    first = abandoned_call(sessions, at=T0 - timedelta(minutes=30))
    second = abandoned_call(sessions, at=T0 - timedelta(minutes=10), stage="key:1")
    withheld = abandoned_call(sessions, number="", at=T0 - timedelta(minutes=5), stage="address")
    for call in (first, second, withheld):
        record_abandoned(sessions, call)
    desk = await api("desk")
    listed = await (await desk.get("/api/callbacks")).json()
    assert listed["resolved"] == []
    [hidden, repeated] = listed["open"]
    assert (hidden["number"], hidden["withheld"], hidden["stage_name"]) == ("", True, "说地址时挂机")
    assert (repeated["number"], repeated["withheld"], repeated["status_name"]) == (NUMBER, False, "待回拨")
    assert (repeated["first_call_at"], repeated["last_call_at"]) == ("2026-11-23T09:30:00+08:00",
                                                                     "2026-11-23T09:50:00+08:00")
    assert repeated["stage_name"] == "按键 1 后挂机"
    assert [c["call_id"] for c in repeated["calls"]] == [first.call_id, second.call_id]
    recording = await desk.get(repeated["calls"][0]["recording_url"])
    assert recording.status == 200 and recording.headers["Content-Type"] == "audio/wav"

    # A withheld number cannot have been called back; it can be closed as not needed.
    refused = await desk.post(f"/api/callbacks/{hidden['id']}", json={"outcome": "called_back"})
    assert refused.status == 409 and "无法回拨" in (await refused.json())["error"]
    assert (await desk.post(f"/api/callbacks/{hidden['id']}", json={"outcome": "not_needed"})).status == 200

    clock.now = T0 + timedelta(minutes=3)
    done = await desk.post(f"/api/callbacks/{repeated['id']}", json={"outcome": "called_back"})
    assert done.status == 200
    body = await done.json()
    assert (body["status"], body["resolved_by"], body["resolved_at"]) == ("called_back", "desk",
                                                                        "2026-11-23T10:03:00+08:00")
    boss = await api("boss")  # a second clerk a moment later: told who was first, nothing changed
    late = await boss.post(f"/api/callbacks/{repeated['id']}", json={"outcome": "not_needed"})
    assert late.status == 409 and "desk" in (await late.json())["error"]
    listed = await (await boss.get("/api/callbacks")).json()
    assert listed["open"] == []
    assert {(i["number"], i["status"], i["resolved_by"]) for i in listed["resolved"]} == {
        (NUMBER, "called_back", "desk"), ("", "not_needed", "desk")}


async def test_only_the_desk_and_managers_reach_the_list_and_bad_input_is_refused(api, sessions, settings):
    recorded(settings)
    call = abandoned_call(sessions, at=T0 - timedelta(minutes=1))
    item_id = record_abandoned(sessions, call)
    desk, zhang = await api("desk"), await api("zhang")
    assert (await api.anonymous.get("/api/callbacks")).status == 401
    assert (await zhang.get("/api/callbacks")).status == 403
    assert (await zhang.post(f"/api/callbacks/{item_id}", json={"outcome": "not_needed"})).status == 403
    # An engineer cannot reach a recording of a call with no ticket of theirs.
    assert (await zhang.get(f"/api/calls/{call.call_id}/recording")).status == 404
    bad = await desk.post(f"/api/callbacks/{item_id}", json={"outcome": "later"})
    assert bad.status == 422 and "outcome" in (await bad.json())["fields"]
    assert (await desk.post("/api/callbacks/999999", json={"outcome": "not_needed"})).status == 404
    assert len((await (await desk.get("/api/callbacks")).json())["open"]) == 1  # nothing changed
