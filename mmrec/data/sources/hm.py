"""H&M Personalized Fashion Recommendations (Kaggle layout; mmrec.data.hm does the reading).

Its setting stays where it always was: `data.text.hm_fields` (the article columns of the text).
"""

from __future__ import annotations

from mmrec.data.sources import ReadRequest, Source, SourceData, register_source


def read_hm(req: ReadRequest) -> SourceData:
    """articles.csv, transactions_train.csv and images/ under req.raw_dir."""
    from mmrec.data.hm import iter_hm_transactions, locate_hm, read_hm_articles

    d = req.data
    files = locate_hm(req.raw_dir)
    items = read_hm_articles(files.articles, req.raw_dir, req.image_prefix, d.text.hm_fields,
                             d.text.max_chars, req.report)
    return SourceData(items, iter_hm_transactions(files.transactions, req.report), time_per_second=1)


register_source(Source("hm", read_hm, summary="H&M (Kaggle): articles.csv, transactions_train.csv, images/"))
