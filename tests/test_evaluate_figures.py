"""Evaluation figures: the difference maps leave out what holds no CT data."""

from __future__ import annotations

import numpy as np

from ctdenoise.evaluate.figures import difference_map, slice_panel
from ctdenoise.intensity import get_window


def test_difference_maps_are_blank_outside_the_field_of_view_and_exact_inside():
    reference = np.full((8, 8), 40.0, dtype=np.float32)
    reference[:, :2] = -2000.0  # outside the field of view, not declared as padding
    output = reference + 5.0
    output[:, :2] = -1024.0  # a model's output clipped to its range there
    diff = difference_map(output, reference)
    assert np.isnan(diff[:, :2]).all()
    np.testing.assert_array_equal(diff[:, 2:], 5.0)


def test_the_panel_is_drawn_with_an_outside_region(tmp_path):
    reference = np.zeros((16, 16), dtype=np.float32)
    reference[0] = -3024.0
    path = slice_panel({"input": reference + 1.0, "model": reference}, reference, get_window("abdomen"),
                       tmp_path / "panel.png", "a slice")
    assert path.stat().st_size > 0
