"""The whole path: synth → project → export-job → export train → install-model → segment.

Runs both command lines in-process (the same `main` functions the console scripts call) on a
small synthetic set, then segments a held-out image with the installed model through the
tablet's own inference runtime.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("torch")  # export trains with torch; the appliance never needs it

from appliance.assist.prelabel import dice
from appliance.assist.runtime import active_model
from appliance.cli import main as appliance_main
from appliance.store import Project
from export.cli import main as export_main
from export.synth import synth_samples


@pytest.mark.slow
def test_synth_to_installed_model(tmp_path: Path) -> None:
    data, proj = tmp_path / "data", tmp_path / "proj"
    job, bundle = tmp_path / "job.zip", tmp_path / "model.zip"
    assert export_main(["synth", str(data), "--n", "20", "--size", "128", "--seed", "3"]) == 0
    assert appliance_main(["init", str(proj), "--classes", "nucleus"]) == 0
    assert (
        appliance_main(["import", str(proj), str(data / "images"), "--labels", str(data / "masks")])
        == 0
    )
    assert appliance_main(["export-job", str(proj), str(job), "--task", "segment"]) == 0
    # bounded by epochs, never by minutes: a busy machine trains slower, not less
    args = ["train", str(job), "--task", "segment", "--out", str(bundle), "--epochs", "10"]
    args += ["--patience", "100", "--no-time-budget", "--run-dir", str(tmp_path / "run")]
    assert export_main(args) == 0

    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert "extra/curves.png" in names and "extra/metrics.jsonl" in names
    metrics = manifest["models"][0]["metrics"]
    assert metrics["parity"]["max_abs_diff"] <= 1e-4
    assert metrics["parity"]["argmax_agreement"] >= 0.999
    assert metrics["latency_ms_512_2threads"] > 0
    # the seed parameters were chosen on the job's validation images and ship in the contract
    assert metrics["output_kind"] == "distance"
    assert manifest["models"][0]["contract"]["decoding"] == metrics["decoding"]
    assert metrics["val_instance_f1"] >= metrics["val_instance_f1_default_decoding"]

    assert appliance_main(["install-model", str(proj), str(bundle)]) == 0
    project = Project.open(proj)
    try:
        model = active_model(project, "prelabel")
        assert model is not None
        held_out = next(iter(synth_samples(1, 256, seed=999)))  # unseen, and a larger field
        prediction = model.predict(held_out.image)
        assert dice(held_out.cells, prediction.label.instances) >= 0.8
    finally:
        project.close()
