"""Issue 25 defect 6 (part): model inference leaves a core to the UI thread. With every core
busy in onnxruntime, a 2048² pre-label left the tablet's frames 0.4-0.9 s apart."""

from __future__ import annotations

import os

from appliance.assist import runtime
from tests.assist.onnx_builders import threshold_model


def test_inference_leaves_one_core_to_the_ui_unless_the_project_says(tmp_path):
    model = threshold_model(tmp_path / "m.onnx")
    cores = os.cpu_count() or 2
    assert runtime.default_threads() == max(1, cores - 1)
    chosen = runtime.session(model).get_session_options().intra_op_num_threads
    assert chosen == max(1, cores - 1)  # onnxruntime alone would take all of them
    assert runtime.session(model, threads=1).get_session_options().intra_op_num_threads == 1
