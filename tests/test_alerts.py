"""Group-chat alerts (issue 16): each kind of event leaves one alert in the outbox, in its own
transaction, and the senders of any number of nodes post it once to a robot's webhook (a real
HTTP server on 127.0.0.1, tests/support/robot.py), retrying with back-off until it is taken.
On a real database: SQLite file and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest
from sqlalchemy import select

from callcenter.alert_sender import AlertSender, dingtalk_sign, shown_url, signed_url
from core import alerts, callouts, desk, followup, roster_store
from core.base import Actor
from core.desk import NewTicket
from core.dispatch import Action, Outcome
from core.followup import SurveyAnswers
from core.settings import AlertSettings, SettingsError, load_settings
from core.store import Engineer, FollowUp, OutboxAlert
from core.tickets import Channel, Role, Urgency
from tests.support.robot import Robot
from tests.support.tickets import completed_ticket

START = datetime(2026, 11, 28, 19, 0, tzinfo=UTC)  # 03:00 in Shanghai, a Sunday
CLERK = Actor("desk1", Role.FRONTDESK)
SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"


@pytest.fixture
def robot():
    robot = Robot().start()
    yield robot
    robot.stop()


def with_webhook(settings, robot: Robot, **alert_settings):
    alert_settings = {"retry_seconds": 0.05, **alert_settings}
    return replace(settings, alerts=AlertSettings(webhook_url=robot.url, webhook_secret=robot.secret,
                                                  **alert_settings))


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now


def sender(settings, sessions, clock, node="node-a") -> AlertSender:
    return AlertSender(replace(settings, node_name=node), sessions, clock, poll_seconds=0.05)


def outbox(sessions) -> list[OutboxAlert]:
    with sessions() as session:
        return list(session.scalars(select(OutboxAlert).order_by(OutboxAlert.id)))


async def send_until_quiet(*senders: AlertSender, clock: Clock, rounds: int = 10) -> None:
    """Run the senders' rounds, the clock moving past each retry's wait."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        for _ in range(rounds):
            await asyncio.gather(*(s.send_due(client) for s in senders))
            clock.now += timedelta(seconds=1)


# --- the four kinds -------------------------------------------------------------------------------


def night_shift(sessions):
    with sessions() as session, session.begin():
        session.add_all([Engineer(name="张工", phone="13800000001"), Engineer(name="李工", phone="13800000002")])
        session.flush()
        roster_store.replace_shifts(session, [{"name": "夜班", "weekdays": "1-7", "start": "00:00", "end": "00:00",
                                                "skill": "", "chain": "张工>李工"}])


def exhaust_a_call_out(sessions, settings) -> str:
    """A resident's burst pipe at night; 张工 does not answer, 李工 is busy: nobody takes it."""
    with sessions() as session, session.begin():
        ticket = desk.create_ticket(session, NewTicket(
            description="厨房水管爆了，水喷得到处都是", building="3", unit="2", room="1101", category="plumbing",
            urgency=Urgency.EMERGENCY, channel=Channel.PHONE, phone="13800138000", reported_at=START),
            desk.HOTLINE, START, settings)
        number = ticket.number
        callout_id = callouts.start_callout(session, ticket.id, CLERK, START, settings).id
    now = START
    for outcome in (Outcome.NO_ANSWER, Outcome.BUSY, None):
        with sessions() as session, session.begin():
            call = callouts.next_call(session, callout_id, now, settings)
        if outcome is None:
            assert call.decision.action == Action.EXHAUSTED
            break
        with sessions() as session, session.begin():
            callouts.record_outcome(session, call.attempt_id, outcome, 25, now, settings)
        now += timedelta(seconds=30)
    return number


async def test_an_exhausted_call_out_tells_the_group_what_where_what_was_said_and_whom_we_rang(
        sessions, settings, robot):
    settings = with_webhook(replace(settings, callout=replace(settings.callout, rounds=1)), robot)
    night_shift(sessions)
    number = exhaust_a_call_out(sessions, settings)
    [alert] = outbox(sessions)
    assert (alert.kind, alert.state, alert.attempts) == ("callout_exhausted", "pending", 0)

    clock = Clock(START + timedelta(minutes=2))
    await send_until_quiet(sender(settings, sessions, clock), clock=clock, rounds=1)
    [post] = robot.wait_for(1)
    assert post.body["msgtype"] == "text"
    assert post.content.splitlines() == [
        "【报修热线·紧急呼叫无人接单】物业服务中心",
        f"维修单 {number}（紧急·给排水）",
        "地址：3号楼2单元1101",
        "来电内容：厨房水管爆了，水喷得到处都是",
        "已呼叫：张工（第1轮，无人接听）、李工（第1轮，占线）",
        "请主管立即安排人员处理。",
    ]
    assert "13800138000" not in post.content  # the resident's number stays in the console
    [alert] = outbox(sessions)
    assert (alert.state, alert.attempts, alert.claimed_by) == ("sent", 1, "node-a")
    assert alert.sent_at == START + timedelta(minutes=2)


async def test_an_unhappy_follow_up_tells_the_group_what_the_resident_said(sessions, settings, engineer, robot):
    settings = with_webhook(settings, robot)
    completed = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    ticket_id = completed_ticket(sessions, settings, engineer, completed)
    with sessions() as session:
        followup_id = session.scalar(select(FollowUp.id).where(FollowUp.ticket_id == ticket_id))
        number = desk.get_ticket(session, ticket_id).number
    called = completed + timedelta(days=1)
    with sessions() as session, session.begin():
        assert followup.claim(session, followup_id, called) is not None
    with sessions() as session, session.begin():
        followup.record_answers(session, followup_id, SurveyAnswers(resolved=False, rating="不满意", comment="还在漏水"),
                                None, called, settings)
    clock = Clock(called)
    await send_until_quiet(sender(settings, sessions, clock), clock=clock, rounds=1)
    [post] = robot.wait_for(1)
    assert post.content.splitlines() == [
        "【报修热线·回访不满意（投诉）】物业服务中心",
        f"维修单 {number}（一般·给排水）",
        "地址：3号楼2单元1101",
        "维修人员：张工",
        "回访结果：问题未解决，评价「不满意」",
        "住户意见：还在漏水",
        "处理：已返修，派给 张工",
        "已登记为投诉，处理时限 11-25 10:00；11-24 11:00 前无人处理将电话通知主管",
        "请主管今日跟进。",
    ]


def test_a_satisfied_resident_alerts_nobody(sessions, settings, engineer, robot):
    settings = with_webhook(settings, robot)
    completed = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    ticket_id = completed_ticket(sessions, settings, engineer, completed)
    with sessions() as session, session.begin():
        followup_id = session.scalar(select(FollowUp.id).where(FollowUp.ticket_id == ticket_id))
        followup.claim(session, followup_id, completed + timedelta(days=1))
    with sessions() as session, session.begin():
        followup.record_answers(session, followup_id, SurveyAnswers(resolved=True, rating="满意"), None,
                                completed + timedelta(days=1), settings)
    assert outbox(sessions) == []


async def test_a_line_down_is_alerted_once_after_the_set_minutes(sessions, settings, robot):
    settings = with_webhook(settings, robot, line_down_minutes=2)
    down_since = START

    def check(minutes_later: float):
        with sessions() as session, session.begin():
            return alerts.line_down(session, "hotline", "node-b", down_since, "注册失败：403 Forbidden",
                                    down_since + timedelta(minutes=minutes_later), settings)

    assert check(1.9) is None  # not yet two minutes
    assert check(2.0) is not None
    assert check(2.5) is None and check(30) is None  # the same outage: one alert
    clock = Clock(START + timedelta(minutes=3))
    await send_until_quiet(sender(settings, sessions, clock), clock=clock, rounds=1)
    [post] = robot.wait_for(1)
    assert post.content.splitlines() == [
        "【报修热线·线路故障】物业服务中心",
        "节点 node-b 的线路 hotline 自 11-29 03:00:00 起不可用（超过 2 分钟）",
        "状态：注册失败：403 Forbidden",
        "来电可能无法接通，请检查线路和 PBX/运营商。",
    ]
    with sessions() as session, session.begin():  # a later outage is another alert
        assert alerts.line_down(session, "hotline", "node-b", START + timedelta(hours=1), "",
                                START + timedelta(hours=1, minutes=2), settings) is not None


async def test_no_scheduler_owner_is_one_alert_however_many_nodes_notice(sessions, settings, robot):
    settings = with_webhook(settings, robot, no_owner_minutes=5)
    lease_ran_out = START
    with sessions() as session, session.begin():
        assert alerts.no_scheduler_owner(session, lease_ran_out, START + timedelta(minutes=4), settings) is None
    for node in range(3):  # every node's watcher sees the same lost lease
        with sessions() as session, session.begin():
            alerts.no_scheduler_owner(session, lease_ran_out, START + timedelta(minutes=5, seconds=node), settings)
    assert len(outbox(sessions)) == 1
    clock = Clock(START + timedelta(minutes=6))
    await send_until_quiet(sender(settings, sessions, clock, "a"), sender(settings, sessions, clock, "b"),
                           clock=clock, rounds=2)
    [post] = robot.wait_for(1)
    assert post.content.startswith("【报修热线·定时任务无人执行】物业服务中心\n自 11-29 03:00:00 起（超过 5 分钟）没有节点执行定时任务")
    assert len(robot.posts) == 1


def test_without_a_webhook_nothing_is_recorded(sessions, settings):
    night_shift(sessions)
    exhaust_a_call_out(sessions, replace(settings, callout=replace(settings.callout, rounds=1)))
    assert outbox(sessions) == []


# --- sending: retries, several nodes, crashes, signatures ---------------------------------------------


def pending_alert(sessions, settings, key="k1", text="【报修热线·测试消息】物业服务中心\n一") -> int:
    with sessions() as session, session.begin():
        return alerts.record(session, alerts.TEST, key, text, START, settings).id


async def test_a_robot_that_fails_twice_gets_the_alert_on_the_third_try(sessions, settings, robot, caplog):
    robot.failures = [(500, {"errcode": -1, "errmsg": "system busy"}),
                      (200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})]
    settings = with_webhook(settings, robot, retry_seconds=2.0)
    alert_id = pending_alert(sessions, settings)
    clock = Clock()
    node = sender(settings, sessions, clock)
    caplog.set_level(logging.INFO, "callcenter.alerts")
    import aiohttp

    async with aiohttp.ClientSession() as client:
        assert await node.send_due(client) == 0  # HTTP 500
        assert await node.send_due(client) == 0  # not due again yet: waits 2 s
        clock.now += timedelta(seconds=2)
        assert await node.send_due(client) == 0  # errcode 130101
        clock.now += timedelta(seconds=3)
        assert await node.send_due(client) == 0  # the wait doubled: 4 s
        clock.now += timedelta(seconds=1)
        assert await node.send_due(client) == 1
    assert len(robot.posts) == 3 and len(robot.accepted()) == 1
    [alert] = outbox(sessions)
    assert (alert.id, alert.state, alert.attempts, alert.last_error) == (alert_id, "sent", 3, "")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "callcenter.alerts"]
    where = f"http://127.0.0.1:{robot.port}/robot/send"
    assert lines[0][0] == "WARNING" and f"alert {alert_id} (test) to {where} failed (attempt 1 of 10): HTTP 500" \
        in lines[0][1]
    assert lines[1][0] == "WARNING" and "(attempt 2 of 10): errcode 130101: send too fast" in lines[1][1]
    assert lines[2] == ("INFO", f"alert {alert_id} (test) sent to {where} (attempt 3)")
    assert all("test-robot-token" not in message for _, message in lines)  # the robot's key is never logged


async def test_an_alert_nobody_takes_is_given_up_after_the_set_attempts(sessions, settings, robot, caplog):
    robot.failures = [(502, {})] * 3
    settings = with_webhook(settings, robot, max_attempts=3)
    pending_alert(sessions, settings)
    clock = Clock()
    await send_until_quiet(sender(settings, sessions, clock), clock=clock, rounds=6)
    [alert] = outbox(sessions)
    assert (alert.state, alert.attempts, alert.last_error) == ("failed", 3, "HTTP 502: {}")
    assert len(robot.posts) == 3
    assert [r.levelname for r in caplog.records if r.name == "callcenter.alerts"] == ["WARNING", "WARNING", "ERROR"]


async def test_several_nodes_send_each_alert_once(sessions, settings, robot):
    settings = with_webhook(settings, robot)
    for n in range(6):
        pending_alert(sessions, settings, key=f"k{n}", text=f"【报修热线·测试消息】物业服务中心\n{n}")
    clock = Clock()
    nodes = [sender(settings, sessions, clock, f"node-{n}") for n in range(3)]
    await send_until_quiet(*nodes, clock=clock, rounds=2)
    assert sorted(post.content[-1] for post in robot.wait_for(6)) == list("012345")
    assert len(robot.posts) == 6
    assert {a.state for a in outbox(sessions)} == {"sent"}


async def test_an_alert_claimed_by_a_node_that_died_is_sent_by_another(sessions, settings, robot):
    settings = with_webhook(settings, robot)
    alert_id = pending_alert(sessions, settings)
    with sessions() as session, session.begin():
        assert alerts.claim(session, alert_id, "node-dead", START) is not None  # ... and then it died
    clock = Clock(START + timedelta(seconds=alerts.CLAIM_SECONDS - 1))
    survivor = sender(settings, sessions, clock, "node-b")
    await send_until_quiet(survivor, clock=clock, rounds=1)
    assert robot.posts == []  # the dead node's send might still be under way
    clock.now = START + timedelta(seconds=alerts.CLAIM_SECONDS)
    await send_until_quiet(survivor, clock=clock, rounds=1)
    assert len(robot.wait_for(1)) == 1
    [alert] = outbox(sessions)
    assert (alert.state, alert.attempts, alert.claimed_by) == ("sent", 2, "node-b")


async def test_a_dingtalk_robot_with_signing_gets_signed_requests(sessions, settings):
    robot = Robot(secret=SECRET).start()
    try:
        signed = with_webhook(settings, robot)
        pending_alert(sessions, signed)
        clock = Clock()
        await send_until_quiet(sender(signed, sessions, clock), clock=clock, rounds=1)
        [post] = robot.wait_for(1)
        assert set(post.query) == {"access_token", "timestamp", "sign"}
        unsigned = replace(signed, alerts=replace(signed.alerts, webhook_secret=""))
        pending_alert(sessions, unsigned, key="k2")
        await send_until_quiet(sender(unsigned, sessions, clock), clock=clock, rounds=1)
        assert robot.posts[-1].accepted is False  # the robot refuses what is not signed (errcode 310000)
    finally:
        robot.stop()


def test_the_dingtalk_signature_is_the_documented_one():
    # 钉钉's scheme: Base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\n{secret}")), then URL-encoded.
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"this is secret", b"1577000000000\nthis is secret", hashlib.sha256).digest())
    assert unquote_plus(dingtalk_sign("this is secret", 1577000000000)) == expected.decode()
    url = signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", "this is secret", 1577000000000)
    assert url.startswith("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=1577000000000&sign=")
    assert "+" not in url.split("sign=")[1] and "/" not in url.split("sign=")[1]  # encoded for a query string
    assert signed_url("https://x.example/hook", "") == "https://x.example/hook"
    assert shown_url(url) == "https://oapi.dingtalk.com/robot/send"


def test_a_long_message_is_cut_to_what_wecom_takes():
    settings = load_settings(environ={})
    text = alerts.message(alerts.TEST, settings, "漏" * 2000)
    assert len(text.encode()) <= 2048 and text.endswith("…") and text.startswith("【报修热线·测试消息】")


def test_alert_settings_are_checked():
    loaded = load_settings(environ={"CALLCENTER_ALERTS_WEBHOOK_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
                                    "CALLCENTER_ALERTS_LINE_DOWN_MINUTES": "3"}).alerts
    assert (loaded.line_down_minutes, loaded.no_owner_minutes, loaded.max_attempts) == (3, 5, 10)
    for environ in ({"CALLCENTER_ALERTS_WEBHOOK_URL": "qyapi.weixin.qq.com/x"},
                    {"CALLCENTER_ALERTS_LINE_DOWN_MINUTES": "0"}):
        with pytest.raises(SettingsError, match="alerts"):
            load_settings(environ=environ)


# --- callcenter alerts test --------------------------------------------------------------------------


def run_cli(*args, **environ):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")} | environ
    return subprocess.run([sys.executable, "-m", "callcenter.cli", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_test_command_posts_a_message_or_says_why_not(tmp_path):
    robot = Robot(secret=SECRET, failures=[(200, {"errcode": 300005, "errmsg": "token is not exist"})]).start()
    try:
        environ = dict(CALLCENTER_DATA_DIR=str(tmp_path), CALLCENTER_ALERTS_WEBHOOK_URL=robot.url,
                       CALLCENTER_ALERTS_WEBHOOK_SECRET=SECRET, CALLCENTER_NODE_NAME="hotline-1")
        refused = run_cli("alerts", "test", **environ)
        assert refused.returncode == 1
        assert "errcode 300005: token is not exist" in refused.stderr and "test-robot-token" not in refused.stderr
        done = run_cli("alerts", "test", **environ)
        assert done.returncode == 0, done.stderr
        assert f"test message sent to http://127.0.0.1:{robot.port}/robot/send" in done.stdout
        [post] = robot.accepted()
        assert post.content.startswith("【报修热线·测试消息】物业服务中心\n节点 hotline-1 于 ")
        assert run_cli("alerts", "test", CALLCENTER_DATA_DIR=str(tmp_path)).returncode == 1  # none configured
    finally:
        robot.stop()
