"""Deterministic generator of the embedded sample: an Amazon-2018-format raw dataset whose
structure content can explain.

Every item has latent attributes: category, colour, material and price tier. They drive both
its text (title and description built from an attribute vocabulary, with some HTML entities
and tags as in real Amazon meta) and its 64x64 JPEG image (the category sets the shape, the
colour the fill, the material the texture, the tier the frame). Users have a taste (two
colours, a material, a tier) and walk a category-transition graph; the next item is drawn
mostly by how well its attributes fit that taste and the current category, only mildly by
popularity (long-tailed). Many items are rare, so their ids are hard to learn while their
content predicts them; ~5% of items are "new arrivals" that occur only as one of a user's last
two interactions, so some validation/test targets are cold (never in training).

Noise the readers must handle: items without an image, items without any text field,
duplicated meta rows, reviews of asins missing from meta, duplicated review lines, users too
short for the filter.

    python -m mmrec.data.sample --out data/raw/sample
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import io
import json
from pathlib import Path

import numpy as np

CATEGORY_NAME = "Home_Decor"
SEED = 2026

# (noun, plural for the category path, shape drawn in the image)
CATEGORIES = [("Mug", "Mugs", "mug"), ("Vase", "Vases", "ellipse"), ("Lamp", "Lamps", "triangle"),
              ("Clock", "Clocks", "circle"), ("Cushion", "Cushions", "rounded"),
              ("Notebook", "Notebooks", "rect"), ("Bowl", "Bowls", "bowl"),
              ("Candle", "Candles", "tall")]
COLOURS = [("Red", (200, 40, 40)), ("Orange", (235, 130, 30)), ("Yellow", (235, 205, 40)),
           ("Green", (50, 150, 60)), ("Teal", (30, 150, 150)), ("Blue", (40, 70, 190)),
           ("Purple", (120, 50, 160)), ("Pink", (235, 120, 170)), ("Black", (25, 25, 25)),
           ("White", (245, 245, 240))]
# (material, texture drawn in the image, style adjective used in titles)
MATERIALS = [("Ceramic", "solid", "Glazed"), ("Wooden", "stripes", "Rustic"),
             ("Woven", "checks", "Handwoven"), ("Glass", "dots", "Clear-Cut"),
             ("Metal", "diagonal", "Industrial"), ("Linen", "speckle", "Soft-Touch")]
TIERS = [("Budget", 5, 15), ("Classic", 15, 35), ("Premium", 35, 80), ("Luxury", 80, 250)]
BRANDS = [["HomeBasics", "ValueNest", "EverydayCo"], ["Maple &amp; Pine", "Oakridge", "Hearthly"],
          ["Nordvik", "Atelier Loom", "Casa Fina"], ["Maison Dor&eacute;e", "Aurelia", "Velluto"]]
TIER_WORDS = ["affordable", "timeless", "carefully crafted", "exquisite, hand-finished"]
ROOMS = ["living room", "kitchen", "bedroom", "home office", "dining table", "hallway"]

N_ITEMS = 2000
N_USERS = 3000
IMG = 64


def _asin(rng: np.random.Generator, n: int, prefix: str, length: int) -> list[str]:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: set[str] = set()
    ids: list[str] = []
    while len(ids) < n:
        s = prefix + "".join(rng.choice(alphabet, length))
        if s not in out:
            out.add(s)
            ids.append(s)
    return ids


def _draw(cat: int, col: int, mat: int, tier: int, jitter: np.ndarray) -> bytes:
    from PIL import Image, ImageDraw

    rgb = COLOURS[col][1]
    bg = tuple(int(v) for v in 225 + jitter[:3] * 20)
    im = Image.new("RGB", (IMG, IMG), bg)
    d = ImageDraw.Draw(im)
    dx, dy = int(jitter[3] * 4), int(jitter[4] * 4)
    box = (14 + dx, 12 + dy, 50 + dx, 52 + dy)
    shape = CATEGORIES[cat][2]
    mask = Image.new("L", (IMG, IMG), 0)
    m = ImageDraw.Draw(mask)
    x0, y0, x1, y1 = box
    if shape == "mug":
        m.rectangle((x0, y0 + 6, x1 - 8, y1), fill=255)
        m.ellipse((x1 - 14, y0 + 14, x1 + 2, y1 - 10), outline=255, width=4)
    elif shape == "ellipse":
        m.ellipse((x0 + 4, y0, x1 - 4, y1), fill=255)
    elif shape == "triangle":
        m.polygon([((x0 + x1) // 2, y0), (x1, y1 - 8), (x0, y1 - 8)], fill=255)
        m.rectangle(((x0 + x1) // 2 - 2, y1 - 8, (x0 + x1) // 2 + 2, y1), fill=255)
    elif shape == "circle":
        m.ellipse((x0, y0 + 2, x1, y1 - 2), fill=255)
    elif shape == "rounded":
        m.rounded_rectangle((x0 - 4, y0 + 6, x1 + 4, y1 - 4), radius=9, fill=255)
    elif shape == "rect":
        m.rectangle((x0 + 2, y0, x1 - 2, y1), fill=255)
    elif shape == "bowl":
        m.pieslice((x0 - 4, y0 - 10, x1 + 4, y1 - 4), 0, 180, fill=255)
    else:  # tall candle
        m.rectangle((x0 + 10, y0 + 6, x1 - 10, y1), fill=255)
        m.polygon([((x0 + x1) // 2, y0 - 6), ((x0 + x1) // 2 + 3, y0 + 4),
                   ((x0 + x1) // 2 - 3, y0 + 4)], fill=255)
    fill = Image.new("RGB", (IMG, IMG), rgb)
    tex = ImageDraw.Draw(fill)
    dark = tuple(max(0, int(v * 0.55)) for v in rgb) if sum(rgb) > 150 else (110, 110, 110)
    kind = MATERIALS[mat][1]
    if kind == "stripes":
        for y in range(0, IMG, 6):
            tex.rectangle((0, y, IMG, y + 2), fill=dark)
    elif kind == "checks":
        for x in range(0, IMG, 8):
            for y in range(0, IMG, 8):
                if (x // 8 + y // 8) % 2 == 0:
                    tex.rectangle((x, y, x + 3, y + 3), fill=dark)
    elif kind == "dots":
        for x in range(3, IMG, 9):
            for y in range(3, IMG, 9):
                tex.ellipse((x, y, x + 3, y + 3), fill=dark)
    elif kind == "diagonal":
        for k in range(-IMG, IMG, 7):
            tex.line((k, 0, k + IMG, IMG), fill=dark, width=2)
    elif kind == "speckle":
        srng = np.random.default_rng(cat * 1000 + col * 10 + mat)
        for x, y in srng.integers(0, IMG, size=(90, 2)):
            tex.point((int(x), int(y)), fill=dark)
    im.paste(fill, (0, 0), mask)
    d.rectangle((0, 0, IMG - 1, IMG - 1), outline=(212, 175, 55) if tier == 3 else (90, 90, 90),
                width=[1, 2, 3, 4][tier])
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85, optimize=False)
    return buf.getvalue()


def _title_desc(rng: np.random.Generator, cat: int, col: int, mat: int, tier: int,
                brand: str) -> tuple[str, list[str]]:
    noun, _, _ = CATEGORIES[cat]
    colour, material, style = COLOURS[col][0], MATERIALS[mat][0], MATERIALS[mat][2]
    title = f"{brand} {style} {colour} {material} {noun}"
    r = rng.random()
    if r < 0.08:
        title += " &amp; Gift Box"
    elif r < 0.14:
        title = f"&quot;{TIERS[tier][0]}&quot; {title}"
    elif r < 0.18:
        title = f"<b>{title}</b>"
    room = ROOMS[int(rng.integers(len(ROOMS)))]
    article = "An" if TIER_WORDS[tier][0] in "aeiou" else "A"
    desc = [f"{article} {TIER_WORDS[tier]} {material.lower()} {noun.lower()} in {colour.lower()}."
            f"<br>Its {style.lower()} finish suits any {room}.",
            f"{TIERS[tier][0]} line &ndash; {colour} {material} collection."]
    return title, desc


def generate(out: str | Path, seed: int = SEED, n_items: int = N_ITEMS,
             n_users: int = N_USERS) -> list[Path]:
    """Write the sample into `out` (meta, reviews, images/, README.md); returns the files.

    Smaller `n_items`/`n_users` give a quick sample of the same shape (the end-to-end test)."""
    if n_items < 50 or n_users < 20:
        raise ValueError(f"sample too small: n_items={n_items} (>= 50), n_users={n_users} (>= 20)")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_cat, n_col, n_mat, n_tier = len(CATEGORIES), len(COLOURS), len(MATERIALS), len(TIERS)

    # ---- items: attributes, long-tailed popularity, "new arrivals"
    asins = _asin(rng, n_items, "B0", 8)
    cat = rng.integers(n_cat, size=n_items)
    col = rng.integers(n_col, size=n_items)
    mat = rng.integers(n_mat, size=n_items)
    tier = rng.choice(n_tier, size=n_items, p=[0.35, 0.3, 0.22, 0.13])
    pop = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.9  # Zipf-like base weight
    new = rng.random(n_items) < 0.05
    no_image = rng.random(n_items) < 0.02
    no_text = (rng.random(n_items) < 0.005) & ~no_image
    jitter = rng.random((n_items, 5))

    files: list[Path] = []
    meta_lines: list[str] = []
    for i in range(n_items):
        brand = BRANDS[tier[i]][int(rng.integers(3))]
        title, desc = _title_desc(rng, cat[i], col[i], mat[i], tier[i], brand)
        lo, hi = TIERS[tier[i]][1:]
        rec: dict = {"category": ["Home &amp; Kitchen", "Home D&eacute;cor", CATEGORIES[cat[i]][1]],
                     "description": desc, "title": title, "brand": brand, "feature": [],
                     "price": f"${lo + (hi - lo) * rng.random():.2f}", "asin": asins[i]}
        if no_text[i]:
            rec = {"asin": asins[i], "price": rec["price"]}
        if not no_image[i]:
            rel = f"images/{asins[i]}.jpg"
            rec["imageURL"] = [rel]
            rec["imageURLHighRes"] = [rel]
            p = out / rel
            p.write_bytes(_draw(cat[i], col[i], mat[i], tier[i], jitter[i]))
            files.append(p)
        meta_lines.append(json.dumps(rec, ensure_ascii=False))
    for j in rng.choice(n_items, 15, replace=False):  # duplicated meta rows, as in real dumps
        meta_lines.insert(int(j) + 1, meta_lines[int(j)])

    # ---- users: taste and category walk
    trans = np.roll(np.arange(n_cat), -1)  # each category's favoured next category
    by_cat = [np.flatnonzero(cat == c) for c in range(n_cat)]
    users = _asin(rng, n_users, "A", 13)
    t_lo = int(dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    day = 86400
    reviews: list[tuple[str, int, str]] = []  # (asin, time, reviewer)
    for u in range(n_users):
        fav_col = rng.choice(n_col, 2, replace=False)
        fav_mat = int(rng.integers(n_mat))
        fav_tier = int(rng.integers(n_tier))
        n = int(min(40, 4 + rng.geometric(0.15))) if rng.random() > 0.05 else int(rng.integers(2, 5))
        c = int(rng.integers(n_cat))
        t = t_lo + int(rng.integers(0, 1300)) * day
        seen: set[int] = set()
        for k in range(n):
            r = rng.random()
            c = int(trans[c]) if r < 0.65 else (c if r < 0.8 else int(rng.integers(n_cat)))
            cand = by_cat[c]
            score = (0.8 * np.log(pop[cand]) + 3.0 * np.isin(col[cand], fav_col)
                     + 2.5 * (mat[cand] == fav_mat) + 1.5 * (tier[cand] == fav_tier))
            late = k >= n - 2
            score = np.where(new[cand], 1.0 if late else -np.inf, 0.0) + score
            score[[j for j, it in enumerate(cand) if it in seen]] = -np.inf
            p = np.exp(score - score.max())
            item = int(cand[rng.choice(len(cand), p=p / p.sum())])
            seen.add(item)
            reviews.append((asins[item], t, users[u]))
            t += int(rng.integers(1, 45)) * day
    ghosts = _asin(rng, 20, "B9", 8)  # asins with reviews but no meta row
    for g in ghosts:
        reviews.append((g, t_lo + int(rng.integers(0, 1500)) * day,
                        users[int(rng.integers(n_users))]))
    dup = [reviews[int(j)] for j in rng.choice(len(reviews), 30, replace=False)]
    reviews += dup
    reviews.sort()  # Amazon dumps are grouped by asin

    review_lines = []
    for a, t, u in reviews:
        d = dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)
        review_lines.append(json.dumps({
            "overall": float(1 + (hash_int(a + u) % 5)), "verified": True,
            "reviewTime": f"{d.month:02d} {d.day}, {d.year}", "reviewerID": u, "asin": a,
            "summary": "Five Stars" if hash_int(u + a) % 3 else "Nice", "unixReviewTime": t}))

    for name, lines in ((f"meta_{CATEGORY_NAME}.json.gz", meta_lines),
                        (f"{CATEGORY_NAME}.json.gz", review_lines)):
        p = out / name
        with open(p, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                                compresslevel=9) as gz:
            gz.write(("\n".join(lines) + "\n").encode())
        files.append(p)
    readme = out / "README.md"
    size_args = "" if (n_items, n_users) == (N_ITEMS, N_USERS) else f" --items {n_items} --users {n_users}"
    readme.write_text(
        "# Embedded sample (synthetic, Amazon 2018 format)\n\n"
        f"Generated by `python -m mmrec.data.sample --out data/raw/sample{size_args}` (seed {seed}); do not\n"
        "edit by hand. `tests/data/test_ingest_sample.py` regenerates it and compares.\n\n"
        f"- `meta_{CATEGORY_NAME}.json.gz`: {n_items} items (+15 duplicated rows); `imageURL` holds\n"
        "  the image path relative to this folder.\n"
        f"- `{CATEGORY_NAME}.json.gz`: {len(review_lines)} review lines, {n_users} users.\n"
        f"- `images/<asin>.jpg`: {IMG}x{IMG} JPEGs drawn from the item attributes.\n\n"
        "Items have latent category, colour, material and price tier that drive both text and\n"
        "image; users follow a taste and a category walk, so content predicts the next item.\n")
    files.append(readme)
    return sorted(files)


def hash_int(s: str) -> int:
    """A stable (not PYTHONHASHSEED-dependent) small hash."""
    import zlib

    return zlib.crc32(s.encode())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/raw/sample")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--items", type=int, default=N_ITEMS)
    ap.add_argument("--users", type=int, default=N_USERS)
    a = ap.parse_args(argv)
    files = generate(a.out, a.seed, a.items, a.users)
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files ({size / 1e6:.2f} MB) to {a.out}")


if __name__ == "__main__":
    main()
