"""/api/tickets/{id}/consents and /consent-call: the resident's consent to a paid repair's price."""

import base64
import struct
import zlib

TICKET = {"description": "厨房水龙头坏了，要换新的", "phone": "13800138000", "building": "3", "unit": "2",
          "room": "1101", "reporter_name": "王女士", "category": "plumbing", "urgency": "normal",
          "channel": "desk", "is_paid": True}


def png(width=4, height=2) -> bytes:
    """A real (tiny, grey) PNG, as a canvas's toDataURL would send."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


SIGNATURE = "data:image/png;base64," + base64.b64encode(png()).decode()


async def on_site(api, people, clock):
    desk, zhang = await api("desk"), await api("zhang")
    ticket = await (await desk.post("/api/tickets", json=TICKET)).json()
    for client, body in ((desk, {"to": "dispatched", "engineer_id": people["张工"]}), (zhang, {"to": "accepted"}),
                         (zhang, {"to": "on_site"})):
        clock.advance(minutes=5)
        assert (await client.post(f"/api/tickets/{ticket['id']}/transitions", json=body)).status == 200
    return ticket["id"], desk, zhang


async def test_the_engineer_gets_a_signature_and_only_then_completes(api, people, clock):
    ticket_id, desk, zhang = await on_site(api, people, clock)
    moves, consents = f"/api/tickets/{ticket_id}/transitions", f"/api/tickets/{ticket_id}/consents"
    finish = {"to": "completed", "actual_item": "更换水龙头", "material_fee": 35, "labour_fee": 20,
              "customer_confirmed": True}
    refused = await zhang.post(moves, json=finish)
    assert refused.status == 409
    assert "有偿服务须先取得业主对报价的同意" in (await refused.json())["error"]
    before = await (await zhang.get(consents)).json()
    assert (before["is_paid"], before["consented"], before["consents"]) == (True, False, [])

    clock.advance(minutes=2)
    signed = await zhang.post(consents, json={"agreed": True, "amount": "55.00", "consented_by": "王女士",
                                              "signature": SIGNATURE})
    assert signed.status == 201, await signed.text()
    body = await signed.json()
    assert (body["amount_fen"], body["amount"], body["method"], body["consented_by"], body["recorded_by"]) == (
        5500, "55", "signature", "王女士", "zhang")
    assert body["at"] == clock.now.isoformat() and body["has_signature"]
    image = await desk.get(f"{consents}/{body['id']}/signature")
    assert image.status == 200 and image.content_type == "image/png" and await image.read() == png()
    assert (await api.anonymous.get(f"{consents}/{body['id']}/signature")).status == 401
    assert (await (await api("li")).get(f"{consents}/{body['id']}/signature")).status == 404  # not his ticket

    assert (await zhang.post(moves, json=finish | {"labour_fee": 30})).status == 409  # 65 > 55 agreed
    done = await zhang.post(moves, json=finish)
    assert done.status == 200, await done.text()
    events = (await done.json())["events"]
    assert any(e["kind"] == "consent" and "同意有偿服务报价 55 元" in e["note"] for e in events)


async def test_bad_consents_are_422_with_every_field(api, people, clock):
    ticket_id, _, zhang = await on_site(api, people, clock)
    url = f"/api/tickets/{ticket_id}/consents"
    response = await zhang.post(url, json={"agreed": "yes", "amount": "-3", "consented_by": "",
                                           "signature": "data:image/gif;base64,R0lG"})
    assert response.status == 422
    assert set((await response.json())["fields"]) == {"agreed", "amount", "consented_by", "signature"}
    fake = "data:image/png;base64," + base64.b64encode(b"not a png at all").decode()
    response = await zhang.post(url, json={"agreed": True, "amount": 55, "consented_by": "王女士", "signature": fake})
    assert (await response.json())["fields"] == {"signature": "签名应为 PNG 图片"}
    response = await zhang.post(url, json={"agreed": True, "amount": "12.345", "consented_by": "王女士",
                                           "signature": SIGNATURE})
    assert "两位小数" in (await response.json())["fields"]["amount"]
    assert (await (await zhang.get(url)).json())["consents"] == []  # nothing half-stored


async def test_a_free_ticket_takes_no_consent_and_strangers_none_at_all(api, people, clock):
    desk, li = await api("desk"), await api("li")
    free = await (await desk.post("/api/tickets", json=TICKET | {"is_paid": False})).json()
    response = await desk.post(f"/api/tickets/{free['id']}/consents",
                               json={"agreed": True, "amount": 55, "consented_by": "王女士", "signature": SIGNATURE})
    assert response.status == 422 and "不是有偿服务" in (await response.json())["fields"]["ticket"]
    ticket_id, _, _ = await on_site(api, people, clock)
    assert (await li.get(f"/api/tickets/{ticket_id}/consents")).status == 404
    assert (await api.anonymous.post(f"/api/tickets/{ticket_id}/consent-call", json={"amount": 55})).status == 401


async def test_the_consent_call_is_handed_to_the_telephone_side_or_refused_clearly(api, people, clock):
    ticket_id, _, zhang = await on_site(api, people, clock)
    url = f"/api/tickets/{ticket_id}/consent-call"
    # The test app has no telephone side (callcenter.app sets the call placer only where it can dial).
    response = await zhang.post(url, json={"amount": "55"})
    assert response.status == 503 and "followup.line" in (await response.json())["error"]
    assert (await zhang.post(url, json={"amount": "abc"})).status == 422
