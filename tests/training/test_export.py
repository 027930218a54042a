"""Export: the artifact folder tmn.load reads back and the engine replays, and its
ONNX single step against torch through onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tmn
from tmn_train import evaluation, scoring, synth
from tmn_train.export import artifact_config
from tmn_train.cli import main
from tmn_train.config import from_dict
from tmn_train.models import MicroGru
from tmn_train.pipeline import build_split

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("system", ["A", "B"])
def test_export_then_load_then_replay_round_trips(tiny_runs, tmp_path: Path, system: str) -> None:
    out, ck = tiny_runs[system]
    folder = tmp_path / "model"
    assert main(["export", str(out / "final.pt"), "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "model.onnx", "model.safetensors"]
    model = tmn.load(folder)
    assert model.system == system and model.hidden == 32 and len(model.horizons_ms) == 10
    prov = model.config["provenance"]
    assert prov["data"] == ["synth:0.75:3"] and prov["seed"] == 0 and prov["git_sha"]
    assert "test" in prov["metrics"] and from_dict(prov["config"]).system == system
    for name, arr in ck["tensors"].items():
        assert np.array_equal(model.tensors[name], arr)
    # the file-backed engine answers exactly like the in-memory one used for the metrics
    cfg = from_dict(ck["config"])
    n = ck["normalisation"]
    a = build_split([synth.generate(0.1, seed=42)[0]], cfg, n["mean"], n["std"], ck["kalman"])
    config = artifact_config(cfg, n["mean"], n["std"], n["output_scale"],
                                         ck["kalman"], ck["gate"])
    for precision in ("fp32", "int8"):
        r_file = scoring.replay(model, a, precision)
        r_mem = scoring.replay(evaluation.memory_model(config, ck["tensors"]), a, precision)
        assert np.array_equal(r_file.paths, r_mem.paths)
        assert np.array_equal(r_file.verdict, r_mem.verdict)
    assert np.isfinite(r_file.paths).all()
    card = (folder / "README.md").read_text()
    assert f"System {system}" in card and "P99 @500 ms" in card


def test_the_onnx_single_step_matches_torch_through_onnxruntime(tiny_runs, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    out, ck = tiny_runs["B"]
    folder = tmp_path / "model"
    main(["export", str(out / "final.pt"), "--out", str(folder)])
    sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    net = MicroGru.from_tensors(ck["tensors"])
    rng = np.random.default_rng(0)
    h_ort = np.zeros((1, 32), np.float32)
    h_t = torch.zeros(1, 1, 32)
    for _ in range(200):  # carried, like a stream
        z = rng.normal(0, 1.5, (1, ck["tensors"]["gru.weight_ih"].shape[1])).astype(np.float32)
        y_ort, h_ort = sess.run(["y", "h_next"], {"x": z, "h": h_ort})
        with torch.no_grad():
            y_t, h_t = net(torch.from_numpy(z)[None], h_t)
        assert np.abs(y_ort - y_t[0].numpy()).max() <= 1e-5
        assert np.abs(h_ort - h_t[0].numpy()).max() <= 1e-5


def test_synth_writes_a_recording_and_errors_exit_with_code_2(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--minutes", "0.05", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert set(z.files) == {"t", "x", "y", "vx", "vy", "stream"} and len(z["t"]) == 6000
    code = main(["fit", "--config", str(REPO / "configs" / "A_traditional.yaml"), "--data",
                 str(tmp_path / "s.npz"), "--out", str(tmp_path / "o"), "--set", "bogus=1"])
    assert code == 2 and "unknown key 'bogus'" in capsys.readouterr().err


def test_the_built_in_default_model_is_small_and_carries_its_provenance() -> None:
    folder = REPO / "python" / "tmn" / "models" / "default"
    if not folder.is_dir():
        pytest.skip("no built-in model yet (training/recipes/default.sh writes it)")
    model = tmn.load(folder)
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 100_000
    prov = model.config["provenance"]
    assert prov["data"] and prov["git_sha"] and "metrics" in prov and "config" in prov
    cfgj = json.loads((folder / "config.json").read_text())
    assert cfgj["system"] == "B"
    tmn.Engine(model, precision="int8").tick(0.0, 1.0, 2.0, 0.0, 0.0)
