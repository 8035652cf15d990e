"""The web service in Debian's headless Chromium: log in, see a live hit from a real publisher, search it,
acknowledge it and enrol a plate, in Chinese and in English.

The service runs as `edge web` in a subprocess, fed by a real ZeroMQ publisher in the test process.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bus.publisher import OutboxSettings, Publisher
from tests.conftest import edge_command, free_port, wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ADMIN_PASSWORD = "browser-test-password-1"
WAIT_S = 15

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
)


def jpeg(width: int = 640, height: int = 360) -> bytes:
    image = np.full((height, width, 3), 70, np.uint8)
    cv2.putText(image, "gate", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def plate_hit_body(text: str, track_id: int) -> dict:
    return {
        "camera_id": "gate-north", "track_id": track_id, "frame_time": "2026-12-04T02:00:00.000Z",
        "plate": {"text": text, "type": "standard", "colour": "blue", "confidence": 0.98, "reads": 5,
                  "double_row": False, "corners_xy": [[300, 250], [400, 250], [400, 280], [300, 280]]},
        "vehicle": {"class": "car", "box_xyxy": [200.0, 120.0, 500.0, 330.0]},
        "watchlist": {"entry_id": 3, "pattern": text, "list_name": "stolen-vehicles", "reason": "case 2026-118",
                      "max_edits": 0, "distance": 0},
    }


@pytest.fixture
def publisher(tmp_path):
    feed, replay = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    outbox = OutboxSettings(tmp_path / "outbox.sqlite", max_age_s=3600, max_bytes=50_000_000, replay_endpoint=replay)
    publisher = Publisher(feed, "hub-test", outbox=outbox)
    publisher.start()
    yield publisher, feed, replay
    publisher.close()


@pytest.fixture
def web_service(tmp_path, publisher):
    _publisher, feed, replay = publisher
    port = free_port()
    config = tmp_path / "web.toml"
    config.write_text(
        f'listen_port = {port}\ndata_dir = "{tmp_path / "web-data"}"\n'
        f'[[feeds]]\nendpoint = "{feed}"\nreplay_endpoint = "{replay}"\n',
        encoding="utf-8",
    )
    added = subprocess.run([*edge_command(), "web", "adduser", "--config", str(config), "admin", "--role", "admin",
                            "--password-stdin"], input=ADMIN_PASSWORD + "\n", capture_output=True, text=True,
                           timeout=60)
    assert added.returncode == 0, added.stderr
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen([*edge_command(), "web", "--config", str(config)], stdout=log_file,
                                   stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        assert wait_until(healthy, 30), f"web service did not start: {log_path.read_text()[-2000:]}"
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for_text(driver, css: str, *texts: str) -> None:
    """Wait until one element matching `css` contains every one of `texts`."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The live page replaces its rows after a reconnect, so an element found a moment ago may be gone.
    WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: any(all(text in element_text(element) for text in texts)
                      for element in d.find_elements(By.CSS_SELECTOR, css)),
        message=f"no {css} with text {texts!r} within {WAIT_S} s",
    )


def element_text(element) -> str:
    """Return the element's text, or "" when the page replaced the element while it was read.

    Chromium reports that case as "Node with given id does not belong to the document", a general
    WebDriverException rather than StaleElementReferenceException.
    """
    from selenium.common.exceptions import WebDriverException

    try:
        return element.text
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return ""
        raise


def fill(driver, form_css: str, values: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    form = driver.find_element(By.CSS_SELECTOR, form_css)
    for name, value in values.items():
        field = form.find_element(By.NAME, name)
        if field.tag_name == "select":
            from selenium.webdriver.support.ui import Select

            Select(field).select_by_value(value)
        else:
            field.clear()
            field.send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


# Texts the pages show in each language, from the message catalogues.
TEXTS = {
    "zh-CN": {"live": "实时告警", "connected": "实时推送已连接", "hit": "车牌布控命中", "acked": "已处置",
              "watchlist": "车牌布控库", "added": "已添加布控车牌", "summary": "共 1 条"},
    "en": {"live": "Live hits", "connected": "Live feed connected", "hit": "Plate watchlist hit",
           "acked": "Acknowledged by admin", "watchlist": "Plate watchlist", "added": "Added", "summary": "1 results"},
}


@pytest.mark.parametrize("language, plate, enrolled", [("zh-CN", "粤B12345", "京A00001"),
                                                        ("en", "粤B67890", "京A00002")])
def test_investigator_workflow(web_service, publisher, browser, language, plate, enrolled):
    from selenium.webdriver.common.by import By

    texts = TEXTS[language]
    feed_publisher, _feed, _replay = publisher
    driver = browser

    driver.get(web_service + "/")
    assert "/login" in driver.current_url
    if language == "en":
        driver.find_element(By.CSS_SELECTOR, "a.lang").click()
    fill(driver, "#login-form", {"name": "admin", "password": ADMIN_PASSWORD})
    wait_for_text(driver, "h1", texts["live"])
    wait_for_text(driver, "#live-status", texts["connected"])

    # A hit published now must appear without a reload.
    feed_publisher.publish("hit.plate", plate_hit_body(plate, track_id=7), [jpeg(), jpeg(120, 40)])
    wait_for_text(driver, "#live-hits tbody tr", plate, texts["hit"])

    driver.get(web_service + "/search")
    fill(driver, "form.search", {"plate": plate})
    wait_for_text(driver, "p.summary", texts["summary"])
    wait_for_text(driver, "#search-results", plate)

    driver.find_element(By.CSS_SELECTOR, "#search-results a[href^='/hits/']").click()
    wait_for_text(driver, "table.fields", plate)
    fill(driver, "#ack-form", {"note": "已通知卡口拦截"})
    wait_for_text(driver, "#ack-info", texts["acked"])
    wait_for_text(driver, "#ack-note", "已通知卡口拦截")

    driver.get(web_service + "/watchlists/plates")
    wait_for_text(driver, "h1", texts["watchlist"])
    fill(driver, "#add-plate", {"pattern": enrolled, "list_name": "stolen-vehicles", "reason": "case 9",
                                "max_edits": "1"})
    wait_for_text(driver, "p.message", texts["added"])
    wait_for_text(driver, "#plate-entries", enrolled)


def test_login_failure_message(web_service, browser):
    browser.get(web_service + "/login")
    fill(browser, "#login-form", {"name": "admin", "password": "wrong-password-1"})
    wait_for_text(browser, "#login-error", "用户名或密码错误")
    assert "/login" in browser.current_url


def end_session_elsewhere(base_url: str, session_token: str) -> None:
    """Log the session out with a request of its own, as a second tab of the same user would."""
    cookie = {"Cookie": f"edge_session={session_token}"}
    with urllib.request.urlopen(urllib.request.Request(base_url + "/account", headers=cookie), timeout=10) as page:
        csrf_token = re.search(r'data-csrf="([^"]*)"', page.read().decode("utf-8")).group(1)
    logout = urllib.request.Request(base_url + "/logout", data=b"", method="POST",
                                    headers={**cookie, "X-CSRF-Token": csrf_token})
    try:
        urllib.request.urlopen(logout, timeout=10).close()
    except urllib.error.HTTPError as redirect:  # the redirect to /login without the session
        assert redirect.code in (302, 303), redirect


def test_live_page_leaves_after_logout_elsewhere(web_service, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(web_service + "/login")
    fill(browser, "#login-form", {"name": "admin", "password": ADMIN_PASSWORD})
    wait_for_text(browser, "#live-status", "实时推送已连接")

    end_session_elsewhere(web_service, browser.get_cookie("edge_session")["value"])

    # The server checks each live socket's login every few seconds and closes it once the login is gone.
    WebDriverWait(browser, WAIT_S).until(lambda d: "/login" in d.current_url,
                                         message=f"live page still open {WAIT_S} s after the logout")


def test_oversized_upload_stopped_in_browser(web_service, browser, tmp_path):
    from selenium.webdriver.common.by import By

    big_photo = tmp_path / "big.jpg"
    big_photo.write_bytes(b"\xff\xd8\xff" + bytes(11 * 1024 * 1024))
    small_photo = tmp_path / "small.jpg"
    small_photo.write_bytes(jpeg())
    browser.get(web_service + "/login")
    fill(browser, "#login-form", {"name": "admin", "password": ADMIN_PASSWORD})
    wait_for_text(browser, "h1", "实时告警")

    browser.get(web_service + "/watchlists/faces")
    form = browser.find_element(By.ID, "add-face")
    for name, value in (("name", "张三"), ("list_name", "vip"), ("reason", "案件 2026-7")):
        form.find_element(By.NAME, name).send_keys(value)
    form.find_element(By.NAME, "photo").send_keys(str(big_photo))
    message = browser.find_element(By.CSS_SELECTOR, "[data-too-large='add-face']")
    assert message.is_displayed(), "the message shows as soon as the file is chosen"
    assert message.text == "所选文件过大：合计不能超过 10 MB。表单未提交，请选择较小的文件。"

    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert browser.current_url == web_service + "/watchlists/faces"
    assert browser.find_element(By.NAME, "name").get_attribute("value") == "张三", "the form was not sent"
    assert message.is_displayed()

    form.find_element(By.NAME, "photo").clear()
    form.find_element(By.NAME, "photo").send_keys(str(small_photo))
    assert not message.is_displayed(), "a file within the limit hides the message"

    browser.get(web_service + "/watchlists/plates")
    form = browser.find_element(By.ID, "import-plates")
    form.find_element(By.NAME, "file").send_keys(str(big_photo))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert browser.current_url == web_service + "/watchlists/plates"
    assert browser.find_element(By.CSS_SELECTOR, "[data-too-large='import-plates']").is_displayed()

