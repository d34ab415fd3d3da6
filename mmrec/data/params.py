"""Schema of the `data` section of params.yaml (owned by the ingest stage)."""

from __future__ import annotations

from typing import Literal, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmrec.data.images import DEFAULT_MAX_PIXELS
from mmrec.paths import check_data_name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextParams(_Strict):
    # Amazon: title, brand, category, description; H&M: the ODMT paper's five article columns.
    amazon_fields: list[str] = ["title", "brand", "category", "description"]
    hm_fields: list[str] = ["prod_name", "product_type_name", "product_group_name",
                            "graphical_appearance_name", "colour_group_name"]
    max_chars: int = Field(512, gt=0)


class ImageDownloadParams(_Strict):
    enabled: bool = True
    workers: int = Field(16, ge=1, le=64)  # concurrent downloads (bounded: one host's politeness)
    timeout_s: float = Field(10.0, gt=0)  # per socket operation
    deadline_s: float = Field(30.0, gt=0)  # per download attempt, in total (a trickle cannot hold it)
    retries: int = Field(3, ge=0)
    max_bytes: int = Field(10_000_000, gt=0)
    # Checked from the header before decoding, here and in extraction (decompression bombs).
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    # Loopback/private/link-local hosts are refused (SSRF); a mirror on a LAN can be allowed.
    allow_private: bool = False
    allow_networks: list[str] = []  # CIDRs allowed even when private, e.g. ["10.1.2.0/24"]


class TimeSplitParams(_Strict):
    # Unix seconds or ISO dates (YYYY-MM-DD); interactions at or after the cut go to that split.
    valid_start: Optional[str] = None
    test_start: Optional[str] = None


class DataParams(_Strict):
    # Outputs go to data/<name>/: one plain folder name, never `..`, `.` or a path.
    name: str = "sample"
    source: Literal["amazon2014", "amazon2018", "amazon2023", "hm"] = "amazon2018"
    raw_dir: str = "data/raw/sample"
    category: Optional[str] = None  # Amazon file stem, e.g. Arts_Crafts_and_Sewing; None = the only one present
    min_user_interactions: int = Field(5, ge=1)
    item_core: int = Field(0, ge=0)  # iterative item k-core; 0 = off
    max_history: int = Field(15, ge=3)
    require: list[Literal["text", "image"]] = ["text", "image"]
    split: Literal["leave_one_out", "global_time"] = "leave_one_out"
    # A truncated/corrupt .gz is an error naming the line reached; true = ingest the complete
    # lines before the damage (counted in the report, shouted in the summary line).
    allow_truncated: bool = False
    time_split: TimeSplitParams = TimeSplitParams()
    text: TextParams = TextParams()
    images: ImageDownloadParams = ImageDownloadParams()

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return check_data_name(v)  # the same rule `mmrec recommend`'s fast path applies


class IngestConfig(Protocol):
    """The sections of params.yaml the ingest stage reads (`mmrec.config.Params` fits)."""

    seed: int
    data: DataParams
