"""Priors, training distributions, parameter sets, SFH and cosmology (MODEL.md)."""

import numpy as np
import pytest
from scipy import integrate, stats

from sedhpc import cosmology
from sedhpc.model import (MassMetallicity, Mixture, TruncatedNormal, TruncatedStudentT, Uniform,
                          Distribution, from_spec, get_model, sfh)
from sedhpc.model.priors import load_massmet_table

N = 100_000
KS_P = 1e-3  # fixed seeds: a correct sampler fails this with probability 1e-3


def truncated_cdf(base, lo, hi):
    """Reference CDF of ``base`` truncated to [lo, hi], from scipy's own distributions."""
    clo, chi = base.cdf(lo), base.cdf(hi)
    return lambda x: np.clip((base.cdf(np.clip(x, lo, hi)) - clo) / (chi - clo), 0, 1)


CASES = {
    "uniform": (Uniform(-1.2, 0.4), stats.uniform(-1.2, 1.6).cdf),
    "normal": (TruncatedNormal(0.3, 1.0, 0.0, 4.0), truncated_cdf(stats.norm(0.3, 1.0), 0, 4)),
    "normal_wide": (TruncatedNormal(1.0, 10.0, 0.1, 25.0),
                    truncated_cdf(stats.norm(1.0, 10.0), 0.1, 25.0)),
    "student_t": (TruncatedStudentT(2.0, 0.0, 0.3, -5.0, 5.0),
                  truncated_cdf(stats.t(2.0, 0.0, 0.3), -5.0, 5.0)),
    "mixture": (Mixture(TruncatedNormal(2.0, 2.0, 0.0, 7.0), 0.5),
                lambda x: 0.5 * truncated_cdf(stats.norm(2, 2), 0, 7)(x)
                + 0.5 * np.clip(x / 7.0, 0, 1)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_prior_sampling_matches_analytic_cdf(name):
    prior, ref_cdf = CASES[name]
    rng = np.random.default_rng(12345)
    x = prior.sample(rng, N)
    assert np.all((x >= prior.lo) & (x <= prior.hi))
    assert stats.kstest(x, ref_cdf).pvalue > KS_P
    # our own CDF agrees with the reference, and ppf inverts it
    grid = np.linspace(prior.lo, prior.hi, 201)
    np.testing.assert_allclose(prior.cdf(grid), ref_cdf(grid), atol=1e-10)
    u = np.linspace(0.001, 0.999, 101)
    np.testing.assert_allclose(prior.cdf(prior.ppf(u)), u, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_prior_density_integrates_to_one(name):
    prior, _ = CASES[name]
    val, _ = integrate.quad(lambda x: np.exp(prior.logpdf(np.array([x])))[0], prior.lo, prior.hi,
                            limit=200, points=[0.0] if prior.lo < 0 < prior.hi else None)
    assert val == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.isneginf(prior.logpdf(np.array([prior.lo - 1e-9, prior.hi + 1e-9]))))


@pytest.mark.parametrize("name", sorted(CASES))
def test_prior_spec_roundtrip(name):
    prior, _ = CASES[name]
    again = from_spec(prior.spec())
    x = np.linspace(prior.lo, prior.hi, 17)
    np.testing.assert_array_equal(again.logpdf(x), prior.logpdf(x))


def test_massmet_prior_reproduces_table_at_nodes():
    table = load_massmet_table()
    prior = MassMetallicity(-1.98, 0.19, given_index=0)
    rng = np.random.default_rng(7)
    for mass, p50, p16, p84 in table:
        sigma = p84 - p16  # twice the table's half-width, as in Leja et al. 2019
        cond = np.full((N, 1), mass)
        # the density is exactly the normal(P50, P84 − P16) shape inside the truncation
        x = np.array([-1.5, -0.7, 0.0, 0.15])
        lp = prior.logpdf(x, cond[:4]) - prior.logpdf(np.array([p50] * 4), cond[:4])
        np.testing.assert_allclose(lp, -0.5 * ((x - p50) / sigma) ** 2, atol=1e-10)
        # and draws follow scipy's truncated normal with those parameters
        a, b = (-1.98 - p50) / sigma, (0.19 - p50) / sigma
        ref = stats.truncnorm(a, b, loc=p50, scale=sigma)
        draws = prior.sample(rng, N, cond)
        assert stats.kstest(draws, ref.cdf).pvalue > KS_P
        assert np.median(draws) == pytest.approx(ref.median(), abs=0.01)
        assert np.std(draws) == pytest.approx(ref.std(), rel=0.02)


def test_massmet_clamps_outside_table():
    prior = MassMetallicity(-1.98, 0.19, given_index=0)
    x = np.array([-0.5])
    lo_end = prior.logpdf(x, np.array([[6.0]]))
    node = prior.logpdf(x, np.array([[8.87]]))
    np.testing.assert_allclose(lo_end, node)


def test_model_order_and_counts():
    alpha, emb = get_model("prospector_alpha"), get_model("embedded")
    assert alpha.ndim == 18 and emb.ndim == 16
    assert alpha.names[:3] == ["logmass", "logzsol", "logsfr_ratios_1"]
    assert alpha.names[11:15] == ["log_fagn", "log_agn_tau", "gas_logz", "zred"]
    assert alpha.names[-3:] == ["duste_qpah", "duste_umin", "log_duste_gamma"]
    assert "log_fagn" not in emb.names and emb.names.index("zred") == 12
    assert alpha.fixed == ("zred",) and len(alpha.free_names) == 17
    assert tuple(emb.bounds[emb.index("duste_qpah")]) == (0.47, 4.58)
    assert emb.bounds[emb.index("zred"), 1] == 10.0
    photoz = get_model("embedded", photoz=True)
    assert photoz.fixed == () and "zred" in photoz.free_names
    with pytest.raises(ValueError, match="unknown model"):
        get_model("nope")


def test_unit_transform_maps_onto_prior():
    model = get_model("prospector_alpha")
    rng = np.random.default_rng(3)
    n = 20_000
    theta = model.unit_transform(rng.random((n, 17)), np.full(n, 1.5)[:, None])
    assert np.all(theta[:, model.index("zred")] == 1.5)
    assert np.all(np.isfinite(model.log_prob(theta)))
    for name, (prior, ref_cdf) in {"dust2": CASES["normal"], "dust_index": CASES["uniform"],
                                   "logsfr_ratios_3": CASES["student_t"]}.items():
        assert stats.kstest(theta[:, model.index(name)], ref_cdf).pvalue > KS_P
    # log_prob is the sum of the free parameters' log densities
    k = model.index("dust2")
    lp = model.log_prob(theta[:5])
    manual = sum(model.params[i].prior.logpdf(theta[:5, i], theta[:5]) for i in model.free_index)
    np.testing.assert_allclose(lp, manual)
    assert np.isneginf(model.log_prob(np.where(np.arange(18) == k, 5.0, theta[0]))[0])


def test_training_distribution_is_mixture_with_uniform_metallicity():
    model = get_model("embedded")
    td = model.training_distribution(mix=0.5, zrange=(0.5, 2.0))
    rng = np.random.default_rng(11)
    x = td.sample(rng, N)
    z = x[:, model.index("zred")]
    assert z.min() >= 0.5 and z.max() <= 2.0
    assert stats.kstest(z, stats.uniform(0.5, 1.5).cdf).pvalue > KS_P
    met = x[:, model.index("logzsol")]
    assert stats.kstest(met, stats.uniform(-1.98, 2.17).cdf).pvalue > KS_P
    assert stats.kstest(x[:, model.index("dust2")], CASES["normal"][1]).pvalue < 1e-6
    ref = lambda v: 0.5 * CASES["normal"][1](v) + 0.5 * np.clip(v / 4.0, 0, 1)  # noqa: E731
    assert stats.kstest(x[:, model.index("dust2")], ref).pvalue > KS_P
    again = Distribution.from_spec(td.spec())
    np.testing.assert_array_equal(again.log_prob(x[:10]), td.log_prob(x[:10]))
    with pytest.raises(ValueError, match="zrange"):
        model.training_distribution(zrange=(0.5, 11.0))


def test_mix_one_is_the_prior_with_its_mass_metallicity_relation():
    """mix = 1 (what `sedhpc mock` draws "from the prior") is the prior, conditional
    metallicity included: same density as the model's prior, and the same draws' law."""
    model = get_model("embedded")
    td = model.training_distribution(mix=1.0, zrange=(0.5, 2.0))
    x = td.sample(np.random.default_rng(12), N)
    free = [k for k, n in enumerate(model.names) if n != "zred"]
    np.testing.assert_allclose(td.log_prob(x[:50], free), model.log_prob(x[:50]), rtol=1e-9)
    ref = model.sample(np.random.default_rng(13), N, fixed_values=x[:, [model.index("zred")]])
    i, j = model.index("logmass"), model.index("logzsol")
    assert stats.ks_2samp(x[:, j], ref[:, j]).pvalue > KS_P
    assert np.corrcoef(x[:, i], x[:, j])[0, 1] > 0.3  # metallicity follows mass


@pytest.mark.parametrize("bad, match", [
    (np.full(15, 0.5), r"shape \(n, 16\)"),
    ("nan", "'dust2' = nan"),
    ("range", "'logmass' = 13.0"),
])
def test_validate_names_parameter_and_value(bad, match):
    model = get_model("embedded")
    theta = model.sample(np.random.default_rng(0), 3, np.full((3, 1), 1.0))
    if isinstance(bad, str) and bad == "nan":
        theta[1, model.index("dust2")] = np.nan
        bad = theta
    elif isinstance(bad, str):
        theta[2, model.index("logmass")] = 13.0
        bad = theta
    with pytest.raises(ValueError, match=match):
        model.validate(bad)


def test_from_columns_reports_missing_and_unknown():
    model = get_model("embedded")
    with pytest.raises(ValueError, match="lacks parameter column"):
        model.from_columns({"logmass": [10.0]})
    with pytest.raises(KeyError, match="unknown parameter 'mass'"):
        model.index("mass")


@pytest.mark.parametrize("z", [0.5, 2.0, 5.0])
def test_sfh_bin_edges_match_model_md(z):
    from astropy.cosmology import WMAP9

    tu = np.log10(WMAP9.age(z).to_value("yr"))
    if z <= 3:
        expect = np.r_[0.0, 7.47712, np.linspace(8.0, np.log10(0.9 * 10 ** tu), 5), tu]
    else:
        expect = np.r_[np.linspace(7.1295, np.log10(0.9 * 10 ** tu), 7), tu]
        expect[0] = 0.0
    np.testing.assert_allclose(sfh.bin_edges([z])[0], expect, atol=1e-9)


def test_sfh_masses_sum_and_ratios():
    rng = np.random.default_rng(5)
    n = 50
    logmass = rng.uniform(6, 12.5, n)
    ratios = rng.uniform(-5, 5, (n, 6))
    z = rng.uniform(0.001, 10, n)
    m = sfh.bin_masses(logmass, ratios, z)
    np.testing.assert_allclose(m.sum(axis=1), 10 ** logmass, rtol=1e-12)
    sfr = m / sfh.bin_widths(z)
    np.testing.assert_allclose(np.log10(sfr[:, :-1] / sfr[:, 1:]), ratios, atol=1e-9)


def test_sfr100_and_mass_weighted_age_constant_sfh():
    z = np.array([0.5, 4.0])
    m = sfh.bin_masses(np.array([10.0, 10.0]), np.zeros((2, 6)), z)
    t = 10 ** sfh.bin_edges(z)
    total_time = t[:, -1] - t[:, 0]
    np.testing.assert_allclose(sfh.sfr_over(m, z), 1e10 / total_time, rtol=1e-7)
    np.testing.assert_allclose(sfh.mass_weighted_age(m, z),
                               0.5 * (t[:, -1] + t[:, 0]) / 1e9, rtol=1e-7)


def test_cosmology_tables_match_astropy():
    from astropy.cosmology import WMAP9

    z = np.array([0.0, 1e-4, 0.01, 0.37, 1.0, 2.5, 6.3, 12.0, 19.9])
    np.testing.assert_allclose(cosmology.age_yr(z), WMAP9.age(z).to_value("yr"), rtol=1e-8)
    dl = WMAP9.luminosity_distance(z[1:]).to_value("cm")
    np.testing.assert_allclose(cosmology.luminosity_distance_cm(z[1:]), dl, rtol=1e-8)
    assert cosmology.luminosity_distance_cm(0.0) == 0.0
    with pytest.raises(ValueError, match="redshift"):
        cosmology.age_yr([-0.1])
