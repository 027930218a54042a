"""tmn-hub (tmn_bench.hub_card, hub_cli): the model-repo folder of the built-in
model from the reference accuracy result, its card read back by
huggingface_hub, the shipped folder kept in step, and publish's dry run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import tmn
from tmn.hub import repo_files
from tmn.model import DEFAULT_MODEL_DIR
from tmn.testing import random_model
from tmn_bench.hub_card import PIPELINE_TAG, CardError, write_repo_folder
from tmn_bench.hub_cli import main

huggingface_hub = pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parents[2]
ACCURACY = ROOT / "bench" / "reference" / "accuracy-synth" / "accuracy.json"
LATENCY = ROOT / "bench" / "reference" / "latency" / "latency.json"
RECIPE = ROOT / "training" / "recipes" / "default.sh"
SHIPPED = ROOT / "python" / "tmn" / "models" / "default"
FILES = ["DATASET.md", "README.md", "config.json", "eval/error_cdf_0.png",
         "eval/error_vs_horizon_0.png", "examples/inference.py", "examples/train.sh",
         "examples/zmq_client.py", "model.onnx", "model.safetensors"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "tmn-default"
    assert main(["folder", str(SHIPPED), "--out", str(out), "--accuracy", str(ACCURACY),
                 "--recipe", str(RECIPE), "--latency", str(LATENCY)]) == 0
    return out


def test_the_folder_holds_the_artifact_byte_for_byte_and_the_extra_files(folder: Path) -> None:
    assert repo_files(folder) == FILES
    for f in ("config.json", "model.safetensors", "model.onnx"):
        assert (folder / f).read_bytes() == (SHIPPED / f).read_bytes(), f
    assert (folder / "examples" / "train.sh").read_bytes() == RECIPE.read_bytes()
    assert tmn.load(folder).config == tmn.load(SHIPPED).config


def test_the_card_metadata_has_every_field_from_the_accuracy_json(folder: Path) -> None:
    from huggingface_hub import ModelCard, metadata_load

    meta = metadata_load(folder / "README.md")
    assert meta is not None
    assert (meta["license"], meta["library_name"], meta["pipeline_tag"]) == (
        "mit", "tmn", PIPELINE_TAG)
    assert "motion-prediction" in meta["tags"] and meta["datasets"] == ["synth:20"]
    acc = json.loads(ACCURACY.read_text())
    b0 = next(m for m in acc["models"] if m["label"] == "B0")
    prov = tmn.load(SHIPPED).config["provenance"]
    assert (b0["system"], b0["seed"], b0["trained_on"], b0["git_sha"]) == (
        "B", prov["seed"], prov["data"], prov["git_sha"])  # B0 is the built-in model
    ds = acc["datasets"][0]
    figures = ds["predictors"]["B0 int8"]
    want = {"p50_error": figures["p50"][-1], "p90_error": figures["p90"][-1],
            "p99_error": figures["p99"][-1], "mse": figures["mse"][-1],
            "jitter": figures["jitter"][-1],
            "gate_pass_rate": ds["gate"]["B0 int8"]["pass_rate"],
            "certificate_mean": ds["gate"]["B0 int8"]["cert_mean"]}
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == PIPELINE_TAG
    assert result["dataset"] == {"type": "synthetic", "name": "synth:20 (test split)"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == want
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results and card.data.eval_results[0].metric_value == want["p50_error"]
    for section in ("## Description", "## Intended use", "## Training procedure",
                    "## Evaluation", "## Latency", "## Limitations", "## How to cite"):
        assert section in card.text
    assert "AMD EPYC" in card.text and "1e+30" in card.text and "batch 1" in card.text


def test_the_dataset_file_describes_the_generator(folder: Path) -> None:
    from tmn_train import synth

    text = (folder / "DATASET.md").read_text()
    assert "synth:20" in text and all(r in text for r in synth.REGIMES)


def test_the_inference_example_runs(folder: Path) -> None:
    import runpy

    runpy.run_path(str(folder / "examples" / "inference.py"), run_name="__main__")


SHIPPED_FILES = [f for f in FILES if not f.startswith("eval/")]


def test_the_shipped_built_in_folder_is_this_card(tmp_path: Path) -> None:
    """python/tmn/models/default is regenerated with tmn-hub folder --no-plots
    (docs/hub.md): the same files, the same card."""
    out = tmp_path / "tmn-default"
    assert main(["folder", str(SHIPPED), "--out", str(out), "--accuracy", str(ACCURACY),
                 "--recipe", str(RECIPE), "--refer-to-recipe", "--latency", str(LATENCY),
                 "--no-plots"]) == 0
    assert repo_files(SHIPPED) == repo_files(out) == SHIPPED_FILES
    for f in SHIPPED_FILES:
        assert (SHIPPED / f).read_bytes() == (out / f).read_bytes(), f


def test_the_built_in_training_example_runs_the_recipe_of_a_checkout(tmp_path: Path) -> None:
    """examples/train.sh of the built-in model refers to training/recipes/default.sh
    (it was a copy, whose cd from examples/ led nowhere): run with a checkout
    whose recipe only records its arguments, it runs that recipe."""
    recipe = tmp_path / "checkout" / "training" / "recipes" / "default.sh"
    recipe.parent.mkdir(parents=True)
    recipe.write_text('echo "$*" > "$(dirname "$0")/ran"\n')
    r = subprocess.run(["bash", str(SHIPPED / "examples" / "train.sh"),
                        str(tmp_path / "checkout"), "build/run"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert (recipe.parent / "ran").read_text() == "build/run\n"
    assert "tmn-train" not in (SHIPPED / "examples" / "train.sh").read_text()  # no second copy


def test_a_recipe_outside_a_tmn_checkout_cannot_be_referred_to(tmp_path: Path) -> None:
    mine = tmp_path / "train.sh"
    mine.write_text("tmn-train fit --data my.csv --out run\n")
    with pytest.raises(CardError, match="not in a tmn checkout"):
        write_repo_folder(SHIPPED, tmp_path / "out", ACCURACY, mine, refer_to_recipe=True)


def test_the_installed_built_in_model_has_its_extra_files() -> None:
    """Package data: the examples and cards install with the weights."""
    assert repo_files(DEFAULT_MODEL_DIR) == SHIPPED_FILES


def test_an_accuracy_json_of_other_models_is_refused(tmp_path: Path) -> None:
    other = random_model(tmp_path / "m", system="B", seed=1)
    with pytest.raises(CardError, match="0 models match"):
        write_repo_folder(other, tmp_path / "out", ACCURACY, RECIPE)
    with pytest.raises(CardError, match="model A0 .* is not"):
        write_repo_folder(SHIPPED, tmp_path / "out", ACCURACY, RECIPE, label="A0")


def test_publish_dry_run_lists_exactly_the_folder_files(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(folder), "--repo", "acme/tmn-default", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"would upload {len(FILES)} files from {folder} to acme/tmn-default:"
    assert [x.strip() for x in lines[1:]] == FILES


def test_publish_without_a_token_is_one_line_and_exit_2(
        folder: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["publish", str(folder), "--repo", "acme/tmn-default"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tmn-hub: error: no Hugging Face token") and err.count("\n") == 1


def test_publish_refuses_a_folder_that_is_no_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(SHIPPED, tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{}")
    assert main(["publish", str(tmp_path / "m"), "--repo", "acme/x", "--dry-run"]) == 2
    assert "field 'format_version'" in capsys.readouterr().err


def test_a_json_that_is_no_accuracy_result_is_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["folder", str(SHIPPED), "--out", str(tmp_path / "o"), "--accuracy",
                 str(LATENCY), "--recipe", str(RECIPE)]) == 2
    err = capsys.readouterr().err
    assert err == f"tmn-hub: error: {LATENCY}: not the result expected: $.settings: missing\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("ref", [None, "owner/name", "hf"])
def test_the_examples_are_valid_python_for_every_kind_of_model(ref: str | None) -> None:
    """A Hub repo or a local folder's inference.py ended its docstring with
    ``"tmn[hub]""""``: a SyntaxError (found by docs/tutorial.md's test)."""
    from tmn_bench.hub_card import examples

    for name, text in examples(ref).items():
        compile(text, name, "exec")
