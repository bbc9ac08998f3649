"""The board in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, which `.ci/run`
installs) driven by Selenium against a coordinator and two nodes, each its own process over mutual TLS.

A person logs in, submits the vertical PSI -> SecureBoost -> evaluate job from the form; the insurer's node
wants each job approved by hand, and its operator approves it on the insurer's own board; the page follows
the tasks to `succeeded` without being reloaded, shows the ROC curve (its AUC equal to the job's `evaluate`
figure) and a task's log; a viewer cannot submit; the other party's private results are in no page.
Screenshots of every page land in `$SHAREDML_SCREENSHOTS` when it is set (to look at them).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from sharedml.deploy.loopback import BOARD_PASSWORD, Deployment

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "src" / "sharedml" / "datasets" / "data"
VERTICAL = ["psi", "hetero_secureboost", "hetero_secureboost_predict", "evaluate"]
USERS = {"alice": ("operator", "bank"), "vera": ("viewer", "bank"), "ivan": ("operator", "insurer")}
SHOTS = os.environ.get("SHAREDML_SCREENSHOTS")


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("no headless browser here: install Debian's chromium and chromium-driver (.ci/run does)")
    return browser, driver


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _chromium()
    nodes = {
        "bank": {"datasets": {"breast_guest": DATA / "breast_hetero_guest.csv.gz"},
                 "policy": {"datasets": {"breast_guest": {"peers": ["insurer"], "components": VERTICAL}}}},
        "insurer": {"datasets": {"breast_host": DATA / "breast_hetero_host.csv.gz"},
                    "policy": {"datasets": {"breast_host": {"peers": ["bank"], "components": VERTICAL}},
                               "approval": "manual"},
                    "board_users": {"olga": "approver"}},
    }
    deploy = Deployment(tmp_path_factory.mktemp("deploy"), nodes, board_users=USERS).start()
    yield deploy
    deploy.stop()


def _chrome():
    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--ignore-certificate-errors"):  # the federation's own CA
        options.add_argument(flag)
    try:
        chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    except WebDriverException as err:
        pytest.skip(f"chromium did not start: {err.msg}")
    chrome.set_page_load_timeout(30)
    return chrome


@pytest.fixture()
def browser():
    chrome = _chrome()
    yield chrome
    chrome.quit()


@pytest.fixture()
def second_browser():
    """Another person's browser (the node operator's), so the first one's page stays in front."""
    chrome = _chrome()
    yield chrome
    chrome.quit()


def shot(chrome, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        chrome.save_screenshot(str(Path(SHOTS) / f"{name}.png"))


def log_in(chrome, url: str, name: str, page: str = "/ui/jobs") -> None:
    chrome.get(f"{url}{page}")
    WebDriverWait(chrome, 10).until(expected_conditions.presence_of_element_located((By.NAME, "password")))
    shot(chrome, "login")
    chrome.find_element(By.NAME, "name").send_keys(name)
    chrome.find_element(By.NAME, "password").send_keys(BOARD_PASSWORD)
    chrome.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(chrome, 10).until(lambda c: "/ui/login" not in c.current_url)


def test_submit_from_the_form_watch_it_succeed_and_read_its_roc_and_log(deployment, browser, second_browser):
    log_in(browser, deployment.url, "alice")
    browser.find_element(By.LINK_TEXT, "new job").click()
    shot(browser, "new-job")
    offered = {o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#datasets-offered option")}
    assert offered == {"breast_guest", "breast_host"}  # what the nodes' policies share, as suggestions
    browser.find_element(By.NAME, "data.guest").send_keys("breast_guest")
    browser.find_element(By.NAME, "data.host").send_keys("breast_host")
    trees = browser.find_element(By.NAME, "param.boost.n_estimators")
    trees.clear()
    trees.send_keys("3")
    bits = browser.find_element(By.NAME, "param.boost.key_bits")
    bits.clear()
    bits.send_keys("1024")  # a test's speed; the default stays 2048
    browser.find_element(By.ID, "submit-job").click()
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.ID, "job-state")))
    job_url = browser.current_url
    assert re.search(r"/ui/jobs/vertical-secureboost-", job_url)
    browser.execute_script("window.sameDocument = true")  # gone if the page were reloaded
    pending = browser.find_element(By.CSS_SELECTOR, 'span.approval[data-approval="insurer"]')
    assert pending.text == "insurer: pending" and browser.find_element(By.ID, "job-state").text == "queued"
    shot(browser, "job-pending")

    # The insurer's operator approves it on the insurer node's own board, in their own browser.
    job_id = job_url.rsplit("/", 1)[1]
    operator = second_browser
    log_in(operator, f"https://127.0.0.1:{deployment.ports['insurer']}", "olga", "/ui/approvals")
    waiting = operator.find_element(By.CSS_SELECTOR, f'section.approval[data-job="{job_id}"]')
    assert "breast_host" in waiting.text and "bank" in waiting.text  # what it would use, with whom
    shot(operator, "node-approvals")
    waiting.find_element(By.NAME, "reason").send_keys("checked with the data protection officer")
    waiting.find_element(By.CSS_SELECTOR, 'button[value="approve"]').click()
    WebDriverWait(operator, 10).until(lambda b: b.find_elements(By.ID, "none-pending"))

    # The job's page follows it: task badges change while it is the same document...
    WebDriverWait(browser, 120, poll_frequency=0.2).until(lambda b: b.execute_script(
        "return window.sameDocument === true && [...document.querySelectorAll('table.tasks span.state')]"
        ".some(e => e.textContent === 'succeeded')"))
    assert browser.find_element(By.CSS_SELECTOR, 'span.approval[data-approval="insurer"]').text == "insurer: approved"
    shot(browser, "job-running")
    # ...up to the end: every task `succeeded`, still the same document...
    WebDriverWait(browser, 120, poll_frequency=0.2).until(lambda b: b.execute_script(
        "const s = [...document.querySelectorAll('table.tasks span.state')].map(e => e.textContent);"
        "return window.sameDocument === true && s.length === 7 && s.every(t => t === 'succeeded')"))
    # ...and once the job has ended it reloads once, to draw the results.
    WebDriverWait(browser, 180, poll_frequency=0.5).until(
        lambda b: b.find_element(By.ID, "job-state").text in ("succeeded", "failed", "cancelled"))
    WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "section.results"))
    operator.find_element(By.LINK_TEXT, "audit log").click()
    audit = operator.page_source
    assert "approved-by-operator" in audit and "board:olga" in audit and "data protection officer" in audit
    shot(operator, "node-audit")
    shot(browser, "job-succeeded")
    assert browser.find_element(By.ID, "job-state").text == "succeeded", browser.find_element(By.ID, "job-error").text
    states = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.tasks span.state")]
    assert len(states) == 7 and set(states) == {"succeeded"}
    auc = next(r for r in deployment.client.call("GET", f"/jobs/{job_id}/logs") if r["task"] == "report")
    expected = next(m["value"] for m in auc["metrics"]["metrics"] if m["name"] == "auc")
    roc = browser.find_element(By.CSS_SELECTOR, 'section.results[data-task="report"] img[alt^="ROC"]')
    assert roc.get_attribute("alt") == f"ROC  (AUC {expected:.4f})"
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", roc) > 300  # drawn
    shown = browser.find_element(By.CSS_SELECTOR, 'section.results[data-task="report"] td[data-metric="auc"]').text
    assert float(shown) == pytest.approx(expected, abs=5e-5)
    browser.execute_script("arguments[0].scrollIntoView()", roc)
    shot(browser, "job-roc")
    # The insurer's results (its feature importance, its logs) are the insurer's: not a trace on the bank's page.
    parties = {e.get_attribute("data-party") for e in browser.find_elements(By.CSS_SELECTOR, "section.results")}
    assert parties == {"bank"}
    assert "/logs/boost/insurer" not in browser.page_source

    browser.find_element(By.LINK_TEXT, "boost").click()
    log = browser.find_element(By.CSS_SELECTOR, "pre.log").text
    assert "boost" in browser.title and log.strip()
    shot(browser, "log")
    for page in ("models", "nodes", "components"):
        browser.find_element(By.LINK_TEXT, page).click()
        time.sleep(0.2)
        shot(browser, page)


def test_a_viewer_cannot_submit(deployment, browser):
    log_in(browser, deployment.url, "vera")
    assert not browser.find_elements(By.LINK_TEXT, "new job")
    browser.get(f"{deployment.url}/ui/new")
    assert "Not allowed" in browser.page_source and "operator" in browser.page_source
    shot(browser, "viewer-refused")


def test_the_api_refuses_a_browser_without_a_certificate(deployment, browser):
    browser.get(f"{deployment.url}/jobs")
    assert "no client certificate" in browser.page_source
