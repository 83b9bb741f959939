#!/usr/bin/env python3
"""Drives the web chat widget in real headless Chromium (Debian's chromium + chromium-driver,
Python selenium). Run by Tests/SwitchboardTests/WebchatBrowserTests.swift against a test daemon:

    browser_check.py <public base> <api base> <api token> <channel id> <screenshot path> <work dir>

Each step prints one line; the last line is `RESULT {json}`. Exit 0 only when every check held.
"""
import json, struct, sys, time, urllib.request, zlib
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

public, api, token, channel, shot, work = sys.argv[1:7]
result = {}


def step(msg):
    print(msg, flush=True)


def fail(msg):
    print("FAILED: " + msg, flush=True)
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(1)


def wait(what, fn, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.1)
    fail("timed out waiting for " + what)


def call(method, path, body=None):
    req = urllib.request.Request(api + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def png(path):
    # A real 8x8 red PNG.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 8 for _ in range(8))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(path, "wb").write(data)


opts = webdriver.ChromeOptions()
for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,760", "--lang=en-US",
          "--user-data-dir=" + work + "/profile"]:
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)


def open_widget():
    driver.get(public + "/")
    launcher = wait("launcher", lambda: driver.find_element(By.CSS_SELECTOR, "button[aria-label][aria-expanded]"))
    launcher.click()
    frame = wait("iframe", lambda: driver.find_element(By.CSS_SELECTOR, "iframe[title=Chat]"))
    wait("iframe shown", lambda: frame.is_displayed())
    driver.switch_to.frame(frame)
    wait("connected", lambda: driver.find_element(By.ID, "status").text)


def bubbles():
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#log .msg .bubble")]


try:
    open_widget()
    step("widget open: " + driver.find_element(By.ID, "status").text)
    result["input_font_px"] = driver.execute_script("return getComputedStyle(document.getElementById('input')).fontSize")
    result["log_role"] = driver.find_element(By.ID, "log").get_attribute("role")
    result["log_live"] = driver.find_element(By.ID, "log").get_attribute("aria-live")

    # Pre-chat form.
    wait("pre-chat form", lambda: driver.find_element(By.ID, "prechat").is_displayed())
    driver.find_element(By.ID, "pc-name").send_keys("Browser Kim")
    driver.find_element(By.ID, "pc-email").send_keys("kim@example.com")
    driver.find_element(By.ID, "prechat-submit").click()
    wait("form closed", lambda: not driver.find_element(By.ID, "prechat").is_displayed())
    step("pre-chat form filled")

    # A message to the helpdesk.
    driver.find_element(By.ID, "input").send_keys("Hello from Chromium")
    driver.find_element(By.ID, "send").click()
    wait("acknowledged", lambda: "Sent" in driver.find_element(By.CSS_SELECTOR, "#log .msg.in .meta").text)
    step("message sent")

    # The helpdesk answers through the API, with quick replies.
    conv = wait("conversation", lambda: call("GET", "/v1/conversations?channel=" + channel)["conversations"][0]["id"])
    result["conversation"] = conv
    call("POST", "/v1/conversations/%s/messages" % conv, {"parts": [
        {"type": "text", "text": "Reply from the helpdesk"},
        {"type": "quick_replies", "text": "Did that help?", "options": [{"title": "Yes", "payload": "YES"}, {"title": "No", "payload": "NO"}]}]})
    wait("reply shown", lambda: any("Reply from the helpdesk" in b for b in bubbles()))
    step("reply shown")

    # Click a quick reply.
    yes = wait("quick reply button", lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "#log .actions button") if b.text == "Yes"][0])
    yes.click()
    wait("interaction acknowledged", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#log .msg.in")) >= 2 and
         "Sent" in driver.find_elements(By.CSS_SELECTOR, "#log .msg.in .meta")[-1].text)
    step("quick reply clicked")

    # HTML is shown as text, and no script runs.
    xss = "<img src=x onerror=alert(1)>"
    driver.find_element(By.ID, "input").send_keys(xss)
    driver.find_element(By.ID, "send").click()
    wait("xss message acknowledged", lambda: any(b == xss for b in bubbles()))
    time.sleep(0.5)
    try:
        driver.switch_to.alert
        fail("an alert opened: the message ran as HTML")
    except NoAlertPresentException:
        pass
    result["xss_literal"] = xss in bubbles()
    result["xss_img_elements"] = len(driver.find_elements(By.CSS_SELECTOR, "#log img[src='x']"))
    step("html shown as text")

    # Upload an image: shown inline once stored.
    png(work + "/red.png")
    driver.find_element(By.ID, "file").send_keys(work + "/red.png")
    img = wait("inline image", lambda: [i for i in driver.find_elements(By.CSS_SELECTOR, "#log .msg.in img")
                                        if driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)][0])
    result["image_width"] = driver.execute_script("return arguments[0].naturalWidth", img)
    step("image uploaded")

    # The helpdesk's mark_read shows as read.
    call("POST", "/v1/conversations/%s/activity" % conv, {"type": "mark_read"})
    wait("read receipt", lambda: "Read" in driver.find_elements(By.CSS_SELECTOR, "#log .msg.in .meta")[-1].text)
    step("read receipt shown")
    # Cards, a carousel and a list are drawn natively; a list row click is an interaction.
    call("POST", "/v1/conversations/%s/messages" % conv, {"parts": [
        {"type": "carousel", "cards": [
            {"title": "Blue mug", "subtitle": "12 EUR", "actions": [{"type": "postback", "title": "Buy blue", "payload": "BUY_BLUE"}]},
            {"title": "Red mug", "subtitle": "14 EUR", "actions": [{"type": "postback", "title": "Buy red", "payload": "BUY_RED"}]}]},
        {"type": "list", "text": "Pick a time", "button_text": "Times", "sections": [{"title": "Today", "rows": [
            {"id": "T15", "title": "15:00", "description": "afternoon"}, {"id": "T17", "title": "17:00"}]}]}]})
    wait("carousel", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#log .carousel .card")) == 2)
    result["card_titles"] = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#log .carousel .card h3")]
    row = wait("list row", lambda: [b for b in driver.find_elements(By.CSS_SELECTOR, "#log .list button") if b.text.startswith("17:00")][0])
    row.click()
    wait("list reply acknowledged", lambda: "Sent" in driver.find_elements(By.CSS_SELECTOR, "#log .msg.in .meta")[-1].text)
    step("carousel and list shown, list row clicked")

    # The helpdesk's mark_read shows as read.
    call("POST", "/v1/conversations/%s/activity" % conv, {"type": "mark_read"})
    wait("read receipt 2", lambda: "Read" in driver.find_elements(By.CSS_SELECTOR, "#log .msg.in .meta")[-1].text)
    before = bubbles()
    result["messages_before_reload"] = len(before)
    driver.switch_to.default_content()
    driver.save_screenshot(shot)

    # Closed widget: a new reply raises the unread badge on the host page (postMessage).
    launcher = driver.find_element(By.CSS_SELECTOR, "button[aria-label][aria-expanded]")
    launcher.click()
    wait("closed", lambda: launcher.get_attribute("aria-expanded") == "false")
    call("POST", "/v1/conversations/%s/messages" % conv, {"parts": [{"type": "text", "text": "One more thing"}]})
    badge = wait("unread badge", lambda: [s for s in launcher.find_elements(By.TAG_NAME, "span") if s.text == "1"][0])
    result["badge"] = badge.text
    result["launcher_label"] = launcher.get_attribute("aria-label")
    before = before + ["One more thing"]
    result["messages_before_reload"] = len(before)
    step("unread badge shown")

    # Reload: the whole history comes back from the visitor token.
    open_widget()
    wait("history after reload", lambda: len(bubbles()) >= len(before))
    time.sleep(0.5)
    after = bubbles()
    result["messages_after_reload"] = len(after)
    result["history_same"] = [b for b in after if b] == [b for b in before if b]
    step("history after reload: %d messages" % len(after))
    console = [l for l in driver.get_log("browser") if l.get("level") == "SEVERE" and "favicon" not in l.get("message", "")]
    result["console_errors"] = [l["message"] for l in console]
finally:
    driver.quit()

print("RESULT " + json.dumps(result), flush=True)
