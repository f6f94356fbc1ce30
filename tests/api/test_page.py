"""The status page in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver, against a real `runner daemon --http` running a job every two seconds."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

from runner import services
from tests.conftest import TWO_SQLITE
from tests.daemon.conftest import Daemon, job_yaml, make_source

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        reason = (
            "Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
        )
        if os.environ.get("RUNNER_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason} (RUNNER_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_page_shows_jobs_runs_and_a_runs_log(project):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write("jobs.d/sync.yaml", job_yaml("sync", extra='  schedule: {cron: "* * * * * */2"}\n'))
    make_source(project.root)
    services.apply(project.ws)  # keys live in the state store apply creates
    key = services.keys_create(project.ws, "page", "read")
    port = free_port()
    daemon = Daemon(project.root, "--http", f"127.0.0.1:{port}")
    try:
        daemon.wait_for(lambda e: e["event"] == "serving the API and status page")
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)
        driver.get(f"http://127.0.0.1:{port}/")
        form = wait.until(
            lambda d: (
                d.find_element(By.ID, "login") if d.find_element(By.ID, "login").is_displayed() else None
            )
        )
        driver.find_element(By.ID, "key").send_keys("rk_wrong")
        form.submit()
        wait.until(lambda d: "refused" in d.find_element(By.ID, "error").text)

        driver.find_element(By.ID, "key").clear()
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.ID, "login").submit()
        wait.until(lambda d: "default/sync" in d.find_element(By.ID, "jobs").text)
        jobs_text = driver.find_element(By.ID, "jobs").text
        assert "* * * * * */2 (UTC)" in jobs_text
        assert "daemon running" in driver.find_element(By.ID, "agent").text

        # the page refreshes itself: runs appear without a reload, newest first
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) >= 2)
        first = driver.find_element(By.CSS_SELECTOR, "#runs tbody tr")
        run_id = first.get_attribute("data-run")
        assert run_id and "default/sync" in first.text and "cron" in first.text
        first.click()
        wait.until(lambda d: "run started" in d.find_element(By.ID, "log").text)
        wait.until(lambda d: "run succeeded" in d.find_element(By.ID, "log").text)
        assert f"Run {run_id} of default/sync" in driver.find_element(By.ID, "detail-title").text
        assert "items" in driver.find_element(By.ID, "tasks").text
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()
        daemon.stop()
        daemon.close()


def test_the_key_is_kept_for_the_session_only_and_sign_out_forgets_it(project):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser()
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write("jobs.d/sync.yaml", job_yaml("sync"))
    make_source(project.root)
    services.apply(project.ws)
    key = services.keys_create(project.ws, "page", "read")
    port = free_port()
    daemon = Daemon(project.root, "--http", f"127.0.0.1:{port}")
    try:
        daemon.wait_for(lambda e: e["event"] == "serving the API and status page")
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)
        driver.get(f"http://127.0.0.1:{port}/")
        driver.execute_script("localStorage.setItem('runner-key', arguments[0])", key)  # an older page's
        driver.refresh()
        login = wait.until(
            lambda d: (
                d.find_element(By.ID, "login") if d.find_element(By.ID, "login").is_displayed() else None
            )
        )
        assert "operate" in login.text and "shared" in login.text  # the warning beside the field
        assert driver.execute_script("return localStorage.getItem('runner-key')") is None

        driver.find_element(By.ID, "key").send_keys(key)
        login.submit()
        wait.until(lambda d: "default/sync" in d.find_element(By.ID, "jobs").text)
        assert driver.execute_script("return localStorage.length") == 0
        assert driver.execute_script("return sessionStorage.getItem('runner-key')") == key
        assert driver.find_element(By.ID, "key").get_attribute("value") == ""
        driver.refresh()  # the same tab keeps it
        wait.until(lambda d: "default/sync" in d.find_element(By.ID, "jobs").text)

        signout = driver.find_element(By.ID, "signout")
        assert signout.is_displayed()
        signout.click()
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        assert driver.execute_script("return sessionStorage.getItem('runner-key')") is None
        assert driver.find_element(By.ID, "jobs").find_elements(By.CSS_SELECTOR, "tbody tr") == []
        driver.refresh()
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        assert "default/sync" not in driver.find_element(By.ID, "jobs").text

        driver.find_element(By.ID, "key").send_keys(key)  # a new tab (a new session) starts signed out
        driver.find_element(By.ID, "login").submit()
        wait.until(lambda d: "default/sync" in d.find_element(By.ID, "jobs").text)
        driver.switch_to.new_window("tab")
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        assert driver.execute_script("return sessionStorage.getItem('runner-key')") is None
    finally:
        driver.quit()
        daemon.stop()
        daemon.close()
