"""Image backbones: EfficientNet-Lite0 weights load strictly and classify sensibly; HF models
load through the same ``load_backbone("hf:...")`` path production uses (tiny, built from configs)."""

from __future__ import annotations

import math
import os
import pickle

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
from PIL import Image, ImageDraw  # noqa: E402

from artsim_pipeline.core.ml import efficientnet_lite as E  # noqa: E402
from artsim_pipeline.core.ml.backbones import (  # noqa: E402
    EFFICIENTNET_LITE0_ID,
    EfficientNetLite0Backbone,
    HFImageBackbone,
    ImageBackbone,
    ResizeCenterCrop,
    pooler_left_uninitialised,
)
from artsim_pipeline.resources import models  # noqa: E402
from artsim_pipeline.resources.models import load_backbone  # noqa: E402

ANALOG_CLOCK, WALL_CLOCK, CROSSWORD_PUZZLE = 409, 892, 918  # ImageNet-1k class indices


def render_clock() -> Image.Image:
    """A plain analog clock face: 12 ticks, two hands, on grey."""
    img = Image.new("RGB", (224, 224), (200, 200, 200))
    d = ImageDraw.Draw(img)
    d.ellipse([20, 20, 204, 204], fill="white", outline="black", width=6)
    for h in range(12):
        a = math.radians(h * 30)
        d.line([112 + 80 * math.sin(a), 112 - 80 * math.cos(a), 112 + 92 * math.sin(a), 112 - 92 * math.cos(a)], fill="black", width=5)
    d.line([112, 112, 112, 50], fill="black", width=6)
    d.line([112, 112, 160, 112], fill="black", width=4)
    return img


def render_checkerboard(n: int = 8) -> Image.Image:
    img = Image.new("RGB", (224, 224), "white")
    d = ImageDraw.Draw(img)
    s = 224 // n
    for i in range(n):
        for j in range(n):
            if (i + j) % 2:
                d.rectangle([i * s, j * s, i * s + s - 1, j * s + s - 1], fill="black")
    return img


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0")


def probs(backbone, image):
    with torch.inference_mode():
        return backbone.classify(backbone.preprocess(image)[None]).softmax(-1)[0]


def test_checkpoint_keys_rename_onto_the_model_exactly():
    state = torch.load(models.efficientnet_lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    renamed = E.rename_checkpoint_keys(state)
    assert len(renamed) == len(state) == 296
    assert set(renamed) == set(E.EfficientNetLite0().state_dict())  # no missing, no unexpected
    for key in ("blocks.3.conv_dw.weight", "bn_head.running_var", "classifier.weight"):
        assert key in renamed
    assert renamed["blocks.3.conv_dw.weight"].shape == (144, 1, 5, 5)


def test_load_is_strict():
    model = models.load_efficientnet_lite0()
    assert not model.training
    state = E.rename_checkpoint_keys(models.read_efficientnet_lite0_state())
    state.pop("blocks.7.bn_dw.running_mean")
    with pytest.raises(RuntimeError, match="Missing key"):
        E.EfficientNetLite0().load_state_dict(state, strict=True)
    with pytest.raises(KeyError):
        E.rename_checkpoint_keys({"_mystery.weight": torch.zeros(1)})


def test_tf_same_padding():
    assert E._same_pad(224, 3, 2) == (0, 1)
    assert E._same_pad(112, 5, 2) == (1, 2)
    assert E._same_pad(225, 3, 2) == (1, 1)
    conv = E.Conv2dSame(2, 2, 5, stride=2, groups=2)
    x = torch.randn(1, 2, 16, 16)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 2, 1, 2)), conv.weight, stride=2, groups=2)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape[-2:] == (8, 8)


def test_bn_eps_is_tensorflows():
    assert all(m.eps == 1e-3 for m in E.EfficientNetLite0().modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_top1_of_rendered_patterns_is_stable(lite0):
    # Recorded with the packaged weights: the clock face is an "analog clock" (~0.86, then
    # "wall clock"), the checkerboard a "crossword puzzle" (~0.10, 3x the runner-up).
    clock = probs(lite0, render_clock())
    assert clock.argmax().item() == ANALOG_CLOCK
    assert clock[ANALOG_CLOCK] > 0.6
    assert clock.topk(2).indices.tolist() == [ANALOG_CLOCK, WALL_CLOCK]
    board = probs(lite0, render_checkerboard())
    assert board.argmax().item() == CROSSWORD_PUZZLE
    top2 = board.topk(2).values
    assert top2[0] > 2 * top2[1]


def test_flat_grey_is_not_confident(lite0):
    assert probs(lite0, Image.new("RGB", (224, 224), (128, 128, 128))).max() < 0.05


def test_features_shape_and_variants_agree(lite0):
    x = torch.stack([lite0.preprocess(render_clock()), lite0.preprocess(render_checkerboard())])
    plain = load_backbone("efficientnet_lite0", fuse_bn=False, channels_last=False)
    with torch.inference_mode():
        fused = lite0.forward(x)
        reference = plain.forward(x)
    assert fused.shape == (2, 1280) and fused.dtype == torch.float32
    torch.testing.assert_close(fused, reference, atol=1e-4, rtol=1e-4)


def test_efficientnet_backbone_contract(lite0):
    assert isinstance(lite0, ImageBackbone)
    assert lite0.backbone_id == EFFICIENTNET_LITE0_ID == "efficientnet_lite0@imagenet"
    assert lite0.dim == 1280
    assert lite0.model_id == "efficientnet_lite0@imagenet+pp1"
    assert load_backbone("efficientnet_lite0@imagenet").backbone_id == lite0.backbone_id
    t = lite0.preprocess(Image.new("L", (300, 150), 255))  # any mode, any aspect
    assert t.shape == (3, 224, 224) and t.dtype == torch.float32
    assert torch.allclose(t, torch.ones_like(t))  # white -> +1 with mean = std = 0.5
    blob = pickle.dumps(lite0.preprocessor)  # workers get the preprocessor, not the model
    assert len(blob) < 2_000
    assert pickle.loads(blob) == lite0.preprocessor == ResizeCenterCrop(224)


def test_regional_stage5_backbone(lite0):
    grid = load_backbone("efficientnet_lite0:s5grid6")
    assert grid.model_id == "efficientnet_lite0@imagenet/s5grid6+pp1" != lite0.model_id
    assert grid.dim == 112 * 36 and grid.preprocessor == lite0.preprocessor
    from artsim_pipeline.resources.encoders import EncoderResource

    assert EncoderResource(backbone="efficientnet_lite0:s5grid6").image_model_id() == grid.model_id  # known without loading
    x = torch.stack([lite0.preprocess(render_clock()), lite0.preprocess(render_checkerboard())])
    m = load_backbone("efficientnet_lite0", fuse_bn=False, channels_last=False).module
    with torch.inference_mode():
        v = grid.forward(x)
        stage5 = m.blocks[:11](m.act(m.bn_stem(m.conv_stem(x))))
    assert stage5.shape == (2, 112, 14, 14) and v.shape == (2, grid.dim)
    torch.testing.assert_close(v, torch.nn.functional.adaptive_avg_pool2d(stage5, 6).flatten(1), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("efficientnet_lite0:s5gridx")


def test_unknown_spec_is_refused():
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("resnet9000")
    with pytest.raises(ValueError):
        load_backbone("hf:")


# --------------------------------------------------------------------------- Hugging Face
def _save_tiny_vit(path, cls=None):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8)
    (cls or ViTModel)(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_hf_tiny_vit_roundtrip(tmp_path):
    path = _save_tiny_vit(tmp_path / "vit")
    backbone = load_backbone(f"hf:{path}")
    assert backbone.backbone_id == f"hf:{path}"
    assert backbone.pooling == "cls" and backbone.dim == 32
    assert backbone.preprocess_version.startswith("1.")
    assert backbone.preprocessor.draft_size == 32
    x = torch.stack([backbone.preprocess(render_clock()), backbone.preprocess(Image.new("RGB", (50, 70), "red"))])
    assert x.shape == (2, 3, 32, 32)
    with torch.inference_mode():
        a, b = backbone.forward(x), backbone.forward(x)
        hidden = backbone.module(pixel_values=x).last_hidden_state
    assert a.shape == (2, 32)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, hidden[:, 0])
    pickle.dumps(backbone.preprocessor)


def test_hf_classifier_checkpoint_does_not_use_a_random_pooler(tmp_path):
    from transformers import ViTForImageClassification

    path = _save_tiny_vit(tmp_path / "vitcls", cls=ViTForImageClassification)
    first = load_backbone(f"hf:{path}")
    second = load_backbone(f"hf:{path}")
    assert first.pooling == "cls"
    x = first.preprocess(render_clock())[None]
    with torch.inference_mode():
        torch.testing.assert_close(first.forward(x), second.forward(x))


def test_hf_missing_weights_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    path = _save_tiny_vit(tmp_path / "broken")
    weights = load_file(path / "model.safetensors")
    weights.pop("embeddings.cls_token")
    save_file(weights, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="uninitialised"):
        load_backbone(f"hf:{path}")


def test_hf_tiny_clip_uses_image_embeds(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config = CLIPConfig(
        text_config=dict(tiny, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tiny, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    backbone = load_backbone(f"hf:{tmp_path / 'clip'}")
    assert backbone.pooling == "image_embeds" and backbone.dim == 16
    with torch.inference_mode():
        out = backbone.forward(backbone.preprocess(render_clock())[None])
    assert out.shape == (1, 16)


def test_no_torchvision_or_timm(tmp_path):
    """Both backbones work without torchvision (whose CUDA build breaks beside CPU torch) or timm."""
    import importlib.util
    import sys

    load_backbone(f"hf:{_save_tiny_vit(tmp_path / 'v')}")
    assert "torchvision" not in sys.modules and "timm" not in sys.modules
    assert importlib.util.find_spec("timm") is None


def test_encoder_resource_knows_the_default_model_id_without_loading(lite0):
    from artsim_pipeline.resources.encoders import EncoderResource

    assert EncoderResource(backbone="efficientnet_lite0").image_model_id() == lite0.model_id
    assert EncoderResource().image_model_id() == load_backbone(EncoderResource().backbone).model_id
    assert EncoderResource().backbone == "efficientnet_lite0"  # chosen on the real photographs


# --------------------------------------------------------------------------- built in memory
def test_core_builds_backbones_from_modules_in_memory():
    """Core takes models already loaded: no checkpoint or directory is read to build them."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    lite = EfficientNetLite0Backbone(E.EfficientNetLite0().eval(), fuse_bn=False, channels_last=False)
    assert lite.dim == 1280 and lite.forward(torch.zeros(1, 3, 224, 224)).shape == (1, 1280)
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8)
    vit = HFImageBackbone("in-memory/vit", ViTModel(config), ViTImageProcessor(size={"height": 32, "width": 32}),
                          loading_info={"missing_keys": ["pooler.dense.weight"]})
    assert vit.backbone_id == "hf:in-memory/vit" and vit.pooling == "cls" and vit.dim == 32
    with pytest.raises(ValueError, match="without a tokenizer|no text tower"):
        vit.embed_text(["a clock"])


def test_loading_info_refuses_uninitialised_weights():
    assert pooler_left_uninitialised("m", {"missing_keys": ["pooler.dense.bias"]}) is True
    assert pooler_left_uninitialised("m", {"missing_keys": [], "mismatched_keys": []}) is False
    assert pooler_left_uninitialised("m", None) is False
    with pytest.raises(ValueError, match="uninitialised"):
        pooler_left_uninitialised("m", {"missing_keys": ["embeddings.cls_token", "pooler.dense.bias"]})
    with pytest.raises(ValueError, match="uninitialised"):
        pooler_left_uninitialised("m", {"mismatched_keys": [("w", (1,), (2,))]})
