"""Schema of the `data` section of params.yaml (owned by the ingest stage)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Protocol

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from mmrec.data.images import DEFAULT_MAX_PIXELS
from mmrec.data.sources import get_source, source_names
from mmrec.paths import check_data_name
from mmrec.schema import OpenParams, StrictParams


class TextParams(StrictParams):
    # Amazon: title, brand, category, description; H&M: the ODMT paper's five article columns.
    amazon_fields: list[str] = ["title", "brand", "category", "description"]
    hm_fields: list[str] = ["prod_name", "product_type_name", "product_group_name",
                            "graphical_appearance_name", "colour_group_name"]
    max_chars: int = Field(512, gt=0)


class ImageDownloadParams(StrictParams):
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


class TimeSplitParams(StrictParams):
    # Unix seconds or ISO dates (YYYY-MM-DD); interactions at or after the cut go to that split.
    valid_start: Optional[str] = None
    test_start: Optional[str] = None


class DataParams(OpenParams):
    # Besides the keys below, only `data.<source>` sections: a registered reader's own settings
    # (mmrec/data/sources/), validated by its params class. Any other key is an error.

    # Outputs go to data/<name>/: one plain folder name, never `..`, `.` or a path.
    name: str = "sample"
    # A registered reader (mmrec/data/sources/): amazon2014, amazon2018, amazon2023, hm, table.
    source: str = "amazon2018"
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

    @field_validator("source")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in source_names():
            raise ValueError(f"unknown data source {v!r}; known: {', '.join(source_names())}")
        return v

    @model_validator(mode="after")
    def _reader_sections(self) -> "DataParams":
        for key, value in (self.model_extra or {}).items():
            if key not in source_names() or get_source(key).params is None:
                with_params = [n for n in source_names() if get_source(n).params is not None]
                raise ValueError(f"data.{key}: unknown key (a data section may only hold the settings "
                                 f"of a reader that has some: {', '.join(with_params)})")
            self._validate_section(key, value)
        return self

    @staticmethod
    def _validate_section(name: str, value: Any) -> BaseModel:
        try:
            return get_source(name).params.model_validate(value or {})  # type: ignore[union-attr]
        except ValidationError as err:
            problems = "; ".join(f"data.{name}.{'.'.join(map(str, e['loc']))}: "
                                 f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
                                 for e in err.errors())
            raise ValueError(problems) from None

    def source_options(self) -> Optional[BaseModel]:
        """`data.<source>` validated by the reader's params class (its defaults when the section
        is absent); None for a reader that declares no params."""
        if get_source(self.source).params is None:
            return None
        return self._validate_section(self.source, (self.model_extra or {}).get(self.source))


class IngestConfig(Protocol):
    """The sections of params.yaml the ingest stage reads (`mmrec.config.Params` fits)."""

    seed: int
    data: DataParams
