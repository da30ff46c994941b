"""The README's screenshot of the web demo (`hub_upload.demo`), taken in headless Chromium.

    python examples/demo_screenshot.py --model outputs/demo/video_audio/final --out docs/demo.png \
        --task "caption (image, video or audio)" --text "" \
        --image outputs/synthetic-world/media/test/image/test-img-000002.png     # the README's (a held-out scene)
    python examples/demo_screenshot.py --out docs/demo.png      # a random-weight unival-tiny: the UI, not answers

It uploads an image (by default a drawn scene of two shapes), runs a task (by default visual grounding of "the red
circle"), and saves the page.
Needs chromium and chromedriver (`apt-get install chromium chromium-driver`) and `pip install ".[demo]" selenium`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw


def scene(path: Path) -> str:
    image = Image.new("RGB", (480, 360), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 200, 200), fill=(220, 30, 30))
    draw.rectangle((280, 160, 420, 300), fill=(30, 60, 220))
    image.save(path)
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a saved UnIVAL folder (default: a random unival-tiny)")
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--task", default="visual grounding")
    parser.add_argument("--text", default="the red circle")
    parser.add_argument("--image", type=Path, default=None, help="the image to upload (default: a drawn scene)")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from hub_upload.demo import build_app, load_pipeline
    from modeling_unival.presets import save_preset

    work = Path(tempfile.mkdtemp())
    model = args.model or str(save_preset("unival-tiny", work / "unival-tiny"))
    image = str(args.image.resolve()) if args.image else scene(work / "scene.png")
    app = build_app(load_pipeline(model))
    app.launch(server_name="127.0.0.1", server_port=7899, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get("http://127.0.0.1:7899")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#files input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#files input[type=file]").send_keys(image)
        wait.until(lambda d: Path(image).stem in d.find_element(By.ID, "files").text)
        driver.find_element(By.XPATH, f"//label[normalize-space()='{args.task}']").click()
        driver.find_element(By.CSS_SELECTOR, "#text textarea").send_keys(args.text)
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute("value"))
        time.sleep(1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"[screenshot] {args.out}")
    finally:
        driver.quit()
        app.close()


if __name__ == "__main__":
    main()
