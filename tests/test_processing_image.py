"""Tests of UnivalImageProcessor and of the box quantisation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from media_fixtures import make_image, make_tone, write_audio
from processing.boxes import bin_token, bins_to_box, box_to_bins, extract_bins, quantize_box
from processing.constants import BIN_TOKEN_OFFSET
from processing.image_processing_unival import UnivalImageProcessor


def reference_pixels(image: Image.Image, size: int) -> np.ndarray:
    """The original pipeline: RGB, PIL bicubic resize to size x size, ToTensor (/255), Normalize(0.5, 0.5)."""
    array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), dtype=np.uint8)
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)
    return ((tensor - 0.5) / 0.5).numpy()


@pytest.fixture(scope="module")
def processor():
    return UnivalImageProcessor()


@pytest.mark.parametrize("height, width, size", [(37, 53, 480), (300, 120, 512), (64, 64, 384), (500, 700, 480)])
def test_matches_reference_formula(height, width, size, processor):
    image = make_image(height, width, seed=height)
    out = processor(image, size=size, return_tensors="pt")
    pixels = out["pixel_values"]
    assert pixels.shape == (1, 3, size, size) and pixels.dtype == torch.float32
    # Bit for bit: the base class rescales in float64 as torchvision's `ToTensor` divides exactly.
    np.testing.assert_array_equal(pixels[0].numpy(), reference_pixels(image, size))
    assert float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_converts_to_rgb(mode, processor):
    image = make_image(40, 50, seed=1, mode=mode)
    out = processor(image, size=64)
    np.testing.assert_array_equal(out["pixel_values"][0], reference_pixels(image, 64))


def test_transparency_is_dropped_not_composited(processor):
    """As the original's `convert("RGB")`: transparent pixels keep their colour (no white background)."""
    image = make_image(40, 50, seed=2, mode="RGBA")
    image.putalpha(0)
    out = processor(image, size=64)
    np.testing.assert_array_equal(out["pixel_values"][0], reference_pixels(image, 64))


def test_size_forms(processor):
    image = make_image(30, 40)
    assert processor(image, size=48)["pixel_values"].shape == (1, 3, 48, 48)
    assert processor(image, size=(32, 48))["pixel_values"].shape == (1, 3, 32, 48)
    assert processor(image, size={"height": 24, "width": 16})["pixel_values"].shape == (1, 3, 24, 16)
    assert UnivalImageProcessor(size=(20, 10)).size.width == 10
    for bad in (0, -3, {"height": 0, "width": 5}, {"shortest_edge": 20}):
        with pytest.raises(ValueError, match="size must be a positive"):
            processor(image, size=bad)


def test_default_size_and_settings(processor, tmp_path):
    assert processor.size.height == processor.size.width == 480
    assert UnivalImageProcessor(size=512)(make_image())["pixel_values"].shape == (1, 3, 512, 512)
    processor.save_pretrained(tmp_path)
    reloaded = UnivalImageProcessor.from_pretrained(tmp_path)
    image = make_image(33, 71)
    np.testing.assert_array_equal(reloaded(image)["pixel_values"], processor(image)["pixel_values"])


def test_input_kinds_give_the_same_pixels(processor, tmp_path):
    image = make_image(45, 70, seed=3)
    path = tmp_path / "image.png"
    image.save(path)
    array = np.asarray(image)
    expected = processor(image, size=96)["pixel_values"]
    for variant in (
        str(path),
        path,
        path.read_bytes(),
        array,
        array.transpose(2, 0, 1),
        array.astype(np.float32) / 255.0,
        torch.from_numpy(array.copy()).permute(2, 0, 1),
    ):
        np.testing.assert_allclose(processor(variant, size=96)["pixel_values"], expected, atol=1e-6)


def test_batch_and_image_sizes(processor):
    images = [make_image(30, 40, seed=1), make_image(50, 20, seed=2)]
    out = processor(images, size=64, return_image_sizes=True, return_tensors="pt")
    assert out["pixel_values"].shape == (2, 3, 64, 64)
    assert out["image_sizes"].tolist() == [[30, 40], [50, 20]] and out["image_sizes"].dtype == torch.int64
    assert "image_sizes" not in processor(images, size=64)
    assert processor.get_image_sizes(images) == [(30, 40), (50, 20)]


def test_get_image_sizes_reads_headers(processor, tmp_path):
    path = tmp_path / "big.jpg"
    make_image(120, 200).save(path)
    assert processor.get_image_sizes([str(path)]) == [(120, 200)]


# ---------------------------------------------------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------------------------------------------------
def test_corrupt_image_file(processor, tmp_path):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="image"):
        processor(str(path))


def test_truncated_image_file(processor, tmp_path):
    buffer = io.BytesIO()
    make_image(200, 200).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ValueError, match="truncated"):
        processor(str(path))


def test_empty_and_missing_and_non_image_files(processor, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        processor(str(empty))
    with pytest.raises(FileNotFoundError):
        processor(str(tmp_path / "missing.png"))
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not an image"):
        processor(str(text))
    wav = write_audio(tmp_path / "sound.wav", make_tone(0.1, 8000), 8000)
    with pytest.raises(ValueError, match="audio"):
        processor(wav)
    with pytest.raises(ValueError, match="URL"):
        processor("https://example.com/cat.jpg")


def test_wrong_types_and_options(processor):
    with pytest.raises(TypeError):
        processor(123)
    with pytest.raises(TypeError):
        processor({"image": 1})
    with pytest.raises(ValueError):
        processor(np.zeros((5, 5, 7), dtype=np.uint8))
    with pytest.raises(ValueError):
        processor(np.full((5, 5, 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        processor(np.full((5, 5, 3), 1000, dtype=np.int32))  # wide integers have no agreed range: refused
    with pytest.raises(TypeError, match="unexpected option"):
        processor(make_image(), crop_size=3)
    with pytest.raises(ValueError):
        processor([])


# ---------------------------------------------------------------------------------------------------------------------
# boxes
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image_size", [(512, 512), (480, 640), (375, 500), (1000, 300)])
def test_quantize_dequantize_within_one_bin(image_size):
    height, width = image_size
    rng = np.random.default_rng(height)
    for _ in range(50):
        x0, x1 = sorted(rng.uniform(0, width, 2))
        y0, y1 = sorted(rng.uniform(0, height, 2))
        box = [x0, y0, x1, y1]
        tokens = quantize_box(box, image_size)
        assert len(tokens.split()) == 4
        bins = extract_bins(tokens)
        restored = bins_to_box(bins, image_size)
        limits = [width / 999, height / 999] * 2
        for original, value, limit in zip(box, restored, limits):
            assert abs(original - value) <= limit / 2 + 1e-9


def test_quantization_matches_the_original_formula():
    # RefCOCO: 512x512 resize, box scaled by 512/w, 512/h, divided by 512, times 999, rounded
    width, height = 640.0, 480.0
    box = [100.0, 50.0, 300.0, 400.0]
    expected = [round(box[0] * 512 / width / 512 * 999), round(box[1] * 512 / height / 512 * 999),
                round(box[2] * 512 / width / 512 * 999), round(box[3] * 512 / height / 512 * 999)]
    assert box_to_bins(box, (height, width), processed_size=512) == expected
    assert quantize_box(box, (height, width)) == " ".join(bin_token(b) for b in expected)
    # decoding: bin / 999 * 512 / (512 / w)
    decoded = bins_to_box(expected, (height, width), processed_size=512)
    assert decoded[0] == pytest.approx(expected[0] / 999 * 512 / (512 / width))


def test_pretraining_normalisation_quirk():
    # boxes of a 384 px image divided by max_image_size=512 only reach bin ~749
    bins = box_to_bins([0, 0, 100, 100], (100, 100), processed_size=384, max_image_size=512)
    assert bins == [0, 0, round(384 / 512 * 999), round(384 / 512 * 999)]
    assert bins_to_box(bins, (100, 100), processed_size=384, max_image_size=512)[2] == pytest.approx(100, abs=0.2)


def test_invalid_boxes():
    with pytest.raises(ValueError, match="outside"):
        quantize_box([-5, 0, 10, 10], (100, 100))
    with pytest.raises(ValueError, match="outside"):
        quantize_box([0, 0, 101, 10], (100, 100))
    with pytest.raises(ValueError, match="x0 <= x1"):
        quantize_box([50, 0, 10, 10], (100, 100))
    with pytest.raises(ValueError, match="x0 <= x1"):
        quantize_box([0, 50, 10, 10], (100, 100), clip=True)
    with pytest.raises(ValueError, match="4"):
        quantize_box([0, 0, 10], (100, 100))
    with pytest.raises(ValueError):
        quantize_box([0, 0, float("nan"), 10], (100, 100))
    with pytest.raises(ValueError, match="image_size"):
        quantize_box([0, 0, 10, 10], (0, 100))
    assert quantize_box([-5, -1, 120, 50], (100, 100), clip=True) == quantize_box([0, 0, 100, 50], (100, 100))
    with pytest.raises(ValueError):
        bins_to_box([1, 2, 3], (10, 10))
    with pytest.raises(ValueError):
        bins_to_box([1, 2, 3, 1000], (10, 10))


def test_extract_bins_from_ids_and_text():
    ids = [0, BIN_TOKEN_OFFSET + 5, 10, BIN_TOKEN_OFFSET + 999, BIN_TOKEN_OFFSET + 1000, 2]
    assert extract_bins(ids) == [5, 999]
    assert extract_bins(torch.tensor(ids)) == [5, 999]
    assert extract_bins("<bin_1> x<bin_22><bin_1000>") == [1, 22]
