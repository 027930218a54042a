"""A training smoke run: tiny data, a few epochs, the loss goes down; checkpoints
are atomic and --resume continues."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from tmn_train.train import CHECKPOINT, fit, save_atomic

from train_helpers import tiny_config


def test_a_tiny_training_run_lowers_the_loss_within_a_minute(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    out = tmp_path / "run"
    final = fit(tiny_config("B"), ["synth:0.5:5"], out, [0], log=lambda m: None)
    assert time.perf_counter() - t0 < 60
    seed = final["provenance"]["seeds"]["0"]
    hist = final["provenance"]["history"]
    assert seed["best_val"] < seed["initial_val"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert (out / "seed-0" / CHECKPOINT).is_file() and (out / "final.pt").is_file()


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_config("A", "epochs=1", "lr_schedule=constant")
    fit(cfg, ["synth:0.4:6"], out, [0], log=lambda m: None)
    ck = torch.load(out / "seed-0" / CHECKPOINT, weights_only=False)
    assert ck["epoch"] == 1
    lines: list[str] = []
    final = fit(tiny_config("A", "epochs=2", "lr_schedule=constant"), ["synth:0.4:6"], out, [0],
                resume=True, log=lines.append)
    assert any("resumed after epoch 1" in m for m in lines)
    assert [h["epoch"] for h in final["provenance"]["history"]] == [1, 2]
    with pytest.raises(ValueError, match="different config"):
        fit(tiny_config("A", "epochs=3", "lr=0.01", "lr_schedule=constant"), ["synth:0.4:6"],
            out, [0], resume=True, log=lambda m: None)


def test_a_one_cycle_run_resumes_on_its_own_schedule_and_refuses_new_epochs(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(tiny_config("A", "epochs=2"), ["synth:0.4:6"], out, [0], log=lambda m: None)
    ck = torch.load(out / "seed-0" / CHECKPOINT, weights_only=False)
    lrs = [h["lr"] for h in ck["history"]]
    assert lrs[1] < lrs[0] * 0.5  # annealed by the end of the run
    assert ck["scheduler"]["last_epoch"] > 0
    with pytest.raises(ValueError, match="only patience may change"):
        fit(tiny_config("A", "epochs=3"), ["synth:0.4:6"], out, [0], resume=True,
            log=lambda m: None)


def test_every_epoch_logs_the_validation_loss_of_a_zero_output(tmp_path: Path) -> None:
    lines: list[str] = []
    final = fit(tiny_config("B", "epochs=1"), ["synth:0.4:6"], tmp_path / "run", [0],
                log=lines.append)
    h = final["provenance"]["history"][0]
    assert 0 < h["zero_val_loss"] < float("inf") and h["zero_val_loss"] != h["val_loss"]
    assert any("(zero output " in m for m in lines)


def test_checkpoints_are_written_to_a_temporary_file_then_renamed(tmp_path: Path,
                                                                    monkeypatch) -> None:
    path = tmp_path / "c.pt"
    save_atomic({"a": 1}, path)
    calls: list[tuple[str, str]] = []
    import os

    real = os.replace
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (calls.append((str(a), str(b))), real(a, b))[1])
    save_atomic({"a": 2}, path)
    assert calls and calls[0][1] == str(path) and calls[0][0] != str(path)
    assert torch.load(path, weights_only=False) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
