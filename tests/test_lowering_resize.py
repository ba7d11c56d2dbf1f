"""Native Resize/Upsample, compiled with native_only=True against the interpreter: every mode and
coordinate_transformation_mode, scales or sizes (constant or read at run time), axes, roi,
antialias, exclude_outside, keep_aspect_ratio_policy, integer inputs for nearest."""
import numpy as np
import pytest
from onnx import helper

from test_lowering_reduce import check, private_cache  # noqa: F401  (shared helper and fixture)

pytestmark = pytest.mark.filterwarnings("ignore::kiln.compiler.HostOpWarning")

COORDS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
          "tf_half_pixel_for_nn", "tf_crop_and_resize"]


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_modes(mode):
    rng = np.random.default_rng({"nearest": 0, "linear": 1, "cubic": 2}[mode])
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    feeds = {"x": x, "up": np.array([1, 1, 1.7, 2.0], np.float32),
             "down": np.array([1, 1, 0.6, 0.5], np.float32),
             "sz": np.array([7, 4], np.int64), "roi": np.array([0.1, 0.2, 0.9, 0.7], np.float32)}
    inits = {"cup": np.array([1, 1, 2.5, 1.5], np.float32), "croi": np.array([], np.float32)}
    nodes, outs = [], []
    for i, coord in enumerate(COORDS):
        for j, (scales, sizes, extra) in enumerate([("up", "", {}), ("down", "", {}), ("cup", "", {}),
                                                    ("", "sz", dict(axes=[2, 3])),
                                                    ("", "sz", dict(axes=[3, 2]))]):
            kw = dict(mode=mode, coordinate_transformation_mode=coord, **extra)
            if mode == "nearest":
                kw["nearest_mode"] = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"][(i + j) % 4]
            if mode != "nearest" and j == 1:
                kw["antialias"] = 1
            if mode == "cubic":
                kw["cubic_coeff_a"] = -0.5 - 0.1 * (j % 2)
                kw["exclude_outside"] = j % 2
            if coord == "tf_crop_and_resize":
                kw["extrapolation_value"] = 3.5
                roi = "roi" if sizes else ""
            else:
                roi = "croi" if j == 2 else ""
            name = f"y_{coord}_{j}"
            nodes.append(helper.make_node("Resize", ["x", roi, scales, sizes] if sizes else ["x", roi, scales],
                                          [name], **kw))
            outs.append(name)
    check(nodes, feeds, outs, inits, rtol=1e-4, atol=1e-5)


def test_resize_policies_ints_and_upsample():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    xu = rng.integers(0, 256, (1, 3, 4, 4)).astype(np.uint8)
    feeds = {"x": x, "xu": xu, "sz": np.array([6, 9], np.int64), "sc": np.array([1, 1, 2, 3], np.float32)}
    nodes = [helper.make_node("Resize", ["x", "", "", "sz"], ["nl"], axes=[2, 3], keep_aspect_ratio_policy="not_larger"),
             helper.make_node("Resize", ["x", "", "", "sz"], ["ns"], axes=[2, 3], keep_aspect_ratio_policy="not_smaller",
                              mode="linear"),
             helper.make_node("Resize", ["xu", "", "sc"], ["u8"], mode="nearest", nearest_mode="ceil"),
             helper.make_node("Resize", ["xu", "", "sc"], ["u8b"], mode="nearest",
                              coordinate_transformation_mode="align_corners")]
    check(nodes, feeds, ["nl", "ns", "u8", "u8b"], rtol=1e-4, atol=1e-5)
    for mode in ("nearest", "linear"):
        check([helper.make_node("Upsample", ["x", "sc"], ["up"], mode=mode)], {"x": x, "sc": feeds["sc"]},
              ["up"], opset=9, rtol=1e-5, atol=1e-6)
