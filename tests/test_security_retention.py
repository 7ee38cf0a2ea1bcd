"""Retention (issue 14, item 7): ``recordings.keep_days`` after a call its recording, its transcript and
the phone numbers are gone, also from what the console shows; the call record itself stays, so the
counts the reports need do not change. Run by the scheduled clean-up job (core.jobs), on both databases."""

from __future__ import annotations

from datetime import timedelta

from core.calls import CallLog
from core.jobs import Jobs

TICKET = {"description": "厨房水管漏水", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101"}


async def test_old_calls_lose_transcript_numbers_and_recording_but_still_count(api, sessions, settings, engine, clock):
    desk = await api("desk")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    log = CallLog(sessions)
    ids = {}
    for name, age in (("old", 31), ("recent", 29)):
        started = clock.now - timedelta(days=age)
        call_id = log.open(sip_call_id=f"{name}@pbx", direction="inbound", line="hotline", caller="13800138000",
                           called="hotline", at=started, ticket_id=ticket["id"])
        path = settings.recordings_dir / f"{started:%Y/%m/%d}" / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"RIFF....WAVE")
        log.update(call_id, answered_at=started, recording_path=str(path.relative_to(settings.recordings_dir)),
                   transcript={"utterances": [{"step": "problem", "text": "我家住三号楼，厨房水管漏水"}]})
        log.close(call_id, "completed", started + timedelta(minutes=2))
        ids[name] = call_id
    survey = log.record_finished(sip_call_id="", direction="outbound", line="pbx", caller="pbx", called="13800138000",
                                 at=clock.now - timedelta(days=40), outcome="no_answer",
                                 ended_at=clock.now - timedelta(days=40))
    before = (await (await desk.get("/api/calls")).json())["calls"]

    assert Jobs(settings, engine, None, clock=lambda: clock.now).clean_recordings() == 1
    assert Jobs(settings, engine, None, clock=lambda: clock.now).clean_recordings() == 0  # nothing left to do

    after = {c["id"]: c for c in (await (await desk.get("/api/calls")).json())["calls"]}
    for call_id in (ids["old"], survey):
        old = after[call_id]
        assert (old["transcript"], old["caller"], old["called"], old["recording_url"]) == (None, "", "", None)
    recent = after[ids["recent"]]
    assert recent["caller"] == "13800138000" and recent["transcript"]["utterances"][0]["text"].endswith("漏水")
    assert (await desk.get(recent["recording_url"])).status == 200
    assert (await desk.get(f"/api/calls/{ids['old']}/recording")).status == 404
    # What the counts are made of is all still there.
    counted = ("id", "direction", "line", "started_at", "answered_at", "ended_at", "outcome", "ticket_id")
    assert [{k: c[k] for k in counted} for c in before] == [{k: after[c["id"]][k] for k in counted} for c in before]
    shown = await (await desk.get(f"/api/tickets/{ticket['id']}")).json()
    assert [c["transcript"] for c in shown["calls"]] == [None, recent["transcript"]]
