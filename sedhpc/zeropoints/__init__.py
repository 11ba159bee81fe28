"""Photometric zeropoint calibration (seed 003, step 2): one multiplicative offset per band
(and per tract) from a calibration subset with known redshifts.

Method — the offsets o [mag] that maximise the joint posterior of o and every calibration
galaxy's parameters at its mode (redshift fixed), solved as one block-sparse nonlinear least-
squares problem, as in bundle adjustment, and its bias measured on simulated sets (below):

- Each galaxy lives in the sampler's probit space v (the prior is a standard normal there), so
  its negative log posterior is ½|r|² + ½|v|² with r_b = (x_b − m_b(v)·10^{0.4 o_b}) / σ_b the
  residuals of the catalog flux x against the model flux moved by the offset (the same as
  correcting x and its error by 10^{−0.4 o}, as ``sedhpc fit --zeropoints`` does), and
  σ_b² = σ_obs² + (floor·x)² + σ_emu².
- Inner step: every galaxy's v is solved at the current offsets by Levenberg–Marquardt,
  vectorised over galaxies (forward-difference Jacobians of the emulator in float64).
- Outer step: a Gauss–Newton step for the offsets of each tract with the galaxies profiled out
  (Schur complement H = Σ_g J_oᵀJ_o − J_oᵀJ_v (J_vᵀJ_v + 1)⁻¹ J_vᵀJ_o, gradient Σ_g J_oᵀ r): how
  much of an offset a galaxy's dust, SFH and metallicity can absorb is in H, so the offsets land
  in a few steps instead of crawling as in the classic loop of medians of residuals to refitted
  models. Stop when no offset moves by more than ``tol_mag``.
- Start: each galaxy's mode is searched from the best of ``ndraws`` prior draws and LM from
  its ``nstarts`` best (the fit is deterministic given ``seed``, so reruns agree).
- Wider search: that start runs at offsets 0, where an injected or real offset of 0.1 mag is
  tens of σ at high S/N, and LM then only follows each galaxy's basin as the offsets move. On
  2 × 600 emulator mocks (S/N 50–200) 7–11 % of the galaxies ended in modes whose posterior is
  worse than at their true parameters (χ² up to hundreds: they were clipped, or dragged the
  offsets), and these carried most of the colour tilt below. So once the offsets move by less
  than 0.01 mag (at most twice), galaxies whose χ² over all their bands is improbable
  (p < 0.001) are searched again at the current offsets with 4× the draws and starts, and the
  better mode kept: 51 and then 4 of 1200 moved; the largest error of the marginal estimate
  below fell from 0.016 to 0.012–0.014 mag (two runs of the chains; the red bands' from
  0.005–0.009 to 0.003–0.005) at lower cost (526–584 CPU-s: the offsets converge in fewer
  steps).
- Robustness: a galaxy-band more than ``clip`` σ from its model (an AGN, a blend, bad
  photometry) is left out of the next step; the set is re-chosen every step.
- The overall scale is degenerate with stellar mass, so one reference band (the middle band by
  default) is held at 0 in every tract; the others are relative to it.
- Errors: the sandwich estimate H⁻¹ (Σ_g s_g s_gᵀ) H⁻¹ over the galaxies' profile scores s_g,
  which stays honest when the errors or the model are not quite right (it equals H⁻¹ when they
  are).
- Bias correction (default): the joint mode is not an unbiased estimator. The prior pulls
  each galaxy's mode toward the prior's centre, and the colour residuals that leaves are
  common to all galaxies, so the offsets absorb them (blue bands up, red bands down: on 2 × 600
  emulator mocks at S/N 50–200, +0.017 mag in u, −0.010 in y). The bias is measured the way
  weak-lensing shear calibration measures its own: ``bias_sims`` (4) simulated calibration
  sets, one galaxy per calibrator — a prior draw at its redshift, stellar mass moved to match
  its reference-band flux, its mask, its S/N in every band where it is detected (its error
  where it is not), noise from the likelihood's variance, and the tracts' offsets as just
  estimated applied — go through the same estimator; their mean offset minus the applied one
  per band (over sets and tracts) is subtracted, and their scatter enters the errors
  (σ² + σ_sim²/(R·tracts)). Applying the estimated offsets lets the sets see how much of an
  offset the galaxies absorb as well as the additive bias. On those mocks
  (`tools/zeropoint_recovery.py --n 600`, offsets of 0.02–0.1 mag injected in 3 bands per
  tract; two realisations, seeds 0 and 1) every free band and tract then comes within
  0.0056 / 0.0057 mag of the injected offsets (the mode alone: 0.017 / 0.021), rms pull
  0.94 / 0.81, at 5× the mode's cost (~2200 CPU-s for 1200 calibrators). This assumes the
  prior describes the calibrators' population — the assumption every fit makes. (A first
  version gave the simulated galaxies the calibrator's absolute errors, so a draw fainter than
  its calibrator was measured worse and pulled further: it over-corrected about 3×.)

The alternative, ``method="marginal"``: the marginal likelihood. The joint mode is not a
consistent estimator: the number of galaxy parameters grows with the calibration set, and each
galaxy's mode sits where the prior pulls it, leaving colour residuals that all galaxies share
(on 2 × 150 emulator mocks at S/N 50–200 with nothing injected, the mode finds −0.009 to
−0.011 mag in z, y and SDSS z of one tract). The offsets that maximise the likelihood with the
galaxies' parameters integrated out are what a hierarchical model needs, and they are found
by stochastic approximation from the mode (:func:`_marginal`): per galaxy a few Metropolis
chains in probit space (Laplace covariance at the mode first, then the chains' own, scale
adapted to 23 % acceptance), each sweep's average complete-data score summed over galaxies
(Fisher's identity: that is the marginal score), a step with the mode's profiled information,
Polyak averaging over the second half of the sweeps; errors the mode's sandwich errors with
the sweeps' Monte Carlo spread added. On the mocks above it removes that tract's tilt (all
|offsets| ≤ 0.004 mag there); on 2 × 600 mocks (S/N 50–200, offsets injected in 3 bands per
tract, `tools/zeropoint_recovery.py --n 600`) it is closer to the truth than the mode in 19
of 20 free band-tracts, median 41–48 % closer (largest error 0.012–0.014 mag in u against
the mode's 0.017; before the wider search: 0.016 against 0.019), 526–584 CPU-s in all. With
2000 calibrators per tract it stays 0.014–0.016 mag off in u in both tracts (errors 0.002;
the mode: 0.016–0.018): a bias, not noise — the chains stay near the modes along the
posteriors' ridges — which is why the simulated-set correction above is the default. The
tilt left lies along the weakest direction of H (u, g against i, z, y; σ ≈ 0.006 mag at 600
calibrators per tract), where the sampled score is noisiest: each sweep's score is noisy (the
complete-data score fluctuates ~10× more than the offsets' statistical error at these S/N,
so steps are clipped at 0.02 mag and only the averaging tames them). A Stein control variate
(A ∇_v log π) meant to remove that noise made it worse (0.07 mag off in y): chains that have
not equilibrated give it a non-zero mean. Earlier attempts on sampled posteriors (medians of
residuals to posterior-median models, EM on re-weighted ensemble samples) moved by 0.01–0.02
mag with the ensemble sampler's slow mixing; the chains here start at the modes, persist from
sweep to sweep and average over many sweeps. Importance sampling from the Laplace
approximation fails (median ESS 3 of 256): the posteriors of well-measured galaxies are
narrow curved ridges in probit space.

Output table (ECSV): ``tract``, ``band``, ``offset_mag`` (the correction: corrected flux =
flux × 10^(−0.4 offset_mag)), ``error_mag``, ``bias_mag`` (the estimator bias already removed
from ``offset_mag``), ``n`` (galaxies used in that band and tract); read by
``sedhpc fit --zeropoints``.

Layout: the solver is :mod:`sedhpc.zeropoints.solve`; the ECSV table (read by ``sedhpc fit
--zeropoints``) and its checks are :mod:`sedhpc.zeropoints.table`.
"""

from .solve import (LN10_04, RESCUE_FACTOR, RESCUE_STEP, RESCUES,  # noqa: F401
                    _cholesky_or, _estimate, _laplace, _logpost, _marginal, _mock_like, _Modes,
                    _rescue, calibrate)
from .table import LARGE_OFFSET_MAG, factors, large_offset_warning, read, write  # noqa: F401
