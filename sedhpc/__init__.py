"""sedhpc: Bayesian SED fitting of galaxy catalogs with neural SPS emulators, scaled with MPI.

Stages of the data flow, one module or folder each:
``model`` → ``photometry`` → ``sps`` → (trainset → emulator → catalog → likelihood →
samplers → scheduler → store) → ``cli``.
"""

__version__ = "0.1.0"

from ._threads import limit_threads  # noqa: E402  (before numpy: BLAS reads it at load)

limit_threads()

from .model import get_model, list_models  # noqa: E402

__all__ = ["__version__", "get_model", "list_models"]
