"""The explorer in a real browser: JupyterLab on a free local port, `nbs/explore.ipynb` run in headless Chromium
(Debian's chromium and chromedriver, driven by Selenium), a prompt typed, render pressed, the images and verdicts
checked. Set LPD_FIGURES=1 to refresh the README's screenshot, reports/figures/explorer.png."""
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lpd.core import default_model
from lpd.explore import held_out_scene

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                 reason="chromium and chromedriver are not installed (.ci/run installs Debian's)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    "JupyterLab serving a copy of the explorer page (the repository's notebook is never saved over), its own config."
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(ROOT / "nbs" / "explore.ipynb", root / "explore.ipynb")
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false", "checkForUpdates": false}')  # no "get notified?" toast in the picture
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        pytest.fail("jupyter lab did not answer within 60 s")
    yield url, token
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_explorer_renders_in_jupyterlab(lab, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = lab
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1300,2200", f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        wait = WebDriverWait(driver, 180)
        css = lambda sel: wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, sel)))  # noqa: E731
        driver.get(f"{url}/lab/tree/explore.ipynb?token={token}")
        css(".jp-Notebook .jp-CodeCell")
        wait.until(lambda d: "| Idle" in d.find_element(By.CSS_SELECTOR, "#jp-main-statusbar").text)  # kernel up
        for _ in range(3):  # Run > Run All Cells (a menu opened before the notebook has focus may do nothing: retry)
            driver.find_element(By.CSS_SELECTOR, ".jp-Notebook").click()
            wait.until(EC.element_to_be_clickable((By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') "
                                                             "and text()='Run']"))).click()
            wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "li[data-command='runmenu:run-all']"))).click()
            try:
                WebDriverWait(driver, 60).until(
                    EC.presence_of_element_located((By.CSS_SELECTOR, ".lpd-explorer .lpd-prompt textarea")))
                break
            except TimeoutException:
                continue
        prompt = css(".lpd-explorer .lpd-prompt textarea")
        run = css(".lpd-explorer button.lpd-run")
        wait.until(lambda d: "loaded:" in d.find_element(By.CSS_SELECTOR, ".lpd-status").text)
        # bad input: an empty prompt is one red line, and the interface stays usable
        prompt.send_keys(Keys.CONTROL, "a")
        prompt.send_keys(Keys.DELETE)
        run.click()
        error = css(".lpd-status .lpd-error")
        assert "the prompt is empty" in error.text
        # a prompt typed in (a held-out scene's, so the judge knows its truth), then render
        scene = held_out_scene(0)
        driver.execute_script("arguments[0].value = arguments[1]; "
                              "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                              prompt, scene["prompt"][:-1])
        prompt.send_keys(scene["prompt"][-1])  # the last character typed for real
        start = time.perf_counter()
        run.click()
        css(".lpd-output img.lpd-composite")
        seconds = time.perf_counter() - start
        components = driver.find_elements(By.CSS_SELECTOR, ".lpd-output img.lpd-component")
        table = css(".lpd-output table.lpd-verdicts")
        K = json.loads((default_model() / "decomposer" / "config.json").read_text())["num_components"]
        assert len(components) == K  # the embedded default's
        assert driver.find_elements(By.CSS_SELECTOR, ".lpd-status .lpd-error") == []
        rows = table.find_elements(By.TAG_NAME, "tr")
        assert rows[0].text.split()[-(K + 1):] == ["composite"] + [f"k{k}" for k in range(K)]
        assert len(rows) > 5 * 4  # facts of 4-6 objects, relations, one share per metric
        timing = {"press_to_images_s": round(seconds, 1), "cpu_count": os.cpu_count(),
                  "page": driver.find_element(By.CSS_SELECTOR, ".lpd-similarity").text,  # explore()'s own seconds
                  "command": "LPD_FIGURES=1 python -m pytest -s tests/test_explorer.py"}
        print(json.dumps(timing))
        driver.execute_script("arguments[0].scrollIntoView()", prompt)
        shot = tmp_path / "explorer.png"
        driver.save_screenshot(str(shot))
        if os.environ.get("LPD_FIGURES") == "1":  # the README's picture and its press-to-images time
            shutil.copy(shot, ROOT / "reports" / "figures" / "explorer.png")
            (ROOT / "reports" / "figures" / "explorer.json").write_text(json.dumps(timing, indent=1) + "\n")
    finally:
        driver.quit()
