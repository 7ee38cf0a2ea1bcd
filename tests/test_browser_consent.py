"""有偿服务 on the engineer's phone page in a real headless Chromium: completing a paid repair is refused
until the resident signs the price on the screen; the signature is stored as the PNG drawn."""

from __future__ import annotations

import pytest

from tests.test_browser import (  # noqa: F401  (fixtures)
    PASSWORD,
    browser_a,
    browser_b,
    browsers,
    call,
    css,
    css_all,
    engineer_id,
    login,
    move,
    new_ticket,
    open_ticket,
    phone_view,
    screenshot,
    shown,
    text_is,
    text_of,
    wait,
)

# The page's business; the rules under it run on both databases in test_consent and test_api_consent.
pytestmark = [pytest.mark.browser, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]


def sign(driver, canvas):
    """A finger drawing a signature: two strokes across the pad."""
    from selenium.webdriver.common.action_chains import ActionChains

    for y in (-20, 20):
        ActionChains(driver).move_to_element_with_offset(canvas, -150, y).click_and_hold() \
            .move_by_offset(100, -15).move_by_offset(100, 30).move_by_offset(80, -20).release().perform()


def test_the_resident_signs_the_price_before_the_paid_repair_is_completed(live_server, browser_a, browser_b):
    live_server.add_engineer("张师傅", "13700000001", ["水电"])
    live_server.add_user("qiantai", PASSWORD, "frontdesk")
    live_server.add_user("zhang", PASSWORD, "engineer", engineer_name="张师傅")
    login(browser_a, live_server, "qiantai")
    ticket = new_ticket(browser_a, description="厨房水龙头坏了，业主要换新的", is_paid=True)
    move(browser_a, ticket["id"], "dispatched", engineer_id=engineer_id(browser_a, "张师傅"))
    card = f".card[data-id='{ticket['id']}']"

    phone_view(browser_b)
    login(browser_b, live_server, "zhang", page="/engineer")
    for to in ("accepted", "on_site"):
        move(browser_b, ticket["id"], to)
    browser_b.refresh()
    state = wait(browser_b, shown(f"{card} .consent-state"))
    assert state.text == "业主尚未同意报价：施工前请取得业主同意"

    # Completing now is refused, in Chinese, on the card.
    css(browser_b, f"{card} button[data-to='completed']").click()
    form = wait(browser_b, shown(f"#act-{ticket['id']}-form"))
    form.find_element("name", "actual_item").send_keys("更换水龙头")
    form.find_element("css selector", "button[type=submit]").click()
    wait(browser_b, lambda d: "有偿服务须先取得业主对报价的同意" in text_of(d, f"#act-{ticket['id']}-form .form-error"))
    form.find_element("xpath", ".//button[normalize-space()='取消']").click()

    css(browser_b, f"{card} button[data-consent='sign']").click()
    consent_form = wait(browser_b, shown(f"#consent-{ticket['id']}-form"))
    amount = consent_form.find_element("name", "amount")
    amount.clear()
    amount.send_keys("58.5")
    consent_form.find_element("css selector", "button[value=agree]").click()  # not signed yet
    wait(browser_b, lambda d: "请业主在签名框内签字" in consent_form.text)
    sign(browser_b, css(browser_b, f"#consent-{ticket['id']}-pad"))
    screenshot(browser_b, "engineer-consent")
    consent_form.find_element("css selector", "button[value=agree]").click()
    wait(browser_b, lambda d: text_of(d, f"{card} .consent-state").startswith("业主已同意报价 58.50 元（现场签字，王女士，"))

    stored = call(browser_b, "GET", f"/api/tickets/{ticket['id']}/consents")["data"]
    assert stored["consented"] and stored["consents"][0]["amount_fen"] == 5850
    png = browser_b.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(async (r) => {
          const image = await createImageBitmap(await r.blob());
          const canvas = new OffscreenCanvas(image.width, image.height);
          const pen = canvas.getContext('2d');
          pen.drawImage(image, 0, 0);
          const pixels = pen.getImageData(0, 0, image.width, image.height).data;
          let inked = 0;
          for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked += 1;
          done({type: r.headers.get('Content-Type'), width: image.width, inked});
        });
    """, f"/api/tickets/{ticket['id']}/consents/{stored['consents'][0]['id']}/signature")
    assert png["type"] == "image/png" and png["width"] == 600
    assert png["inked"] > 300, "the stored signature has no strokes on it"

    move(browser_b, ticket["id"], "completed", actual_item="更换水龙头", material_fee=38.5, labour_fee=20)

    # The desk's ticket page keeps who agreed to what, how and when, after the work is done.
    open_ticket(browser_a, live_server, ticket["id"])
    record = "#consent-panel .consent-records li"
    wait(browser_a, lambda d: "业主同意报价 58.50 元（现场签字，王女士；记录：zhang）" in text_of(d, record))
    link = wait(browser_a, lambda d: css(d, f"{record} a").get_attribute("href"))  # (re-read: pages re-render live)
    assert "查看签名" in text_of(browser_a, f"{record} a") and link.endswith(
        f"/api/tickets/{ticket['id']}/consents/{stored['consents'][0]['id']}/signature")
    assert not css_all(browser_a, "#consent-panel button[data-consent]")  # completed: nothing left to ask
