"""The web console in a real headless Chromium: the live queue, a ticket's whole life, Chinese
error messages, the engineer's phone page, and screenshots of every page in /tmp/screens/.

Uses Debian's chromium and chromedriver (nothing is downloaded). Skipped when they are missing,
unless CALLCENTER_REQUIRE_BROWSER=1, which makes that a failure.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import time
from datetime import UTC
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRE_BROWSER = os.environ.get("CALLCENTER_REQUIRE_BROWSER") == "1"
SCREENS = Path("/tmp/screens")
PASSWORD = "mima-12345"
WAIT = 10  # seconds: the longest any page may take to show a change

# Chromium logs every 4xx answer of fetch() as a console error; those the pages expect
# (a 422 with field errors, a 409 refusal, a resident not in the directory) are not faults.
EXPECTED_CONSOLE = re.compile(r"Failed to load resource: the server responded with a status of 4(04|09|22|01)")
# What a page shows when it puts a program value instead of text.
GARBAGE = re.compile(r"\[object \w+\]|undefined|NaN")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (Debian packages chromium and chromium-driver)"
    return None


class Browsers:
    """Up to two Chromium sessions for the whole module (starting one takes a second)."""

    def __init__(self):
        self.drivers: dict[str, object] = {}
        self.profiles: list[str] = []

    def get(self, name: str):
        if name not in self.drivers:
            self.drivers[name] = self._start()
        return self.drivers[name]

    def _start(self):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        profile = tempfile.mkdtemp(prefix="callcenter-chrome-")
        self.profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                         "--lang=zh-CN", f"--user-data-dir={profile}"):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(20)
        return driver

    def close(self):
        for driver in self.drivers.values():
            driver.quit()
        for profile in self.profiles:
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browsers():
    reason = _missing()
    if reason:
        if REQUIRE_BROWSER:
            pytest.fail(f"browser required (CALLCENTER_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)
    pool = Browsers()
    yield pool
    pool.close()


def _fresh(driver):
    """A clean browser for the next test: no cookies (ports differ, hosts don't), no stale logs."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.get_log("browser")
    return driver


def _leave(driver):
    """Leave the page (closing its live stream before the server stops); check the console and text."""
    errors = [entry["message"] for entry in driver.get_log("browser")
              if entry["level"] == "SEVERE" and not EXPECTED_CONSOLE.search(entry["message"])]
    text = driver.execute_script("return document.body ? document.body.innerText : ''")
    driver.get("about:blank")
    assert not errors, f"console errors: {errors}"
    assert not GARBAGE.search(text), f"the page shows program values: {GARBAGE.search(text)[0]!r}"


@pytest.fixture
def browser_a(browsers):
    driver = _fresh(browsers.get("a"))
    yield driver
    _leave(driver)


@pytest.fixture
def browser_b(browsers):
    driver = _fresh(browsers.get("b"))
    yield driver
    _leave(driver)


# --- helpers ---------------------------------------------------------------------------------


def wait(driver, condition, timeout=WAIT, message=""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # Pages re-render from the server's answer: an element seen a moment ago may be replaced.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException]).until(condition, message)


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def text_of(driver, selector):
    """The element's text, read again when a live update re-rendered it between finding and reading."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(int(WAIT / 0.1)):
        try:
            return css(driver, selector).text
        except StaleElementReferenceException:
            time.sleep(0.1)
    return css(driver, selector).text


def cell_texts(driver, rows_selector) -> list[list[str]]:
    """The cells' texts of the rows ``rows_selector`` finds, read in one go in the page: a live update
    cannot replace a row between finding it and reading it."""
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(row => [...row.querySelectorAll('td')].map(cell => cell.innerText.trim()));", rows_selector)


def css_all(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def shown(selector):
    """A wait condition: the element exists and is displayed; returns it."""
    def check(driver):
        found = css_all(driver, selector)
        return found[0] if found and found[0].is_displayed() else False
    return check


def text_is(selector, expected):
    def check(driver):
        found = css_all(driver, selector)
        return bool(found) and found[0].text.strip() == expected
    return check


def login(driver, server, username, page="/desk", password=PASSWORD):
    driver.get(server.url + page)
    wait(driver, shown("#login-form"))
    css(driver, "#username").send_keys(username)
    css(driver, "#password").send_keys(password)
    css(driver, "#login-submit").click()
    wait(driver, shown("#user-name"), message=f"{username} did not reach {page}")
    assert driver.current_url.endswith(page)


def call(driver, method, path, body=None):
    """The JSON API from inside the logged-in browser: {"status": n, "data": ...}."""
    return driver.execute_async_script("""
        const [method, path, body, done] = arguments;
        const init = {method, headers: {}};
        if (body !== null) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
        fetch(path, init)
          .then(async (r) => done({status: r.status, data: r.status === 204 ? null : await r.json()}))
          .catch((e) => done({status: 0, data: String(e)}));
    """, method, path, body)


def new_ticket(driver, **fields):
    body = {"reporter_name": "王女士", "phone": "13800138000", "building": "3", "unit": "2", "room": "1101",
            "category": "plumbing", "description": "厨房水槽下水管漏水"} | fields
    answer = call(driver, "POST", "/api/tickets", body)
    assert answer["status"] == 201, answer
    return answer["data"]


def move(driver, ticket_id, to, **fields):
    answer = call(driver, "POST", f"/api/tickets/{ticket_id}/transitions", {"to": to} | fields)
    assert answer["status"] == 200, answer
    return answer["data"]


def engineer_id(driver, name):
    return next(e["id"] for e in call(driver, "GET", "/api/engineers")["data"] if e["name"] == name)


def open_ticket(driver, server, ticket_id):
    driver.get(f"{server.url}/tickets/{ticket_id}")
    wait(driver, shown("#ticket-status .badge"))


def choose(select_element, starts_with):
    from selenium.webdriver.support.ui import Select

    select = Select(select_element)
    value = next(o.get_attribute("value") for o in select.options if o.text.startswith(starts_with))
    select.select_by_value(value)


def do_action(driver, label, fill=None, expect_status=None):
    """Press an action button on the ticket page, fill its form, confirm."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//div[@id='actions']//button[normalize-space()='{label}']").click()
    form = wait(driver, shown("#action-form-area form"))
    for name, value in (fill or {}).items():
        element = form.find_element(By.NAME, name)
        if element.tag_name == "select":
            choose(element, value)
        elif element.get_attribute("type") == "checkbox":
            if bool(value) != element.is_selected():
                element.click()
        else:
            element.clear()
            element.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    if expect_status:
        wait(driver, text_is("#ticket-status .badge", expect_status),
             message=f"status did not become {expect_status} after {label}")


def screenshot(driver, name):
    """The whole page, not only the window, as /tmp/screens/NAME.png."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
    width = driver.execute_script("return window.innerWidth")  # the page is laid out anew without a scroll bar
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    (SCREENS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
    text = driver.execute_script("return document.body.innerText")
    assert not GARBAGE.search(text), f"{name} shows program values: {GARBAGE.search(text)[0]!r}"


def phone_view(driver):
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})


# --- the tests -----------------------------------------------------------------------------------------


def test_a_new_ticket_appears_on_another_desk_without_reload(live_server, browser_a, browser_b):
    live_server.add_user("qiantai1", PASSWORD, "frontdesk")
    live_server.add_user("qiantai2", PASSWORD, "frontdesk")
    login(browser_b, live_server, "qiantai2")
    wait(browser_b, shown("#live-state.on"), message="B's live stream did not connect")
    browser_b.execute_script("window.__marker = 1")

    login(browser_a, live_server, "qiantai1")
    css(browser_a, "#new-ticket-panel summary").click()
    for selector, value in (("#nt-phone", "13912345678"), ("#nt-reporter", "李先生"), ("#nt-building", "5"),
                            ("#nt-unit", "1"), ("#nt-room", "602"), ("#nt-description", "卫生间天花板渗水，滴到地面")):
        css(browser_a, selector).send_keys(value)
    choose(css(browser_a, "#nt-urgency"), "紧急")
    choose(css(browser_a, "#nt-category"), "给排水")
    css(browser_a, "#nt-submit").click()
    result = wait(browser_a, shown("#nt-number"))
    number = result.text
    assert re.fullmatch(r"\d{11}", number), number
    assert text_of(browser_a, "#nt-result") == f"已受理，单号 {number}"

    wait(browser_b, lambda d: number in text_of(d, "#queue tbody"),
         message="the new ticket did not appear on the other desk")
    assert browser_b.execute_script("return window.__marker") == 1, "B's page reloaded"
    row = css(browser_b, "#queue tbody tr[data-id]")
    assert "emergency" in row.get_attribute("class")
    assert "紧急" in row.text and "5号楼1单元602" in row.text and "受理" in row.text
    # A's own queue shows it too (its form stays open for the next call).
    wait(browser_a, lambda d: number in text_of(d, "#queue tbody"))


def test_a_ticket_through_its_whole_life_and_a_cancelled_one(live_server, browser_a):
    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    login(browser_a, live_server, "qiantai")
    ticket = new_ticket(browser_a)
    open_ticket(browser_a, live_server, ticket["id"])
    assert text_of(browser_a, "#ticket-status .badge") == "受理"
    assert text_of(browser_a, "#ticket-title") == f"维修单 {ticket['number']}"

    do_action(browser_a, "派单", {"engineer_id": "张师傅"}, "派单")
    assert "张师傅" in text_of(browser_a, "#dispatch-view")
    do_action(browser_a, "接单", {}, "接单")
    do_action(browser_a, "到场", {}, "到场")
    do_action(browser_a, "完成", {"actual_item": "更换下水管及密封圈", "material_fee": "12.5", "labour_fee": "30",
                                "material_check": "未提供", "customer_confirmed": True}, "完成")
    result = text_of(browser_a, "#result-view")
    assert "更换下水管及密封圈" in result and "¥42.50" in result
    do_action(browser_a, "回访", {"rating": "满意"}, "回访")
    do_action(browser_a, "归档", {}, "归档")
    assert text_of(browser_a, "#actions") == "当前没有可执行的操作"

    history = text_of(browser_a, "#timeline")
    for step in ("新建维修单 → 受理", "受理 → 派单", "维修人员：张师傅", "派单 → 接单", "接单 → 到场", "到场 → 完成",
                 "实际维修项目：更换下水管及密封圈", "回访电话", "已安排回访电话", "完成 → 回访", "回访结果：满意",
                 "回访 → 归档"):
        assert step in history, f"{step!r} missing from the history:\n{history}"
    assert len(css_all(browser_a, "#timeline li")) == 8  # with the follow-up call that completing scheduled

    # Another ticket: corrected, annotated, then 撤单 with a reason from the list.
    other = new_ticket(browser_a, description="客厅灯不亮", category="electrical", room="1102")
    open_ticket(browser_a, live_server, other["id"])
    css(browser_a, "#edit-button").click()
    room = wait(browser_a, shown("#ed-room"))
    room.clear()
    room.send_keys("1202")
    css(browser_a, "#edit-form button[type=submit]").click()
    wait(browser_a, lambda d: "房号：1102 → 1202" in text_of(d, "#timeline"))
    assert "3号楼2单元1202" in text_of(browser_a, "#report-view")
    css(browser_a, "#note-text").send_keys("业主说灯泡已换过")
    css(browser_a, "#note-submit").click()
    wait(browser_a, lambda d: "业主说灯泡已换过" in text_of(d, "#timeline"))
    do_action(browser_a, "撤单", {"reason": "业主已自行修复", "note": "电话确认"}, "撤单")
    assert "撤单原因：业主已自行修复" in text_of(browser_a, "#timeline")
    assert "业主已自行修复" in text_of(browser_a, "#followup-view")


def test_incomplete_input_shows_the_chinese_message(live_server, browser_a):
    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    browser_a.get(live_server.url + "/desk")
    wait(browser_a, shown("#login-form"))
    css(browser_a, "#username").send_keys("qiantai")
    css(browser_a, "#password").send_keys("wrong-password")
    css(browser_a, "#login-submit").click()
    wait(browser_a, text_is("#login-error", "用户名或密码错误"))
    screenshot(browser_a, "login")
    css(browser_a, "#password").clear()
    css(browser_a, "#password").send_keys(PASSWORD)
    css(browser_a, "#login-submit").click()
    wait(browser_a, shown("#user-name"))

    # The new-ticket form: each field's message next to that field.
    css(browser_a, "#new-ticket-panel summary").click()
    css(browser_a, "#nt-submit").click()
    wait(browser_a, text_is("#nt-description-error", "请填写报修内容"))
    assert text_of(browser_a, "#nt-room-error") == "请填写房号，或公共区域位置"
    assert css(browser_a, "#nt-room").get_attribute("aria-invalid") == "true"
    screenshot(browser_a, "desk-errors")

    # 完成 without 实际维修项目: the server refuses (409) and the page says why, in red.
    ticket = new_ticket(browser_a)
    move(browser_a, ticket["id"], "dispatched", engineer_id=engineer_id(browser_a, "张师傅"))
    move(browser_a, ticket["id"], "accepted")
    move(browser_a, ticket["id"], "on_site")
    open_ticket(browser_a, live_server, ticket["id"])
    do_action(browser_a, "完成", {"labour_fee": "20"})
    error = wait(browser_a, shown("#action-form-area .form-error"))
    wait(browser_a, lambda d: error.text == "完成维修需要填写实际维修项目")
    assert error.value_of_css_property("color") == "rgba(198, 40, 40, 1)"
    assert text_of(browser_a, "#ticket-status .badge") == "到场"
    screenshot(browser_a, "ticket-complete-refused")
    # 改派 needs another engineer: a 派单 without one is refused in Chinese too.
    other = new_ticket(browser_a)
    open_ticket(browser_a, live_server, other["id"])
    do_action(browser_a, "派单")
    wait(browser_a, text_is("#action-form-area .form-error", "「派单」需要指定维修人员"))


def test_the_engineer_sees_only_own_tickets_on_a_phone(live_server, browser_a, browser_b):
    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_engineer("李师傅", "13700000002", ["土建"])
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    live_server.add_user("zhang", PASSWORD, "engineer", engineer_name="张师傅")
    login(browser_a, live_server, "qiantai")
    zhang, li = engineer_id(browser_a, "张师傅"), engineer_id(browser_a, "李师傅")
    mine = new_ticket(browser_a, description="热水器不出热水", urgency="emergency")
    theirs = new_ticket(browser_a, description="阳台墙面开裂", room="1203")
    move(browser_a, mine["id"], "dispatched", engineer_id=zhang)
    move(browser_a, theirs["id"], "dispatched", engineer_id=li)

    open_ticket(browser_a, live_server, mine["id"])  # the desk watches this ticket while he works
    browser_a.execute_script("window.__marker = 1")

    phone_view(browser_b)
    login(browser_b, live_server, "zhang", page="/engineer")
    card = wait(browser_b, shown(f".card[data-id='{mine['id']}']"))
    assert len(css_all(browser_b, ".card")) == 1, "the engineer sees another engineer's ticket"
    assert theirs["number"] not in text_of(browser_b, "#cards")
    assert "热水器不出热水" in card.text and "3号楼2单元1101" in card.text
    assert css(browser_b, ".card a.tel").get_attribute("href") == "tel:13800138000"
    assert browser_b.execute_script("return document.documentElement.scrollWidth") <= 375
    button = css(browser_b, ".card button[data-to='accepted']")
    assert button.size["height"] >= 44, "touch targets should be big"
    button.click()
    wait(browser_b, shown(f"#act-{mine['id']}-form"))
    screenshot(browser_b, "engineer-accept")
    css(browser_b, f"#act-{mine['id']}-form button[type=submit]").click()
    wait(browser_b, text_is(f".card[data-id='{mine['id']}'] .card-head .badge:last-child", "接单"))
    wait(browser_b, text_is(f".card[data-id='{mine['id']}'] button[data-to='on_site']", "到场"))  # (re-rendered live)
    wait(browser_a, text_is("#ticket-status .badge", "接单"), message="the ticket page did not update live")
    assert "派单 → 接单" in text_of(browser_a, "#timeline")
    assert browser_a.execute_script("return window.__marker") == 1
    browser_a.get(live_server.url + "/desk")

    # A ticket dispatched to him now appears without reloading.
    browser_b.execute_script("window.__marker = 1")
    later = new_ticket(browser_a, description="门锁坏了", category="doors_windows", room="0301")
    move(browser_a, later["id"], "dispatched", engineer_id=zhang)
    wait(browser_b, shown(f".card[data-id='{later['id']}']"))
    assert browser_b.execute_script("return window.__marker") == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # pictures of pages: one database is enough
def test_screenshots_of_every_page(live_server, browser_a, browser_b):
    live_server.add_engineer("张师傅", "13700000001", ["水电", "燃气"])
    live_server.add_engineer("李师傅", "13700000002", ["土建"])
    live_server.add_user("admin", PASSWORD, "admin")
    live_server.add_user("zhang", PASSWORD, "engineer", engineer_name="张师傅")
    login(browser_a, live_server, "admin", page="/manager")
    zhang = engineer_id(browser_a, "张师傅")
    for selector, value in (("#fee-code", "SD-01"), ("#fee-name", "更换水龙头"), ("#fee-unit", "个"),
                            ("#fee-material", "35"), ("#fee-labour", "20"), ("#fee-note", "普通款")):
        css(browser_a, selector).send_keys(value)
    choose(css(browser_a, "#fee-category"), "给排水")
    css(browser_a, "#fee-submit").click()
    row = wait(browser_a, shown("#fee-table tbody tr[data-id]"))
    assert "¥55.00" in row.text and "给排水" in row.text
    done = new_ticket(browser_a, description="厨房水龙头关不紧，一直滴水，业主要求更换新的水龙头并检查角阀",
                      is_paid=True, fee_item_id=int(row.get_attribute("data-id")), remarks="业主下午两点后在家")
    assert done["quoted_fee"] == 55
    for to, extra in (("dispatched", {"engineer_id": zhang}), ("accepted", {}), ("on_site", {})):
        move(browser_a, done["id"], to, **extra)
    from tests.test_api_consent import SIGNATURE  # 有偿: the resident agrees to the price before the work

    signed = call(browser_a, "POST", f"/api/tickets/{done['id']}/consents",
                  {"agreed": True, "amount": "55", "consented_by": "王女士", "signature": SIGNATURE})
    assert signed["status"] == 201, signed
    move(browser_a, done["id"], "completed", actual_item="更换水龙头一个", material_fee=35, labour_fee=20,
         material_check="none", customer_confirmed=True)
    late = new_ticket(browser_a, description="楼道灯不亮", area="楼道", room="", unit="", building="7",
                      appointment_start="2020-01-01T09:00:00+08:00")
    move(browser_a, late["id"], "dispatched", engineer_id=zhang)
    new_ticket(browser_a, description="燃气有异味，请尽快上门", urgency="emergency", category="gas", room="0502")
    new_ticket(browser_a, description="电梯按钮失灵", area="电梯", room="", unit="", category="elevator")

    browser_a.get(live_server.url + "/manager")
    wait(browser_a, lambda d: len(css_all(d, "#user-table tbody tr")) == 2)
    wait(browser_a, lambda d: "更换水龙头" in text_of(d, "#fee-table"))
    assert text_of(browser_a, "#kpis").count("%") >= 1
    screenshot(browser_a, "manager")

    # The speech model is optional: when /api/health says it is missing, the desk says so in yellow.
    fake = browser_a.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        const realFetch = window.fetch;
        window.fetch = (url, ...rest) => String(url).startsWith('/api/health')
          ? Promise.resolve(new Response(JSON.stringify({status: 'ok', database: 'ok',
              asr: {state: 'missing', message: '未安装中文语音模型，电话报修只录音，请人工听写'}}),
              {headers: {'Content-Type': 'application/json'}}))
          : realFetch(url, ...rest);"""})
    browser_a.get(live_server.url + "/desk")
    banner = wait(browser_a, shown("#asr-banner"))
    assert banner.text == "语音识别：未安装中文语音模型，电话报修只录音，请人工听写"
    browser_a.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", fake)
    wait(browser_a, lambda d: len(css_all(d, "#queue tbody tr[data-id]")) == 3)
    assert "超时" in text_of(browser_a, f"#queue tr[data-id='{late['id']}']")
    css(browser_a, "#new-ticket-panel summary").click()
    screenshot(browser_a, "desk")

    open_ticket(browser_a, live_server, done["id"])
    screenshot(browser_a, "ticket")

    browser_a.get(f"{live_server.url}/tickets/{done['id']}/print")
    wait(browser_a, lambda d: text_of(d, "#p-number") == done["number"])
    assert "第四联 前台" in text_of(browser_a, "#sheet")
    assert "¥55.00" in text_of(browser_a, "#sheet")
    screenshot(browser_a, "print")
    pdf = browser_a.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True, "printBackground": True})
    (SCREENS / "print.pdf").write_bytes(base64.b64decode(pdf["data"]))

    phone_view(browser_b)
    login(browser_b, live_server, "zhang", page="/engineer")
    wait(browser_b, shown(f".card[data-id='{late['id']}']"))
    assert browser_b.execute_script("return document.documentElement.scrollWidth") <= 375
    screenshot(browser_b, "engineer")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_phone_draft_shows_its_transcript_and_recording_and_is_accepted(live_server, browser_a, settings):
    """What the hotline leaves at 2 a.m. is reviewed in the morning: words the recognizer was unsure
    of are marked, the recording plays, and 审核受理 moves the draft on."""
    import subprocess
    from datetime import datetime

    from core.calls import CallLog
    from core.intake import DraftFacts, PhoneDrafts

    facts = DraftFacts(phone="13800138000", building="3", unit="2", room="1101", category="plumbing",
                       description="卫生间水龙头一直滴水", confirmed={"address"})
    ticket_id, number = PhoneDrafts(live_server.sessions, settings).save(None, facts, datetime.now(UTC), "描述问题")
    recording = settings.recordings_dir / "2026" / "call.wav"
    recording.parent.mkdir(parents=True)
    subprocess.run(["sox", "-n", "-r", "8000", "-b", "16", "-c", "1", str(recording), "synth", "3", "sine", "440"], check=True)
    log = CallLog(live_server.sessions)
    call_id = log.open(sip_call_id="e2e@127.0.0.1", direction="inbound", line="hotline", caller="13800138000", called="100")
    words = [{"word": "卫生间", "start": 1.0, "end": 1.4, "conf": 0.93}, {"word": "水龙头", "start": 1.4, "end": 1.9, "conf": 0.41},
             {"word": "一直滴水", "start": 1.9, "end": 2.6, "conf": 0.88}]
    log.update(call_id, ticket_id=ticket_id, recording_path="2026/call.wav", transcript={
        "utterances": [{"step": "problem", "text": "卫生间水龙头一直滴水", "keys": "", "words": words, "start": 1.0, "end": 2.6}],
        "confirmed": ["address"]})
    log.close(call_id, "completed")

    live_server.add_user("desk1", PASSWORD, "frontdesk")
    login(browser_a, live_server, "desk1")
    wait(browser_a, lambda d: number in text_of(d, "body"), message="the phone draft is not in the queue")
    assert "待审核" in text_of(browser_a, "body")
    open_ticket(browser_a, live_server, ticket_id)
    unsure = wait(browser_a, shown("mark.low-conf"))
    assert unsure.text == "水龙头" and "0.41" in unsure.get_attribute("title")
    assert "来电人已确认：地址" in text_of(browser_a, "#calls-view")
    audio = css(browser_a, "audio.recording")
    playable = browser_a.execute_async_script("""
        const [audio, done] = arguments;
        audio.addEventListener('loadedmetadata', () => done(audio.duration), {once: true});
        audio.addEventListener('error', () => done(-1), {once: true});
        audio.preload = 'metadata'; audio.load();""", audio)
    assert 2.9 < playable < 3.1  # the browser really loaded the WAV through the staff-only route
    screenshot(browser_a, "phone-draft")
    do_action(browser_a, "审核受理", expect_status="受理")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_manager_sees_the_roster_its_empty_slots_in_red_and_records_leave(live_server, browser_a):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from core.roster_store import replace_shifts

    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_engineer("李师傅", "13700000002", ["水电"])
    live_server.add_user("boss", PASSWORD, "manager")
    with live_server.sessions() as session, session.begin():
        replace_shifts(session, [{"name": "白班", "weekdays": "1-7", "start": "08:00", "end": "20:00", "skill": "",
                                  "chain": "张师傅>李师傅:40"}])
    login(browser_a, live_server, "boss", page="/manager")
    row = wait(browser_a, shown("#shift-table tbody tr"))
    assert row.text.split() == ["白班", "每天", "08:00–20:00", "全部", "张师傅", "25秒", "→", "李师傅", "40秒"]
    nights = css_all(browser_a, "#roster-gaps .gap")  # nobody at night: one red line per night of the week
    assert len(nights) in (7, 8) and all(n.text.endswith("全部技能（没有排班）") for n in nights)
    assert nights[0].value_of_css_property("color") == "rgba(198, 40, 40, 1)"

    # Both away tomorrow 10:00-12:00 with nobody standing in: the day shift itself becomes a gap.
    tomorrow = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)).date().isoformat()
    for away in ("张师傅", "李师傅"):
        for selector, value in (("#ov-from", f"{tomorrow}T10:00"), ("#ov-to", f"{tomorrow}T12:00")):
            browser_a.execute_script("arguments[0].value = arguments[1]", css(browser_a, selector), value)
        choose(css(browser_a, "#ov-replace"), away)
        choose(css(browser_a, "#ov-with"), "无人顶班")
        css(browser_a, "#ov-note").send_keys("请假")
        css(browser_a, "#override-form button[type=submit]").click()
        wait(browser_a, text_is("#override-result", f"已登记：无人 替 {away} 值班"))
    gap = wait(browser_a, lambda d: next((g for g in css_all(d, "#roster-gaps .gap") if "白班" in g.text), False))
    assert "10:00 至" in gap.text and "12:00" in gap.text and "班次「白班」的人员都不在岗" in gap.text
    assert len(css_all(browser_a, "#override-table tbody tr[data-id]")) == 2
    screenshot(browser_a, "manager-roster")

    css(browser_a, "#override-form button[type=submit]").click()  # nothing filled in: said per field
    wait(browser_a, shown("#override-form .field-error"))
    assert "请填写时间" in text_of(browser_a, "#override-form")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_manager_sees_the_follow_ups_the_unhappy_one_to_handle_and_plays_a_call(live_server, browser_a, settings):
    import wave
    from datetime import datetime, timedelta

    from sqlalchemy import select

    from core import followup
    from core.followup import SurveyAnswers
    from core.store import CallRecord, Engineer
    from tests.support.tickets import completed_ticket

    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_user("boss", PASSWORD, "manager")
    recording = settings.recordings_dir / "followup.wav"
    recording.parent.mkdir(parents=True)
    with wave.open(str(recording), "wb") as wav:  # one second of an 8 kHz call
        wav.setparams((1, 2, 8000, 0, "NONE", "not compressed"))
        wav.writeframes(b"\x00\x10" * 8000)
    sessions, now = live_server.sessions, datetime.now(UTC) - timedelta(minutes=1)
    with sessions() as session:
        engineer_id = session.scalar(select(Engineer.id))
    answers = {"13800000031": SurveyAnswers(resolved=True, rating="满意", comment="很及时"),
               "13800000032": SurveyAnswers(resolved=False, rating="不满意", comment="水管还在漏")}
    tickets = {}
    for phone, said in answers.items():
        ticket_id = tickets[phone] = completed_ticket(sessions, settings, engineer_id, now, phone=phone)
        with sessions() as session, session.begin():  # the survey call (due now), as the dialler records it
            scheduled = followup.open_followup(session, ticket_id)
            scheduled.due_at = now
            followup_id = followup.claim(session, scheduled.id, now).id
            call = CallRecord(direction="outbound", line="pbx", called=phone, started_at=now, outcome="completed",
                              recording_path="followup.wav")
            session.add(call)
            session.flush()
            followup.record_answers(session, followup_id, said, call.id, now, settings)

    login(browser_a, live_server, "boss", page="/manager")
    kpis = wait(browser_a, lambda d: "回访率" in text_of(d, "#followup-kpis") and css(d, "#followup-kpis"))
    assert kpis.text.split("\n") == ["100%", "回访率", "2 / 2 次维修已回访", "50%", "满意率", "1 / 2 次回访满意",
                                     "50%", "返修率", "1 / 2 次维修返修"]
    assert "张师傅" in text_of(browser_a, "#followup-breakdown")
    attention = css_all(browser_a, "#followup-attention tbody tr")
    assert len(attention) == 1
    cells = attention[0].find_elements("css selector", "td")
    assert [c.text for c in cells[2:5]] == ["张师傅", "未解决，不满意：「水管还在漏」", "派单"]  # 返修, assigned
    link = cells[0].find_element("css selector", "a")
    assert link.get_attribute("href") == f"{live_server.url}/tickets/{tickets['13800000032']}"
    assert "format=csv" in css(browser_a, "#followup-csv").get_attribute("href")

    recent = css_all(browser_a, "#followup-recent tbody tr")
    assert len(recent) == 2
    happy = next(row for row in recent if "很及时" in row.text)
    assert "已解决，满意" in happy.text
    happy.find_element("css selector", "button.play").click()
    audio = wait(browser_a, shown("#followup-recent audio"))
    duration = browser_a.execute_async_script("""
        const [audio, done] = arguments;
        if (audio.readyState >= 1) return done(audio.duration);
        audio.addEventListener('loadedmetadata', () => done(audio.duration), {once: true});
        audio.addEventListener('error', () => done(-1), {once: true});""", audio)
    assert 0.9 < duration < 1.1  # the staff-only recording route really served the call
    screenshot(browser_a, "manager-followups")


# --- security (issue 14): the pages under a strict CSP, next= only on this site, stale pages, the audit log ---------


def test_the_csp_is_enforced_and_the_login_goes_on_only_to_a_path_of_this_site(live_server, browser_a):
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    driver = browser_a
    for evil in ("/%09/evil.example", "//evil.example/x", "/%5Cevil.example", "https://evil.example/",
                 "/%0a/evil.example"):
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.get(f"{live_server.url}/login?next={evil}")
        wait(driver, shown("#login-form"))
        css(driver, "#username").send_keys("qiantai")
        css(driver, "#password").send_keys(PASSWORD)
        css(driver, "#login-submit").click()
        wait(driver, shown("#user-name"), message=f"no page after logging in with next={evil}")
        assert driver.current_url == f"{live_server.url}/desk", (evil, driver.current_url)
    ticket = new_ticket(driver)
    driver.get("about:blank")  # else the desk page, logged out under it, sends itself to the login page first
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(f"{live_server.url}/tickets/{ticket['id']}")  # not logged in: to the login page and back
    wait(driver, shown("#login-form"))
    assert driver.current_url == f"{live_server.url}/login?next=/tickets/{ticket['id']}"
    css(driver, "#username").send_keys("qiantai")
    css(driver, "#password").send_keys(PASSWORD)
    css(driver, "#login-submit").click()
    wait(driver, text_is("#ticket-title", f"维修单 {ticket['number']}"))
    # The browser itself refuses inline script under the page's policy (and says so in the console).
    ran = driver.execute_script("""
        const s = document.createElement('script');
        s.textContent = 'window.__inline = 1';
        document.head.append(s);
        return window.__inline === 1;""")
    assert ran is False
    refused = [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused and "script-src 'self'" in refused[0]


def test_a_stale_ticket_page_is_told_what_changed_instead_of_overwriting_it(live_server, browser_a, browser_b):
    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_engineer("李师傅", "13700000002", ["水电"])
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    live_server.add_user("zhang", PASSWORD, "engineer", engineer_name="张师傅")
    login(browser_a, live_server, "qiantai")
    ticket = new_ticket(browser_a)
    move(browser_a, ticket["id"], "dispatched", engineer_id=engineer_id(browser_a, "张师傅"))
    open_ticket(browser_a, live_server, ticket["id"])
    from selenium.webdriver.common.by import By

    browser_a.find_element(By.XPATH, "//div[@id='actions']//button[normalize-space()='改派']").click()
    form = wait(browser_a, shown("#action-form-area form"))
    choose(form.find_element(By.NAME, "engineer_id"), "李师傅")
    form.find_element(By.NAME, "reason").send_keys("李师傅离得近")
    login(browser_b, live_server, "zhang", page="/engineer")  # meanwhile 张师傅 takes the job on his phone
    assert call(browser_b, "POST", f"/api/tickets/{ticket['id']}/transitions", {"to": "accepted"})["status"] == 200
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = wait(browser_a, lambda d: text_of(d, "#action-form-area .form-error") or False)
    assert "刚被其他人修改" in error and "接单" in error and "zhang" in error
    shown_now = call(browser_a, "GET", f"/api/tickets/{ticket['id']}")["data"]
    assert (shown_now["status"], shown_now["engineer_name"]) == ("accepted", "张师傅")  # nothing overwritten


def test_the_admin_reads_who_played_which_recording_in_the_audit_log(live_server, browser_a, browser_b, settings):
    from core.calls import CallLog

    live_server.add_user("admin", PASSWORD, "admin")
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    recording = settings.recordings_dir / "2026" / "call.wav"
    recording.parent.mkdir(parents=True)
    recording.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64))
    log = CallLog(live_server.sessions)
    call_id = log.open(sip_call_id="a@b", direction="inbound", line="hotline", caller="13800138000", called="hotline")
    log.update(call_id, recording_path="2026/call.wav")
    login(browser_b, live_server, "qiantai")
    played = browser_b.execute_async_script("""
        const [path, done] = arguments;
        fetch(path).then((r) => done(r.status), () => done(0));""", f"/api/calls/{call_id}/recording")
    assert played == 200
    login(browser_a, live_server, "admin", page="/manager")
    rows = wait(browser_a, lambda d: [r.text for r in css_all(d, "#audit-table tbody tr")] or False)
    assert any("播放/下载录音" in row and "qiantai" in row and f"通话 {call_id}" in row and "127.0.0.1" in row
               for row in rows), rows
    assert any(row.split()[2:4] == ["登录", "admin"] for row in rows), rows
    choose(css(browser_a, "#audit-action"), "播放/下载录音")
    css(browser_a, "#audit-form button[type=submit]").click()
    wait(browser_a, lambda d: text_of(d, "#audit-summary").startswith("共 1 条"))
    screenshot(browser_a, "manager-audit")
