import io

import pytest
from PIL import Image

from artsim_pipeline.core.images import ImageRejected, check_image


def png_bytes(width=32, height=16):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_valid_image_is_checked():
    content = png_bytes()
    checked = check_image(content)
    assert (checked.width, checked.height, checked.extension) == (32, 16, "png")
    # storing it once by content: resources/test_artefacts.py


@pytest.mark.parametrize(
    "content, status",
    [(b"", "empty"), (b"<html>not an image</html>", "decode_error"), (png_bytes()[:60], "decode_error")],
)
def test_broken_images_are_rejected_with_a_reason(content, status):
    with pytest.raises(ImageRejected) as info:
        check_image(content)
    assert info.value.status == status


def test_the_pixel_limit_stops_decompression_bombs():
    with pytest.raises(ImageRejected) as info:
        check_image(png_bytes(400, 400), max_pixels=100_000)
    assert info.value.status == "too_large"
