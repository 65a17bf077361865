"""The heuristic that says an input looks unlike the training images (service/ml/familiar.py): what
it flags, and how rarely it flags real digits. `-s` prints the figures docs/performance.md quotes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from service.imaging import preprocess_upload
from service.ml.data import load_dataset
from service.ml.familiar import InputProfile, input_warning
from tests.test_imaging import LIMITS, encode, thin_pen


@pytest.fixture(scope="module")
def profile(mnist):
    return InputProfile.of(mnist.train_images)


def _upload(im: Image.Image) -> np.ndarray:
    return preprocess_upload(encode(im), **LIMITS)


@pytest.mark.slow  # profiles of the real datasets
@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_few_test_images_are_flagged(dataset, data_dir):
    data = load_dataset(dataset, data_dir, download=False)
    flagged = sum(map(bool, InputProfile.of(data.train_images).unlike(data.test_images)))
    print(f"\n{dataset}: {flagged} of {len(data.test_images):,} test images flagged")
    assert flagged / len(data.test_images) <= 0.005


@pytest.mark.slow  # profiles of the real datasets
@pytest.mark.realdata
def test_uploads_of_real_digits_are_not_flagged(profile, mnist):
    """Test digits as a user would send them: thin-pen photos, and plain upscaled scans either way round."""
    images = mnist.test_images[:200]
    pens = [preprocess_upload(thin_pen(x), **LIMITS) for x in images[:100]]
    scans = []
    for k, x in enumerate(images[100:]):
        gray = np.kron(x.reshape(28, 28) * 255, np.ones((6, 6)))
        scans.append(_upload(Image.fromarray((255 - gray if k % 2 else gray).astype(np.uint8))))
    flagged = sum(map(bool, profile.unlike(np.stack(pens + scans))))
    print(f"\n{flagged} of 200 uploaded test digits flagged")
    assert flagged <= 1


@pytest.mark.realdata
def test_text_blots_and_off_centre_digits_are_flagged(profile, mnist):
    line = Image.new("L", (120, 24), 255)
    ImageDraw.Draw(line).text((4, 6), "Hello world", fill=0)
    square = Image.new("L", (200, 200), 0)
    ImageDraw.Draw(square).rectangle((50, 50, 150, 150), fill=255)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    corner = np.zeros((28, 28), np.float32)
    corner[:20, :20] = mnist.test_images[0].reshape(28, 28)[4:24, 4:24]
    inputs = [_upload(line), _upload(square), _upload(noise), corner.ravel(), mnist.test_images[0]]
    said = profile.unlike(np.stack(inputs))
    assert "pixels tall" in said[0][0]
    assert said[1][0].startswith("ink mass") and said[2][0].startswith("ink mass")
    assert said[3][0].startswith("centre of mass")
    assert said[4] == []


def test_the_warning_names_what_is_out_and_an_unsure_model():
    assert input_warning([], 0.99) is None
    text = input_warning(["ink mass 400 (the training images: 28 to 228)"], 0.99)
    assert text is not None and "unlike the training images (ink mass 400" in text and "unsure" not in text
    assert input_warning([], 0.31) == "The model is unsure: its top class has 31.00 % probability."
    assert input_warning([], 0.1692) == "The model is unsure: its top class has 16.92 % probability."
    assert (
        input_warning([], 0.29) == "The model is unsure: its top class has 29.00 % probability."
    )  # not 28.99
    # under 50 % is never printed as 50 %
    assert input_warning([], 0.49997) == "The model is unsure: its top class has 49.99 % probability."
    assert (
        input_warning([], 0.16925) == "The model is unsure: its top class has 16.93 % probability."
    )  # as :.2%


def test_a_blank_image_is_flagged_for_its_ink_not_for_a_centre_it_lacks(profile):
    """No ink has no centre of mass: the corner's distance, 19.8 pixels, was reported as measured."""
    (said,) = profile.unlike(np.zeros((1, 784), np.float32))
    assert said[0].startswith("ink mass 0 ") and not any("centre of mass" in part for part in said), said
