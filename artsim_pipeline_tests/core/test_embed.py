"""The batched image pipeline (DataLoader workers, failures recorded, normalised float32 vectors)
and the MiniLM text embeddings."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")

from artsim_pipeline.core.ml.embed import (  # noqa: E402
    EmbedResult,
    ImageDataset,
    auto_num_workers,
    collate_drop_failures,
    decode_image,
    embed_images,
    pick_device,
)
from artsim_pipeline.core.ml.text import TEXT_DIM, TEXT_MODEL_ID, artwork_text  # noqa: E402
from artsim_pipeline.resources.models import (  # noqa: E402
    embed_image_files,
    embed_texts,
    load_backbone,
    read_image_file,
    text_model_path,
)

SAMPLE_IMAGES = sorted((Path(__file__).resolve().parents[2] / "artsim_pipeline" / "sample" / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def lite0():
    return load_backbone()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """6 good sample images, a truncated JPEG, a text file, a missing path, interleaved."""
    assert len(SAMPLE_IMAGES) >= 6
    tmp = tmp_path_factory.mktemp("imgs")
    truncated = tmp / "truncated.jpg"
    data = SAMPLE_IMAGES[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    not_image = tmp / "notes.jpg"
    not_image.write_text("this is not a JPEG")
    good = [(f"img{i}", str(p)) for i, p in enumerate(SAMPLE_IMAGES[:6])]
    items = good[:2] + [("truncated", truncated)] + good[2:4] + [("text", not_image), ("missing", tmp / "nope.jpg")] + good[4:]
    return items


def load_image(path, draft_size=None):
    return decode_image(Path(path).read_bytes(), draft_size)


def test_embed_images_records_failures_and_normalises(lite0, images):
    result = embed_image_files(images, lite0, batch_size=4, num_workers=0)
    assert isinstance(result, EmbedResult)
    assert result.keys == [f"img{i}" for i in range(6)]  # input order, failures skipped
    assert [k for k, _ in result.failures] == ["truncated", "text", "missing"]
    reasons = dict(result.failures)
    assert reasons["truncated"].startswith("decode_error") and "truncated" in reasons["truncated"]
    assert reasons["text"].startswith("decode_error: UnidentifiedImageError")
    assert reasons["missing"].startswith("missing")
    assert result.vectors.shape == (6, 1280) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.model_id == "efficientnet_lite0@imagenet+pp1" and result.device == "cpu"
    assert result.seconds > 0 and result.images_per_second > 0
    # determinism, and independence from worker processes (num_workers=2)
    again = embed_image_files(images, lite0, batch_size=4, num_workers=2)
    assert again.keys == result.keys and again.failures == result.failures and again.num_workers == 2
    np.testing.assert_allclose(again.vectors, result.vectors, atol=1e-5)
    same = embed_image_files(images, lite0, batch_size=4, num_workers=0)
    np.testing.assert_array_equal(same.vectors, result.vectors)


def test_vectors_match_the_backbone_on_one_image(lite0, images):
    result = embed_image_files(images[:1], lite0, num_workers=0)
    x = lite0.preprocess(load_image(images[0][1]))[None]
    with torch.inference_mode():
        direct = torch.nn.functional.normalize(lite0.forward(x), dim=-1).numpy()
    np.testing.assert_allclose(result.vectors, direct, atol=1e-5)


def test_all_failures_and_empty_input(lite0, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = embed_image_files([("a", bad), ("b", tmp_path / "gone.jpg")], lite0, batch_size=1, num_workers=0)
    assert result.keys == [] and result.vectors.shape == (0, 1280) and result.vectors.dtype == np.float32
    assert [k for k, _ in result.failures] == ["a", "b"]
    empty = embed_images([], lite0)
    assert len(empty) == 0 and empty.failures == []


def test_progress_is_reported(lite0, images):
    seen = []
    embed_image_files(images[:5], lite0, batch_size=4, num_workers=0, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 5), (5, 5)]


def test_collate_drops_failures():
    t = torch.zeros(3, 4, 4)
    batch = collate_drop_failures([("a", t, None), ("b", None, "decode_error: x"), ("c", t + 1, None)])
    assert batch.keys == ["a", "c"] and batch.failures == [("b", "decode_error: x")]
    assert batch.pixels.shape == (2, 3, 4, 4)
    assert collate_drop_failures([("b", None, "missing")]).pixels is None


def test_dataset_is_picklable(lite0, images):
    import pickle

    ds = ImageDataset(images, lite0.preprocessor, 224, read_image_file)
    assert len(pickle.dumps(ds)) < 10_000
    key, tensor, reason = pickle.loads(pickle.dumps(ds))[0]
    assert key == "img0" and reason is None and tensor.shape == (3, 224, 224)


def test_load_image_orients_converts_and_drafts(tmp_path):
    from PIL import Image

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.new("RGB", (40, 20), "red").save(rotated, exif=exif)
    assert load_image(rotated).size == (20, 40)
    palette = tmp_path / "p.png"
    Image.new("P", (10, 10)).save(palette)
    assert load_image(palette).mode == "RGB"
    big = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 800), "blue").save(big)
    assert load_image(big).size == (1000, 800)
    assert load_image(big, draft_size=224).size == (500, 400)  # DCT 1/2: both sides stay >= 224


def test_images_in_memory_need_no_file(lite0, images):
    """Core embeds bytes: given as the items themselves, or through a ``read(source)`` callable;
    the vectors and failures are those of the same images read from files."""
    from_files = embed_image_files(images, lite0, batch_size=4, num_workers=0)
    blobs = {key: Path(path).read_bytes() for key, path in images if Path(path).is_file()}
    in_memory = embed_images(list(blobs.items()), lite0, batch_size=4, num_workers=0)
    assert in_memory.keys == from_files.keys
    assert [k for k, _ in in_memory.failures] == ["truncated", "text"]
    np.testing.assert_array_equal(in_memory.vectors, from_files.vectors)

    def read(key):
        if key not in blobs:
            raise FileNotFoundError(2, "no such image", key)
        return blobs[key]

    by_key = embed_images([(key, key) for key, _ in images], lite0, batch_size=4, num_workers=0, read=read)
    assert by_key.keys == from_files.keys
    assert dict(by_key.failures)["missing"] == "missing: missing"
    np.testing.assert_array_equal(by_key.vectors, from_files.vectors)


def test_decode_image_reads_no_path():
    with pytest.raises(Exception):  # a path is not an encoded image
        decode_image(str(SAMPLE_IMAGES[0]).encode())
    assert decode_image(SAMPLE_IMAGES[0].read_bytes()).mode == "RGB"


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_hf_backbone_through_the_pipeline(tmp_path, images):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8)).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    backbone = load_backbone(f"hf:{tmp_path}")
    result = embed_image_files(images, backbone, batch_size=4, num_workers=2)
    assert result.vectors.shape == (6, 32) and len(result.failures) == 3
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.model_id.startswith(f"hf:{tmp_path}+pp1.")


# --------------------------------------------------------------------------- text
def test_text_embeddings_rank_similar_sentences_closer():
    texts = [
        "Oil painting of sailing ships in a storm at sea",
        "A stormy seascape with a sailing vessel",
        "Blue and white porcelain teapot with flowers",
        "",
    ]
    v = embed_texts(texts, batch_size=2)
    assert v.shape == (4, TEXT_DIM) == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert v[1] @ v[0] > v[1] @ v[2] + 0.2
    # order is preserved despite length-sorted batches; batching does not change vectors
    one_by_one = np.vstack([embed_texts([t]) for t in texts])
    np.testing.assert_allclose(v, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(embed_texts(texts, batch_size=2), v)
    assert embed_texts([]).shape == (0, 384)


# Recorded with sentence-transformers 6.2.0: SentenceTransformer(text_model_path()).encode(texts),
# dims 0-7, 100 and 383 (the third text is truncated at 256 word pieces).
ST_REFERENCE = [
    [-0.066427, 0.027058, 0.048593, 0.003755, 0.034197, 0.052197, 0.03783, -0.002264, -0.003524, 0.012899],
    [-0.078846, 0.023356, -0.045594, 0.017851, 0.026984, -0.046979, 0.02055, 0.101395, 0.017941, 0.079625],
    [-0.002061, -0.037469, -0.031494, -0.042564, -0.100168, -0.082647, -0.03391, 0.000215, -0.025753, 0.005389],
]


def test_text_embeddings_equal_sentence_transformers():
    texts = ["Portrait of a woman, oil on canvas", "Japanese woodblock print of Mount Fuji", "x " * 400]
    v = embed_texts(texts)
    np.testing.assert_allclose(v[:, list(range(8)) + [100, 383]], np.array(ST_REFERENCE), atol=2e-5)
    assert TEXT_MODEL_ID == "sentence-transformers/all-MiniLM-L6-v2"


def test_text_model_path_override(tmp_path):
    with pytest.raises(OSError):
        embed_texts(["hello"], model_path=tmp_path / "nothing-here")
    v = embed_texts(["hello"], model_path=text_model_path())
    np.testing.assert_array_equal(v, embed_texts(["hello"]))


def test_artwork_text():
    row = {
        "title": "  Wheat Field with Cypresses ",
        "artists": ["Vincent van Gogh", "vincent van gogh"],
        "medium": "Oil on canvas",
        "classification": "Paintings",
        "object_type": "Painting",
        "culture": "Dutch",
        "tags": ["Landscapes", "Cypresses", "Wheat"],
    }
    assert artwork_text(row) == (
        "Wheat Field with Cypresses. By Vincent van Gogh. Oil on canvas. Paintings, Dutch. "
        "Tags: Landscapes, Cypresses, Wheat."
    )
    sparse = {"title": None, "artists": [], "medium": None, "classification": "Prints", "object_type": "woodcut",
              "culture": None, "tags": np.array(["Mountains"])}
    assert artwork_text(sparse) == "Prints, woodcut. Tags: Mountains."
    assert artwork_text({}) == ""


def test_no_decode_workers_inside_a_daemonic_process():
    """A Celery prefork child is daemonic and may not start processes: embed in-process there."""
    import multiprocessing

    import torch

    cpu = torch.device("cpu")
    assert auto_num_workers(cpu, 1000, 32) >= 1  # this process may start decode workers (2+ cores)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(auto_num_workers(cpu, 1000, 32)), daemon=True)
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == 0
