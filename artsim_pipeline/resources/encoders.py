"""Which image backbone and text model the pipeline embeds with, shared by every stage that
embeds (the embedding assets, training, and `artsim similar --image`)."""

from typing import Optional

from dagster import ConfigurableResource
from pydantic import Field

from artsim_pipeline.resources.config import MergingConfig
from artsim_pipeline.core.ml.backbones import DEFAULT_BACKBONE


class EncoderResource(MergingConfig, ConfigurableResource):
    """Backbone choice and inference settings. Heavy imports happen only when a model is loaded."""

    backbone: str = Field(default=DEFAULT_BACKBONE,
                          description='"efficientnet_lite0:s5grid<g>" (regional), "efficientnet_lite0" (pooled) or "hf:<hub id or local path>"')
    batch_size: int = 32
    num_workers: Optional[int] = Field(default=None, description="DataLoader workers (None: automatic)")
    device: Optional[str] = Field(default=None, description="None: CUDA when available, else CPU")
    text_model_path: Optional[str] = Field(default=None, description="None: the bundled all-MiniLM-L6-v2")
    text_batch_size: int = 64

    def load_backbone(self):
        from artsim_pipeline.resources.models import load_backbone

        return load_backbone(self.backbone)

    def embed_image_files(self, items, backbone, progress=None):
        """``(key, path)`` image files -> ``EmbedResult`` with this resource's batch size,
        workers and device (files read by ``resources.models``, decoded and run by core)."""
        from artsim_pipeline.resources.models import embed_image_files

        return embed_image_files(items, backbone, batch_size=self.batch_size, num_workers=self.num_workers,
                                 device=self.device, progress=progress)

    def embed_texts(self, texts):
        """Texts -> L2-normalised vectors by the configured text model (``text_model_path``,
        None: the bundled all-MiniLM-L6-v2)."""
        from artsim_pipeline.resources.models import embed_texts

        return embed_texts(texts, batch_size=self.text_batch_size, device=self.device, model_path=self.text_model_path)

    def image_model_id(self) -> str:
        """The id image vectors are keyed by; EfficientNet's is known without loading weights."""
        from artsim_pipeline.core.ml.backbones import parse_backbone_spec

        return parse_backbone_spec(self.backbone).known_model_id() or self.load_backbone().model_id

    @property
    def is_hf(self) -> bool:
        """Whether the backbone is a Hugging Face model (a CLIP / SigLIP one may have a text tower)."""
        from artsim_pipeline.core.ml.backbones import parse_backbone_spec

        return parse_backbone_spec(self.backbone).is_hf

    def text_model_id(self) -> str:
        from artsim_pipeline.core.ml.text import TEXT_MODEL_ID

        return self.text_model_path or TEXT_MODEL_ID
