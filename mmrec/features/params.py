"""Schema of the `extract` section of params.yaml."""

from __future__ import annotations

from typing import Protocol

from pydantic import Field

from mmrec.data.params import DataParams
from mmrec.schema import StrictParams


class TextEncoderParams(StrictParams):
    encoder: str = "sentence-transformers:all-MiniLM-L6-v2"
    tokens: int = Field(32, ge=0)  # token states kept per item (0 = pooled vector only)


class ImageEncoderParams(StrictParams):
    encoder: str = "efficientnet-lite0"
    tokens: bool = True  # keep CLS + patch (or spatial-grid) token states


class ExtractParams(StrictParams):
    batch_size: int = Field(16, ge=1)
    num_workers: int = Field(2, ge=0)
    chunk_size: int = Field(512, ge=1)  # items per resumable chunk
    # Share of the items that have a modality whose input may fail to decode (corrupt image):
    # above it the stage fails naming count and examples instead of training on zero vectors.
    max_failed_fraction: float = Field(0.05, ge=0, le=1)
    text: TextEncoderParams = TextEncoderParams()
    image: ImageEncoderParams = ImageEncoderParams()


class ExtractConfig(Protocol):
    """The sections of params.yaml the extract stage reads (`mmrec.config.Params` fits)."""

    device: str
    data: DataParams
    extract: ExtractParams
