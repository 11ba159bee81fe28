"""Neural emulators of the SPS: training (PyTorch, :mod:`.train`), the portable HDF5 file
(:mod:`.io`) and the batched numpy/CuPy inference kernel (:mod:`.kernel`)."""

from pathlib import Path

from .kernel import Emulator, Prediction, array_module, gpu_available, stitch_weights

DEFAULT = Path(__file__).parent / "data" / "default.h5"


def default_path() -> Path:
    """The bundled default emulator (embedded SPS; see sedhpc/emulator/data/README.md)."""
    if not DEFAULT.exists():
        raise FileNotFoundError(f"the bundled emulator {DEFAULT} is missing from this "
                                "installation; pass --emulator FILE")
    return DEFAULT


__all__ = ["Emulator", "Prediction", "array_module", "gpu_available", "stitch_weights",
           "default_path", "DEFAULT"]
