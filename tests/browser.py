"""Headless Chromium for tests: Debian's chromium and chromium-driver, driven by selenium.

Nothing is downloaded at test time: the browser is /usr/bin/chromium and the driver
/usr/bin/chromedriver (scripts/ci-prepare installs both with apt-get), so selenium never runs
Selenium Manager. Without them or without selenium (requirements/test-browser.txt), a browser test
skips saying why, and fails under CI=true (conftest's `unavailable`).

    from browser import chromium_driver, screenshot, wait_for_text   # the fixture, by import

    def test_page(chromium_driver):
        chromium_driver.get(url)
        wait_for_text(chromium_driver, "#status", lambda text: text == "ready")
        screenshot(chromium_driver, "page")          # build/screenshots/page.png

Screenshots go to build/screenshots/ in the repository (build/ is gitignored): one stable place,
whatever pytest's --basetemp, overwritten by the next run of the same test.
"""
import contextlib
import importlib.util
import os
import time
import warnings

import pytest

from conftest import REPO, unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "build" / "screenshots"
PAGE_LOAD_TIMEOUT_S = 20
WAIT_TIMEOUT_S = 10
WINDOW_SIZE = (1400, 1000)


def missing():
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is missing (apt-get install {package})"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (requirements/test-browser.txt)"
    return None


@contextlib.contextmanager
def chromium(directory):
    """A selenium Chrome webdriver on Debian's headless Chromium, with its profile in `directory`;
    quit at the end, whatever happened."""
    reason = missing()
    if reason:
        unavailable(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}", "--no-proxy-server",
                     f"--user-data-dir={directory / 'chromium-profile'}"):
        options.add_argument(argument)
    with warnings.catch_warnings():
        # The driver is on localhost: never through an HTTP_PROXY of the environment. selenium 4.51's
        # Chrome() takes no ClientConfig, the replacement that this method's warning names.
        warnings.simplefilter("ignore", DeprecationWarning)
        options.ignore_local_proxy_environment_variables()
    service = Service(executable_path=CHROMEDRIVER, log_output=str(directory / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chromium_driver(tmp_path):
    """The driver of chromium(tmp_path); import this name into a test module to use it."""
    with chromium(tmp_path) as driver:
        yield driver


def screenshot(driver, name):
    """Save the window as build/screenshots/NAME.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        pytest.fail(f"the browser could not save a screenshot to {path}", pytrace=False)
    return path


def visible_text(driver):
    """The page's visible text, or why it cannot be read."""
    from selenium.common.exceptions import WebDriverException

    try:
        return driver.find_element("tag name", "body").text
    except WebDriverException as e:
        return f"<cannot read the page: {e.msg}>"


def wait_for_text(driver, css, predicate, timeout=WAIT_TIMEOUT_S, what=None):
    """Wait until the text of the element at CSS selector `css` satisfies predicate(text); return the
    text. After `timeout` seconds, fail with the last text seen and the page's visible text."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    text = None
    while True:
        try:
            text = driver.find_element("css selector", css).text
        except (NoSuchElementException, StaleElementReferenceException):
            text = None
        if text is not None and predicate(text):
            return text
        if time.monotonic() > deadline:
            seen = "no such element" if text is None else repr(text)
            pytest.fail(f"after {timeout}s, the text of {css!r} is not {what or 'as expected'} "
                        f"(last seen: {seen}) on {driver.current_url}; the page's visible text:\n"
                        f"{visible_text(driver)}", pytrace=False)
        time.sleep(0.05)
