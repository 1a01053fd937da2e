"""A person at Debian's chromium (headless, through chromium-driver): the browser, what
they do and see, the colours the pages use for states."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import alert_is_present
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.web import Web

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
RED = "rgba(185, 28, 28, 1)"  # the failed device's cell (--failed in style.css)
ADDED_GREEN = "rgba(22, 101, 52, 1)"  # an added line of a diff
NON_COMPLIANT_BG = "rgba(255, 237, 213, 1)"  # --rolled-bg in style.css
COMPLIANT_BG = "rgba(220, 252, 231, 1)"  # --ok-bg


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """Debian's chromium, headless, through chromium-driver; quit at the end."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "Debian's chromium and chromium-driver are needed (./dev setup installs them)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--disable-gpu", "--window-size=1280,900", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Person:
    """What someone at the browser does and sees."""

    def __init__(self, driver: WebDriver, web: Web, shots: Path) -> None:
        self.driver = driver
        self.web = web
        self.shots = shots
        shots.mkdir(exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.web.base + path)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, css: str, timeout: float = 90) -> WebElement:
        WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css))
        return self.find(css)

    def click(self, element: WebElement) -> None:
        """Click a link or a submit button and wait until the next page has loaded (a click
        returns before the browser has navigated)."""
        self._mark_page()
        element.click()
        self._wait_next_page()

    def confirm_click(self, element: WebElement) -> None:
        """Click a button that asks first ("Send ... now?"), say yes, wait for the next page."""
        self._mark_page()
        element.click()
        WebDriverWait(self.driver, 10).until(alert_is_present())
        self.driver.switch_to.alert.accept()
        self._wait_next_page()

    def _mark_page(self) -> None:
        self.driver.execute_script("window.__runnerLeft = true")

    def _wait_next_page(self) -> None:
        # a marked window variable, not an element's staleness: chromedriver may answer a
        # question about an element of a page being replaced with an "unknown error" (Node
        # with given id does not belong to the document) instead of "stale element"
        def next_page_loaded(driver: WebDriver) -> bool:
            try:
                return bool(driver.execute_script(
                    "return window.__runnerLeft === undefined"
                    " && document.readyState === 'complete'"))
            except WebDriverException:  # mid-navigation: ask again
                return False
        WebDriverWait(self.driver, 90, poll_frequency=0.1).until(next_page_loaded)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path))
        return path

    def log_in(self, token: str) -> None:
        self.open("/login")
        self.find("#token").send_keys(token)
        self.click(self.find("form button[type=submit]"))

    def colour(self, element: WebElement, prop: str) -> str:
        return str(element.value_of_css_property(prop))

    def errors(self) -> list[str]:
        """What the browser's console reported (failed loads, CSP refusals, script errors)."""
        return [e["message"] for e in self.driver.get_log("browser")  # type: ignore[attr-defined]
                if e["level"] == "SEVERE"]
