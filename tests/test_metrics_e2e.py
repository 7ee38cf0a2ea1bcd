"""GET /metrics of a real ``callcenter serve`` (issue 16.1), scraped over HTTP as Prometheus does and
parsed with the client library's parser, before and after a real call (SIPp on 127.0.0.1) and while
a line goes down: the figures move as an administrator's graphs and alerts expect.

The site: the hotline trunk line SIPp calls, and a register line to a PBX (a socket on 127.0.0.1)
that accepts and later refuses; no speech model (the hotline takes keys, and hears that the caller
spoke); ``web.metrics_allow`` only 127.0.0.1, so 127.0.0.2 is "somebody else".
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.e2e import time_limit  # noqa: F401 (fixture)
from tests.support.hotline_caller import CallerScript, voice
from tests.support.serve import RESIDENT, ServeProcess
from tests.support.sip import LOOPBACK, Sipp, free_udp_ports, sipp  # noqa: F401 (fixture)
from tests.test_watchdog import Pbx

TEST_TIME_LIMIT = 180


def scrape(site: ServeProcess, source: str = LOOPBACK, headers: dict | None = None) -> dict[tuple, float]:
    """{(sample name, *label values in order): value}; AssertionError with the status if refused."""
    url = f"http://{LOOPBACK}:{site.web_port}/metrics"
    no_proxy = urllib.request.ProxyHandler({})  # straight to 127.0.0.1, whatever the environment says
    opener = urllib.request.build_opener(no_proxy)
    if source != LOOPBACK:  # connect from another loopback address
        import http.client

        class FromSource(http.client.HTTPConnection):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, source_address=(source, 0), **kwargs)

        class SourceHandler(urllib.request.HTTPHandler):
            def http_open(self, request):
                return self.do_open(FromSource, request)

        opener = urllib.request.build_opener(no_proxy, SourceHandler())
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        raise AssertionError(f"HTTP {error.code}") from None
    return {(s.name, *sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples}


def key(name: str, **labels: str) -> tuple:
    return (name, *sorted(labels.items()))


def refused(site: ServeProcess, **kwargs) -> bool:
    try:
        scrape(site, **kwargs)
    except AssertionError as error:
        return str(error) == "HTTP 403"
    return False


def wait_for_scrape(site: ServeProcess, condition, timeout: float = 15.0) -> dict[tuple, float]:
    deadline = time.monotonic() + timeout
    scraped: dict[tuple, float] = {}
    while True:
        try:
            scraped = scrape(site)
        except urllib.error.URLError:  # the console is not listening yet
            if time.monotonic() > deadline:
                raise
        else:
            if condition(scraped):
                return scraped
        if time.monotonic() > deadline:
            ours = {k: v for k, v in scraped.items() if k[0].startswith("callcenter") and "bucket" not in k[0]}
            raise AssertionError(f"metrics never met the condition: {ours}")
        time.sleep(0.2)


def test_metrics_follow_a_real_call_and_a_line_going_down(tmp_path, sipp):
    pbx = Pbx()
    pbx.awake.set()
    rtp = free_udp_ports(4)
    pbx_line = f"""
[[lines]]
name = "pbx"
mode = "register"
flow = "none"
server = "{pbx.address}"
user = "8001"
listen = "{LOOPBACK}:{free_udp_ports()}"
rtp_ports = [{rtp}, {rtp + 3}]
retry_interval = 1
keepalive_interval = 0.5
"""
    site = ServeProcess(tmp_path, extra_config=pbx_line,
                        environ={"CALLCENTER_WEB_METRICS_ALLOW": "127.0.0.1",
                                 "CALLCENTER_WEB_TRUSTED_PROXIES": "127.0.0.1"})
    site.add_resident()
    site.start()
    try:
        wait_for_scrape(site, lambda s: s[key("callcenter_line_up", line="pbx")] == 1)
        time.sleep(1.5)  # and stays up through the keep-alive queries
        before = scrape(site)
        assert before[key("callcenter_line_up", line="pbx")] == 1
        assert before[key("callcenter_line_up", line="hotline")] == 1
        assert before[key("callcenter_calls_active", line="hotline", direction="inbound")] == 0
        assert before[key("callcenter_scheduler_owner")] == 1  # the only node runs the jobs
        assert before[key("callcenter_asr_model_loaded")] == 0
        assert before[key("callcenter_hostile_packets_total", line="hotline")] == 0
        assert before[key("callcenter_tickets_open", urgency="normal")] == 0
        assert not [k for k in before if k[0] == "callcenter_calls_total"]
        assert before[key("process_open_fds")] > 0

        # A resident keys 1 (报修) over the greeting, the room when asked, says what is wrong, hangs up.
        caller = CallerScript()
        caller.keys(1.0, "1")
        caller.keys(2.2, "1101#")  # over 「为核实身份，请输入或说出您的房号」
        caller.speak(4.5, voice("厨房的水管漏水了", tmp_path))  # over the request to describe the problem
        pcap = caller.write_pcap(tmp_path / "caller.pcap", 14)
        run = sipp.start("hotline_caller_hangs_up", site.sip_address, timeout=60,
                         params={"pcap": pcap, "caller": RESIDENT["phone"], "hold_ms": 14000,
                                 "bye_timeout_ms": 40000})
        active = key("callcenter_calls_active", line="hotline", direction="inbound")
        during = wait_for_scrape(site, lambda s: s[active] == 1)
        assert during[key("callcenter_call_setup_seconds_count", direction="inbound")] == 1
        assert run.wait(60) == 0, run.report()
        assert site.output.wait_for(r"ended \(caller_hung_up\)", 20), site.output.text()[-3000:]

        ended = key("callcenter_calls_total", line="hotline", direction="inbound", outcome="caller_hung_up")
        after = wait_for_scrape(site, lambda s: s.get(ended) == 1)
        assert after[active] == 0
        assert [k for k in after if k[0] == "callcenter_calls_total"] == [ended]
        assert 0 < after[key("callcenter_call_setup_seconds_sum", direction="inbound")] < 1  # INVITE -> 200 OK
        # The caller's end of speech to the draft saved: the silence the hotline waits for to know the
        # description is over (no speech model: the loudness endpointer), then one short transaction.
        assert after[key("callcenter_speech_to_saved_seconds_count")] == 1
        assert 0.5 < after[key("callcenter_speech_to_saved_seconds_sum")] < 8
        assert after[key("callcenter_tickets_open", urgency="normal")] == 1  # the draft, from the database

        # Somebody else: refused, also with a forged header or through our own proxy.
        assert refused(site, source="127.0.0.2")
        assert refused(site, source="127.0.0.2", headers={"X-Forwarded-For": "127.0.0.1"})
        assert refused(site, headers={"X-Forwarded-For": "127.0.0.2"})

        pbx.awake.clear()  # the PBX refuses: the keep-alive notices, the line is down
        down = wait_for_scrape(site, lambda s: s[key("callcenter_line_up", line="pbx")] == 0)
        assert down[key("callcenter_line_up", line="hotline")] == 1
    finally:
        site.stop()
        pbx.stop()
