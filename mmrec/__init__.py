"""mmrec: multimodal sequential recommendation on frozen features (KDSR, ODMT and baselines).

The import graph runs one way (tests/test_layering.py checks it on every module):

    stages/, cli  ->  config  ->  train  ->  evaluate  ->  models  ->  objectives
        ->  teacher  ->  features  ->  data  ->  io, hashing, paths, rawparams, registry, threads

A package imports only packages to its right. `config` assembles the full `Params` from each
package's own section schema (`<package>/params.py`); only the entry points (stage scripts, the
CLI) and tests import it. Library functions take the parts of params they read, typed by a
structural protocol in the package's `params.py` (`IngestConfig`, `TrainConfig`...).
"""

__version__ = "0.1.0"
