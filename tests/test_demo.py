"""The web demo (issue 25): its logic on the tiny checkpoint, and the app driven in a real headless Chromium through
Selenium: upload an image, run grounding, see the answer and the box drawn; upload an audio file, caption it. The
screenshots are kept as test artifacts (`test-artifacts/`, or `$TEST_ARTIFACTS`)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from checkpoint_support import save_tiny_checkpoint, single_torch_thread, write_media
from conftest import REPO_ROOT
from hub_upload.demo import BOX_COLOR, DEMO_TASKS, build_app, load_pipeline, predict, task_settings
from processing.tasks import generation_config


ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoint") / "unival-tiny"
    save_tiny_checkpoint(directory)
    return load_pipeline(directory)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return write_media(tmp_path_factory.mktemp("media"))


def _red_pixels(image: Image.Image) -> int:
    """Pixels of the box colour (near it: a browser may re-encode the image)."""
    return sum(1 for pixel in image.convert("RGB").getdata()
               if all(abs(value - target) <= 12 for value, target in zip(pixel, BOX_COLOR)))


# ---------------------------------------------------------------------------------------------------------------------
# the logic
# ---------------------------------------------------------------------------------------------------------------------
def test_grounding_answers_with_the_box_and_draws_it(pipe, media):
    rows, shown = predict(pipe, [media["image"]], "visual grounding", "the red circle", 2, 4)
    ((name, answer, box),) = rows
    direct = pipe(media["image"], text="the red circle", task="visual_grounding", generate_kwargs={"num_beams": 2})
    coordinates = [float(v) for v in box.split(", ")]
    assert name == "shapes.png" and answer == f"box {box}"
    assert coordinates == pytest.approx([round(v) for v in direct[0]["box"]], abs=1)
    with Image.open(media["image"]) as original:
        assert shown.size == original.size and _red_pixels(original) == 0
    assert _red_pixels(shown) > 0


def test_every_task_and_modality_runs_and_a_batch_gives_one_row_per_file(pipe, media):
    inputs = {"image": media["image"], "video": media["video"], "audio": media["audio"]}
    texts = {"question": "what color is the circle", "referring expression": "the circle", "caption": "a red circle",
             "hypothesis": "there is a circle", "region x0, y0, x1, y1 in pixels": "10, 10, 50, 50"}
    for task in DEMO_TASKS:
        modality = task.modality or "audio"
        rows, _ = predict(pipe, [inputs[modality]], task.label, texts.get(task.text_hint, ""), 1, 3)
        assert len(rows) == 1 and isinstance(rows[0][1], str), task
    rows, shown = predict(pipe, [media["image"], media["image"]], "caption (image, video or audio)", "", 1, 3)
    assert [row[0] for row in rows] == ["shapes.png", "shapes.png"] and rows[0][1] == rows[1][1] and shown is not None
    rows, shown = predict(pipe, [media["image"]], "grounded caption", "10, 10, 50, 50", 1, 3)
    assert rows[0][2] == "10, 10, 50, 50" and _red_pixels(shown) > 0  # the given region is drawn


def test_settings_follow_the_task_and_bad_input_is_named(pipe, media, tmp_path):
    assert task_settings("visual question answering") == (generation_config("vqa").num_beams,
                                                           generation_config("vqa").max_new_tokens)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    for files, label, text, message in (
        ([], "caption (image, video or audio)", "", "upload at least one"),
        ([media["image"]], "visual question answering", "", "needs a question"),
        ([media["audio"]], "visual grounding", "the circle", "takes image files, and beep.wav is audio"),
        ([str(notes)], "caption (image, video or audio)", "", r"notes.txt: not an image, video or audio file"),
        ([media["image"]], "grounded caption", "10, 10", "region as 4 numbers"),
    ):
        with pytest.raises(ValueError, match=message):
            predict(pipe, files, label, text, 1, 3)


def test_without_a_model_the_demo_says_how_to_make_one(tmp_path, monkeypatch, capsys):
    from hub_upload.demo import main

    monkeypatch.chdir(tmp_path)
    assert main([]) == 1
    assert "bash scripts/demo.sh" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# the app in a real browser
# ---------------------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromedriver must be installed in CI (scripts/test.sh installs them)")
        pytest.skip("no chromium / chromedriver on this machine (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1200"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def app_url(pipe):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    app = build_app(pipe)
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    app.close()


def _run_in_browser(driver, url, path, label, text, screenshot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, 60)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#files input[type=file]")))
    driver.find_element(By.CSS_SELECTOR, "#files input[type=file]").send_keys(path)
    wait.until(lambda d: Path(path).stem in d.find_element(By.ID, "files").text)  # uploaded (the name wraps)
    driver.find_element(By.XPATH, f"//label[normalize-space()='{label}']").click()
    if text:
        driver.find_element(By.CSS_SELECTOR, "#text textarea").send_keys(text)
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute("value"))
    answer = driver.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute("value")
    wait.until(lambda d: Path(path).stem in d.find_element(By.ID, "table").text)
    time.sleep(0.5)  # let the image finish rendering before the screenshot
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / screenshot))
    return answer


def test_browser_grounding_shows_the_answer_and_the_drawn_box(browser, app_url, media, pipe):
    from selenium.webdriver.common.by import By

    answer = _run_in_browser(browser, app_url, media["image"], "visual grounding", "the red circle",
                             "demo_grounding.png")
    (expected,), _ = predict(pipe, [media["image"]], "visual grounding", "the red circle",
                             *task_settings("visual grounding"))
    assert answer == expected[1] and answer.startswith("box ")
    source = browser.find_element(By.CSS_SELECTOR, "#drawn img").get_attribute("src")
    with urllib.request.urlopen(source) as response:
        shown = Image.open(io.BytesIO(response.read()))
    assert _red_pixels(shown) > 0  # the box, drawn on the uploaded image
    assert (ARTIFACTS / "demo_grounding.png").stat().st_size > 10_000


def test_browser_audio_caption(browser, app_url, media, pipe):
    answer = _run_in_browser(browser, app_url, media["audio"], "audio caption", "", "demo_audio_caption.png")
    (expected,), _ = predict(pipe, [media["audio"]], "audio caption", "", *task_settings("audio caption"))
    assert answer == expected[1] and answer


def test_the_library_does_not_import_the_demo_or_gradio(tmp_path):
    import subprocess
    import sys

    script = ("import sys, modeling_unival, processing, training, hub_upload, hub_upload.convert, training.stages\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'selenium') or m == 'hub_upload.demo'))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
