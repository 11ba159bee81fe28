"""Helpers for the training-set tests: an SPS with injected failures and a rank that dies."""

import os
import sys

import numpy as np

from sedhpc.sps.embedded import EmbeddedSPS


class FlakySPS(EmbeddedSPS):
    """The real embedded SPS, except: raises for dust2 > 3.5, returns NaN for dust2 < 0.05."""

    def spectrum(self, theta):
        dust2 = theta[self.model.index("dust2")]
        if dust2 > 3.5:
            raise RuntimeError(f"injected SPS failure at dust2={dust2:.3f}")
        wave, flam, logmf = super().spectrum(theta)
        if dust2 < 0.05:
            flam = flam * np.nan
        return wave, flam, logmf


class DyingSPS(EmbeddedSPS):
    """The real embedded SPS on a rank that ends the process with exit code 0 after a few
    models, like FSPS's Fortran STOP (no exception, no atexit)."""

    calls = 0

    def spectrum(self, theta):
        DyingSPS.calls += 1
        if DyingSPS.calls > 20:
            sys.stdout.flush()
            os._exit(0)
        return super().spectrum(theta)


if __name__ == "__main__":  # mpiexec -n 3 python gen_helpers.py OUT BANDS N CHUNK SEED
    from sedhpc.parallel import world
    from sedhpc.trainset import GenerateConfig, generate

    out, bands, n, chunk, seed = sys.argv[1:6]
    cfg = GenerateConfig(out=out, n=int(n), bands=bands.split(","), zrange=[0.01, 3.0],
                         seed=int(seed), chunk=int(chunk), progress=False)
    cfg.validate()
    comm, rank, size = world()
    backend = DyingSPS(filters=cfg.bands) if rank == size - 1 else None
    generate(cfg, backend=backend)
