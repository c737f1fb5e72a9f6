"""The web console in headless Chromium (driven by selenium through chromedriver).

Run by tests/ui_browser.rs with: BASE PASSWORD CALL_ID SCREENSHOT_DIR CHROMIUM
CHROMEDRIVER. Logs in, loads each page, checks the SIP ladder opens a message, the
player fetches its recording, the waveform loads and the Live page gets server-sent
events; saves a screenshot of each page (and History at a phone's width). Exits non-zero
with the reason on the first failure.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    base, password, call_id, shots, chromium, chromedriver = sys.argv[1:7]
    os.makedirs(shots, exist_ok=True)
    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    waiter = WebDriverWait(driver, 15)

    def wait(what, check):
        try:
            waiter.until(check)
        except Exception:
            text = driver.find_element(By.TAG_NAME, "body").text[:300]
            raise AssertionError("waited 15 s for: %s (at %s, showing: %r)"
                                 % (what, driver.current_url, text)) from None

    try:
        driver.get(base + "/ui/history")
        assert "/ui/login" in driver.current_url, driver.current_url
        driver.save_screenshot(os.path.join(shots, "login.png"))
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait("the login to lead to History", lambda d: d.current_url.endswith("/ui/history"))
        # The address changes before the page has loaded: wait for its rows.
        wait("History to list calls",
             lambda d: d.find_elements(By.CSS_SELECTOR, "#history tbody tr"))
        driver.save_screenshot(os.path.join(shots, "history.png"))

        driver.get(base + "/ui/calls/" + call_id)
        arrows = driver.find_elements(By.CSS_SELECTOR, ".ladder svg a")
        assert arrows, "the call page has no ladder arrows"
        driver.save_screenshot(os.path.join(shots, "call.png"))
        details = driver.find_element(By.ID, "m2")
        assert not details.get_attribute("open"), "message 3 is open before a click"
        driver.execute_script("location.hash = '#m2'")
        wait("message 3 to open from the ladder",
             lambda d: d.find_element(By.ID, "m2").get_attribute("open") is not None)
        # The player fetches its recording: metadata loaded, no media error.
        wait("the player to load its recording's metadata", lambda d: d.execute_script(
            "const a = document.getElementById('player');"
            "return a.error === null && a.readyState >= 1 && a.duration > 0;"))
        duration = driver.execute_script("return document.getElementById('player').duration")
        wait("the waveform to load", lambda d: d.execute_script(
            "const i = document.querySelector('.waveform img');"
            "return i.complete && i.naturalWidth > 0;"))
        driver.save_screenshot(os.path.join(shots, "call-message.png"))

        driver.get(base + "/ui/live")
        wait("a server-sent event on the Live page",
             lambda d: "updated" in d.find_element(By.ID, "live-state").text)
        assert "+15557770000" in driver.find_element(By.ID, "live-calls").text
        driver.save_screenshot(os.path.join(shots, "live.png"))

        driver.get(base + "/ui/status")
        assert driver.find_elements(By.CSS_SELECTOR, "svg.chart"), "no chart"
        driver.save_screenshot(os.path.join(shots, "status.png"))

        driver.set_window_size(390, 844)
        driver.get(base + "/ui/history")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, "History is %d px wide on a phone" % width
        driver.save_screenshot(os.path.join(shots, "history-phone.png"))
        print("ok: ladder, player (%.1f s), waveform, live events, %d screenshots"
              % (duration, len(os.listdir(shots))))
    finally:
        driver.quit()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the reason goes to the Rust test's failure message
        print("FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
