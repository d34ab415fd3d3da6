"""Amazon review data, releases 2014, 2018 and 2023 (mmrec.data.amazon does the reading).

Settings stay where they always were: `data.category` (which file stem) and
`data.text.amazon_fields` (the item text); items may carry image URLs that ingest downloads.
"""

from __future__ import annotations

from mmrec.data.sources import ReadRequest, Source, SourceData, register_source


def read_amazon(source: str, req: ReadRequest) -> SourceData:
    """Item metadata and review interactions of release `source` under req.raw_dir."""
    from mmrec.data.amazon import FORMATS, iter_amazon_interactions, locate_files, read_amazon_meta, resolve_category

    d = req.data
    fmt = FORMATS[source]
    cat = resolve_category(req.raw_dir, d.category)
    files = locate_files(fmt, req.raw_dir, cat)
    items = read_amazon_meta(fmt, files.meta, req.raw_dir, req.image_prefix, d.text.amazon_fields,
                             d.text.max_chars, req.report)
    return SourceData(items, iter_amazon_interactions(fmt, files, req.report),
                      time_per_second=1 if files.is_csv else fmt.time_per_second, extra={"category": cat})


for _release in ("amazon2014", "amazon2018", "amazon2023"):
    register_source(Source(_release, lambda req, _s=_release: read_amazon(_s, req), downloads_images=True,
                           summary=f"Amazon reviews {_release[-4:]}: <category> reviews/ratings + meta files"))
