"""mmrec: multimodal sequential recommendation on frozen features (KDSR, ODMT and baselines).

The import graph runs one way (tests/test_layering.py checks it on every module), in 8 floors:

    7  cli                            (stages/*.py are entry points at this height too)
    6  report, config
    5  train, evaluate, serving
    4  models
    3  objectives
    2  features, teacher
    1  data, metrics
    0  atomic, io, hashing, paths, rawparams, registry, threads

A package imports only packages on lower floors (never one beside it); docs/architecture.md says
what each holds and what each stage reads and writes. `config` assembles the full `Params` from
each package's own section schema (`<package>/params.py`); only the entry points (stage scripts,
the CLI) and tests import it. Library functions take the parts of params they read, typed by a
structural protocol in the package's `params.py` (`IngestConfig`, `TrainConfig`...).
"""

__version__ = "0.1.0"
