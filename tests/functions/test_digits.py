"""The digits function: the shipped CNN on held-out images, as PNG and JPEG bytes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from aiservice_functions import digits
from aiservice_functions.cloudevents_http import make_event
from aiservice_functions.models.uri import resolve
from aiservice_functions.runtime.function import Rejected

from tests.support.digits import as_image, held_out


@pytest.fixture(scope="module")
def model() -> digits.DigitsModel:
    return digits.load(resolve(digits.MODEL_V1).path, "v1")


def _event(data: object, content_type: str | None = None) -> object:
    attrs = {"id": "1", "source": "/t", "type": "com.example.digit"}
    if content_type:
        attrs["datacontenttype"] = content_type
    return make_event(attrs, data)


def test_the_shipped_model_is_small() -> None:
    path = resolve(digits.MODEL_V1).path
    assert isinstance(path, Path) and path.stat().st_size < 1_000_000


def test_held_out_png_images_are_read_as_trained(model: digits.DigitsModel) -> None:
    """Through PNG bytes, the held-out fifth is classified about as well as the README says."""
    samples = held_out(200)
    items = [digits.decode(_event(as_image(px), "image/png")) for px, _ in samples]
    replies = digits.infer(model, items)
    correct = sum(r["digit"] == label for r, (_, label) in zip(replies, samples, strict=True))
    assert correct / len(samples) >= 0.95
    assert all(set(r) == {"digit", "confidence"} and 0 < r["confidence"] <= 1 for r in replies)


def test_jpeg_dark_ink_on_white_and_base64_json_read_alike(model: digits.DigitsModel) -> None:
    px, label = held_out(2)[1]  # [0] is one the model gets wrong
    png = digits.decode(_event(as_image(px)))
    jpeg = digits.decode(_event(as_image(px, "JPEG", scale=16)))
    paper = digits.decode(_event(as_image(px, inverted=True)))
    inline = digits.decode(_event({"image": base64.b64encode(as_image(px)).decode()}))
    answers = digits.infer(model, [png, jpeg, paper, inline])
    assert {a["digit"] for a in answers} == {label}
    assert inline == png and paper == png


def test_a_batch_answers_as_single_events(model: digits.DigitsModel) -> None:
    items = [digits.decode(_event(as_image(px))) for px, _ in held_out(8)]
    assert digits.infer(model, items) == [digits.infer(model, [i])[0] for i in items]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"this is not an image", "data"),
        ({"text": "no image"}, "data"),
        ({"image": "***"}, "image"),
        ("just text", "data"),
    ],
)
def test_what_is_not_an_image_is_refused_naming_the_field(data: object, field: str) -> None:
    with pytest.raises(Rejected) as err:
        digits.decode(_event(data))
    assert err.value.status == 422 and err.value.field == field


def test_other_image_formats_and_huge_images_are_refused() -> None:
    from PIL import Image

    gif = io.BytesIO()
    Image.new("L", (8, 8)).save(gif, format="GIF")
    with pytest.raises(Rejected, match="GIF image"):
        digits.decode(_event(gif.getvalue()))
    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")  # small file, 25 Mpixels
    with pytest.raises(Rejected, match="too large"):
        digits.decode(_event(huge.getvalue()))
