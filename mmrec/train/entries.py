"""How one `train.models` entry becomes (arch, loop settings, model config), and the up-front check
of the whole `train` section.

Precedence, lowest first, for every key of an entry:

1. the model class's own defaults (`config_cls`, e.g. ODMT's `loss: inbatch`) for model keys,
   `TrainCommon`'s defaults for loop keys;
2. keys written in `train.common` (only those written: an unwritten common key does not mask a
   model's own default);
3. `train.<arch>`, when the entry names another architecture with `arch: <arch>` (so an ablation
   `{arch: odmt, imt: false}` starts from exactly the `odmt` entry);
4. the entry's own section `train.<entry>`.

With `train.like_for_like: true` the training protocol keys (`PROTOCOL_KEYS`: loss, loss_norm,
temperature, epochs, patience, select_metric) come from `train.common` for every entry, whatever the model sections
and class defaults say, so a table of models compares models rather than training protocols.

`check_train_section` validates every entry this way when params are loaded, so an unknown
section, an unknown key or a bad value fails before any stage spends minutes, naming
`train.<section>.<key>` with a did-you-mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mmrec.models.configs import CONFIGS
from mmrec.paths import check_model
from mmrec.registry import did_you_mean
from mmrec.train.params import TrainCommon, TrainParams

COMMON_KEYS = frozenset(TrainCommon.model_fields)
#: What `like_for_like` makes equal across entries: the objective and the selection rule.
PROTOCOL_KEYS = ("loss", "loss_norm", "temperature", "epochs", "patience", "select_metric")


@dataclass(frozen=True)
class Entry:
    """A resolved `train.models` entry."""

    name: str
    arch: str
    common: TrainCommon          # loop settings (epochs, lr, batch size, max_len, ...)
    config: dict[str, Any]       # raw model config, validated by the model's config_cls on build


def _section_chain(train: TrainParams, entry: str) -> tuple[str, dict[str, Any]]:
    """(arch, merged raw keys of `train.<arch>` then `train.<entry>`, without `arch`)."""
    own = train.section(entry)
    arch = str(own.pop("arch", entry))
    if arch == entry:
        return arch, own
    base = train.section(arch)
    base_arch = base.pop("arch", arch)
    if base_arch != arch:
        raise ValueError(f"train.{entry}: arch {arch!r} is itself an alias (train.{arch}.arch: "
                         f"{base_arch!r}); point train.{entry}.arch at {base_arch!r}")
    return arch, {**base, **own}


def resolve_entry(train: TrainParams, entry: str) -> Entry:
    """Resolve `train.<entry>` (see the module docstring for the precedence)."""
    check_model(train.models, entry)
    arch, section = _section_chain(train, entry)
    if arch not in CONFIGS:
        raise KeyError(f"train.{entry}: unknown model {arch!r}{did_you_mean(arch, CONFIGS)}; "
                       f"known: {', '.join(sorted(CONFIGS))}")
    declared = set(CONFIGS[arch].model_fields)
    unknown = [k for k in section if k not in COMMON_KEYS and k not in declared]
    if unknown:
        raise ValueError("; ".join(
            f"train.{entry}.{k}: unknown key for model {arch!r}{did_you_mean(k, declared | COMMON_KEYS)}"
            for k in unknown))
    written_common = train.common.model_dump(include=train.common.model_fields_set)
    if train.like_for_like:
        section = {k: v for k, v in section.items() if k not in PROTOCOL_KEYS}
    loop = {**written_common, **{k: v for k, v in section.items() if k in COMMON_KEYS}}
    try:
        common = TrainCommon.model_validate(loop)
    except ValidationError as err:  # name the entry, not just train.common
        raise ValueError(f"train.{entry}: " + "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())) from None
    # Model keys: class defaults, then what common wrote, then the sections. Loop keys the class
    # declares (max_len, hidden, loss...) follow the resolved loop value when one was written.
    cfg = {k: v for k, v in written_common.items() if k in declared}
    cfg.update({k: v for k, v in section.items() if k in declared})
    if train.like_for_like:
        cfg.update({k: getattr(common, k) for k in PROTOCOL_KEYS if k in declared})
    if "max_len" in declared:  # the loop cuts sequences to the length the model embeds
        cfg.setdefault("max_len", common.max_len)
    return Entry(name=entry, arch=arch, common=common, config=cfg)


def check_train_section(train: TrainParams) -> dict[str, Entry]:
    """Resolve and validate every entry of `train.models`, and reject sections nobody reads.

    A section is read when it is an entry of `train.models` or an architecture an entry builds
    on. Raises ValueError naming each offending key (with a did-you-mean).
    """
    problems: list[str] = []
    entries: dict[str, Entry] = {}
    archs = set(CONFIGS)
    for name in train.models:
        try:
            entry = resolve_entry(train, name)
            _validate_model_config(entry)
            entries[name] = entry
        except (KeyError, ValueError) as err:
            problems.append(str(err.args[0]) if err.args else str(err))
    used = set(train.models) | {e.arch for e in entries.values()}
    for section in sorted(train.model_extra or {}):
        if section in used or section in archs:
            continue
        problems.append(f"train.{section}: unknown section, not an entry of train.models nor a model"
                        f"{did_you_mean(section, sorted(set(train.models) | archs))}; "
                        f"models: {', '.join(sorted(archs))}")
    if problems:
        raise ValueError("\n".join(problems))
    return entries


def _validate_model_config(entry: Entry) -> None:
    """The entry's model config passes its class's validation (values in range, literals...)."""
    try:
        CONFIGS[entry.arch].model_validate(entry.config)
    except ValidationError as err:
        raise ValueError("; ".join(f"train.{entry.name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                   for e in err.errors())) from None
