"""synth.pairs.spline: the thin-plate spline and its lattice."""
import numpy as np

from synth.pairs.spline import evaluate_tps, fit_tps, lattice_displacement, spline_lattice


def test_fit_passes_through_the_control_values():
    rng = np.random.default_rng(0)
    centres = rng.uniform(-0.5, 0.5, (9, 2))
    values = rng.normal(0, 0.02, (9, 2))
    coefficients = fit_tps(centres, values)
    np.testing.assert_allclose(evaluate_tps(centres, centres, coefficients), values, atol=1e-10)


def test_affine_field_is_reproduced_with_no_bending():
    centres = np.array([[-0.4, -0.3], [0.4, -0.3], [0.4, 0.3], [-0.4, 0.3], [0.0, 0.1]])
    affine = np.array([[0.01, -0.02], [0.1, 0.03], [-0.05, 0.2]])  # rows: 1, x, y
    values = affine[0] + centres @ affine[1:]
    coefficients = fit_tps(centres, values)
    np.testing.assert_allclose(coefficients[:5], 0, atol=1e-10)  # kernel weights
    points = np.array([[0.3, -0.1], [-0.2, 0.25]])
    np.testing.assert_allclose(evaluate_tps(points, centres, coefficients),
                               affine[0] + points @ affine[1:], atol=1e-12)


def test_lattice_is_none_without_motion_and_bilinear_between_nodes():
    points = np.array([[5.0, 5.0], [20.0, 10.0], [8.0, 18.0], [26.0, 20.0]])
    assert spline_lattice((32, 24), points, np.zeros_like(points)) is None
    np.testing.assert_array_equal(lattice_displacement(None, points), 0)
    shifts = np.array([[1.0, -2.0], [0.5, 0.5], [0.0, 1.0], [-1.0, 0.0]])
    lattice = spline_lattice((32, 24), points, shifts)
    origin, step, values = lattice
    node = origin + step * np.array([3, 2])
    midway = node + [step / 2, 0]
    np.testing.assert_allclose(lattice_displacement(lattice, midway[None]),
                               [(values[2, 3] + values[2, 4]) / 2], atol=1e-12)
