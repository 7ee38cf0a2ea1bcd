"""/api/triage: the new-ticket form reads a typed or pasted description with the phone's triage.

The page sends what the clerk wrote; the answer is the draft the hotline would have made of the
same words (``core.triage``): category, urgency with its emergency words, address, appointment,
phone and summary. Nothing is stored: the clerk decides which proposals go into the form.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from callcenter.web.context import allow, json_body, json_response, now
from core import desk
from core.base import ValidationError
from core.tickets import DESK
from core.triage import Triage

routes = web.RouteTableDef()
# The site's triage, built once with the app from its settings (its words file, time zone, policy).
TRIAGE = web.AppKey("triage", Triage)
# What the form may send is what it may save: a description is at most this long.
TEXT_LIMIT = desk.NOTE_LIMIT


@routes.post("/api/triage")
@allow(*DESK)
async def read_description(request: web.Request) -> web.Response:
    """``{"text": …}`` -> the draft, plus ``said``: the text it was read from, which the emergency
    words' ``start``/``end`` (in characters) point into."""
    text = (await json_body(request)).get("text")
    if not isinstance(text, str):
        raise ValidationError({"text": "报修内容应为文字"})
    text = text.strip()
    if not text:
        raise ValidationError({"text": "请填写报修内容"})
    if len(text) > TEXT_LIMIT:
        raise ValidationError({"text": f"报修内容不能超过 {TEXT_LIMIT} 个字"})
    # Usually 0.1-0.2 ms, but a text at the limit takes about ten milliseconds (bench/triage.py):
    # in a worker thread, the event loop that carries every console's live updates keeps getting
    # its turns meanwhile.
    draft = await asyncio.to_thread(request.app[TRIAGE].read, text, now(request))
    return json_response(draft.to_dict() | {"said": text})
