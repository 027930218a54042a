"""``tmn-train fit``: data -> Kalman prior -> micro-GRU -> gate -> engine metrics.

The loss, per loss tick and in output units, is

    L = mean_k ||y_k - target_k||^2  +  smoothness * mean_k ||(D2 u)_k||^2
          +  jitter * mean_k ||e_{i,k} - e_{i-1,k}||^2

where u_k is the predicted path relative to its start (A: ``y_k``; B: the
prior plus the correction, ``v̂ h_k / scale + y_k``) and ``D2`` is the second
difference over the horizons with the boundary values ``u_{-1} = -v Δ / scale``
and ``u_0 = 0`` (the point one horizon step ago at the current velocity, and
the current position): the same smoothness that B's gate projects onto
(docs/gate.md). For B the prior part has zero second difference, so the
penalty acts on the correction alone; it keeps proposals close to what the
projection leaves unchanged. ``e_i = y_i - target_i`` is tick i's error;
its change from the tick before (consecutive ticks of a window) is exactly
the jitter the accuracy report measures, ``(P_i - P_{i-1}) - (T_i -
T_{i-1})`` in output units, so the third term trains against it.

The optimiser is Adam with a one-cycle learning rate (``lr_schedule:
onecycle``: warm up over the first 10 % of steps to ``lr``, then cosine
annealing to ``lr / 1e4``), stepped every window, so the last epochs average
out the noise of the late gradient steps; ``constant`` keeps ``lr``. Every
epoch logs the validation loss beside that of a zero network output (B: the
prior alone; A: no motion), so a network that learns nothing shows while it
trains.
"""

from __future__ import annotations

import json
import math
import pickle
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tmn.artifact import git_sha
from tmn.model import FEATURES
from tmn_train import evaluation, uncertainty
from tmn_train.config import Config, from_saved
from tmn_train.export import artifact_config
from tmn_train.models import MicroGru
from tmn_train.pipeline import (Prepared, SplitArrays, lanes, native_rate, prepare,
                                suggested_rate, targets)
from tmn_train.selection import epoch_plans, selector_for
from tmn_train.sources import load_sources

CHECKPOINT = "checkpoint.pt"
FINAL = "final.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``,
    so a crash leaves either the old checkpoint or the new one, never half of one."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# -- batches and loss ------------------------------------------------------------------

def make_step(a: SplitArrays, start: np.ndarray, cfg: Config, scale: np.ndarray
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One window per lane: (z [b, W, 4], target [b, W, K, 2], boundary velocity [b, W, 2])."""
    w = cfg.ticks(cfg.window_ms)
    idx = start[:, None] + np.arange(w)
    z = torch.from_numpy(a.z[idx])
    tgt = torch.from_numpy(targets(a, idx, cfg, scale).astype(np.float32))
    dh = cfg.horizon_step_ms / 1000.0
    vb = torch.from_numpy((a.vbound[idx] * dh / scale).astype(np.float32))
    return z, tgt, vb


class ZeroNetwork(torch.nn.Module):
    """A network whose outputs are all zero (B: the prior alone; A: no motion), for
    the validation baseline that every epoch logs."""

    def __init__(self, horizons: int) -> None:
        super().__init__()
        self.horizons = horizons

    def forward(self, z: torch.Tensor, h0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return z.new_zeros(z.shape[0], z.shape[1], 2 * self.horizons), h0


def loss_terms(y: torch.Tensor, tgt: torch.Tensor, vb: torch.Tensor, mask: torch.Tensor,
               cfg: Config, prior_rel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE, the weighted penalties) over the lanes in ``mask`` for head outputs
    y [b, W, 2K] (module docstring)."""
    b, w = y.shape[:2]
    y = y.view(b, w, cfg.K, 2)
    m = mask.to(y.dtype)[:, None, None, None]
    n = m.sum() * w * cfg.K * 2
    err = y - tgt
    mse = torch.sum(m * err ** 2) / n
    jitter = torch.sum(m * (err[:, 1:] - err[:, :-1]) ** 2) / n if cfg.jitter > 0 else 0.0
    if prior_rel:
        # B: u = prior + y with prior_k = v Δ (k + 1), whose second difference is zero
        lead = torch.zeros(b, w, 2, 2, dtype=y.dtype)
    else:
        lead = torch.stack([-vb, torch.zeros_like(vb)], dim=2)
    p = torch.cat([lead, y], dim=2)                       # [b, W, K + 2, 2]
    d2 = p[:, :, 2:] - 2 * p[:, :, 1:-1] + p[:, :, :-2]
    return mse, cfg.smoothness * torch.sum(m * d2 ** 2) / n + cfg.jitter * jitter


def sweep(model: torch.nn.Module, a: SplitArrays,
          plan: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: Config, scale: np.ndarray,
          opt: torch.optim.Optimizer | None = None, bar: Any = None,
          sched: torch.optim.lr_scheduler.LRScheduler | None = None) -> tuple[float, float]:
    """Run lanes window by window, hidden state carried and reset where the plan says.

    With ``opt``: one optimiser step per window (truncated BPTT), and one step of
    ``sched`` if given. Returns the mean (MSE, loss) over the loss windows."""
    start, reset, valid = plan
    nb, L = start.shape
    h = torch.zeros(1, nb, cfg.micro_gru.hidden)
    tot_mse = tot_loss = 0.0
    count = 0
    for j in range(L):
        keep = torch.from_numpy(~reset[:, j]).to(h.dtype)[None, :, None]
        h = h * keep                                        # zero state where a lane restarts
        mask = torch.from_numpy(valid[:, j] & ~reset[:, j])
        z, tgt, vb = make_step(a, start[:, j], cfg, scale)
        if opt is None or not bool(mask.any()):
            with torch.no_grad():
                y, h = model(z, h)
                if bool(mask.any()):
                    mse, penalty = loss_terms(y, tgt, vb, mask, cfg, cfg.system == "B")
                    k = int(mask.sum())
                    tot_mse += mse.item() * k
                    tot_loss += (mse + penalty).item() * k
                    count += k
            continue
        y, h = model(z, h)
        mse, penalty = loss_terms(y, tgt, vb, mask, cfg, cfg.system == "B")
        loss = mse + penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        h = h.detach()
        k = int(mask.sum())
        tot_mse += mse.item() * k
        tot_loss += loss.item() * k
        count += k
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return tot_mse / max(count, 1), tot_loss / max(count, 1)


@torch.no_grad()
def val_loss(model: torch.nn.Module, a: SplitArrays, cfg: Config, scale: np.ndarray) -> float:
    """Loss of streaming every validation piece whole (one lane per piece)."""
    model.eval()
    chains = a.chains(cfg)
    tot, n = 0.0, 0
    for i in range(0, len(chains), cfg.batch):
        plan = lanes(chains[i:i + cfg.batch], cfg.batch, cfg.ticks(cfg.window_ms), None)
        if plan[0].size == 0:
            continue
        k = int((plan[2] & ~plan[1]).sum())
        tot += sweep(model, a, plan, cfg, scale)[1] * k
        n += k
    return tot / max(n, 1)


# -- one seed ---------------------------------------------------------------------------

def train_seed(prep: Prepared, seed: int, folder: Path, resume: bool = False,
               tensorboard: Path | None = None, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Train one seed, checkpointing every epoch into ``folder/checkpoint.pt``."""
    cfg = prep.cfg
    torch.set_num_threads(cfg.threads)
    folder.mkdir(parents=True, exist_ok=True)
    ckpt_path = folder / CHECKPOINT
    scale = np.asarray(prep.output_scale)
    tr, va = prep.splits["train"], prep.splits["val"]
    train_chains = tr.chains(cfg)
    if sum(max(len(c) - 1, 0) for c in train_chains) == 0 or \
            sum(max(len(c) - 1, 0) for c in va.chains(cfg)) == 0:
        raise ValueError("no training or validation windows: pieces are shorter than "
                         "2 windows + the longest horizon; add data")

    # 1. model, optimiser, state (fresh or resumed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MicroGru(cfg.micro_gru.hidden, cfg.K, len(FEATURES[cfg.system]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = _schedule(opt, cfg, train_chains)
    state: dict[str, Any] = {"epoch": 0, "best_val": math.inf, "best_epoch": 0,
                             "history": [], "finished": False, "initial_val": math.nan,
                             "zero_val": math.nan}
    best_model = {k: v.clone() for k, v in model.state_dict().items()}
    if resume and ckpt_path.is_file():
        best_model = _resume(ckpt_path, cfg, seed, model, opt, sched, rng, state)
        log(f"seed {seed}: resumed after epoch {state['epoch']}")
    selector = selector_for(cfg, tr, train_chains, scale, seed, log)  # None: uniform passes
    writer = _tensorboard(tensorboard, seed, log)
    if state["epoch"] == 0:
        state["initial_val"] = val_loss(model, va, cfg, scale)
        state["zero_val"] = val_loss(ZeroNetwork(cfg.K), va, cfg, scale)

    # 2. epochs: `passes` sweeps of lanes (TBPTT, a step per window); validate; checkpoint
    # (on resume, a run stopped early stays stopped unless patience was raised)
    while state["epoch"] < cfg.epochs and state["epoch"] - state["best_epoch"] < cfg.patience:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        plans, sel_s = epoch_plans(selector, train_chains, cfg, rng, epoch, model)
        train_mse, train_loss, steps = _train_epoch(model, tr, plans, cfg, scale, opt, sched,
                                                    f"seed {seed} epoch {epoch}")
        if writer is not None:
            writer.add_scalar("train/loss", train_loss, epoch)
        vl = val_loss(model, va, cfg, scale)
        better = vl < state["best_val"]
        if better:
            state["best_val"], state["best_epoch"] = vl, epoch
            best_model = {k: v.clone() for k, v in model.state_dict().items()}
        secs = time.perf_counter() - t0
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "train_mse": train_mse,
                                 "val_loss": vl, "zero_val_loss": state["zero_val"],
                                 "lr": opt.param_groups[0]["lr"], "seconds": secs,
                                 "selection_seconds": sel_s})
        state["epoch"] = epoch
        if epoch - state["best_epoch"] >= cfg.patience:
            log(f"seed {seed}: early stop, no better validation loss for {cfg.patience} epochs")
        log(f"seed {seed} epoch {epoch:2d}/{cfg.epochs} train {train_loss:.5f} "
            f"val {vl:.5f}{' *' if better else '  '} (zero output {state['zero_val']:.5f}) "
            f"best {state['best_val']:.5f}@{state['best_epoch']} "
            f"lr {opt.param_groups[0]['lr']:.2g} steps {steps} {secs:.1f}s"
            + (f" (selection {sel_s:.1f}s)" if selector is not None else ""))
        if writer is not None:
            writer.add_scalar("val/loss", vl, epoch)
        save_atomic({"config": cfg.to_dict(), "seed": seed, "model": model.state_dict(),
                     "best_model": best_model, "optimizer": opt.state_dict(),
                     "scheduler": None if sched is None else sched.state_dict(),
                     "rng": {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()},
                     **state}, ckpt_path)
    if writer is not None:
        writer.close()
    state["finished"] = True
    return {"seed": seed, "best_model": best_model, **state}


def _train_epoch(model: MicroGru, tr: SplitArrays,
                 plans: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cfg: Config,
                 scale: np.ndarray, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler | None,
                 desc: str) -> tuple[float, float, int]:
    """One sweep per lane plan (TBPTT, a step per window), with a progress bar:
    (train MSE, train loss, optimiser steps)."""
    model.train()
    steps = sum(p[0].shape[1] - int(p[1][:, 0].all()) for p in plans)
    bar = tqdm(total=steps, desc=desc, leave=False, unit="step", dynamic_ncols=True,
               disable=None)
    sums = [sweep(model, tr, plan, cfg, scale, opt, bar, sched) for plan in plans]
    bar.close()
    return float(np.mean([m for m, _ in sums])), float(np.mean([x for _, x in sums])), steps


def _schedule(opt: torch.optim.Optimizer, cfg: Config, chains: list[np.ndarray]
              ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The one-cycle learning rate over every optimiser step of the run (module
    docstring), or None for ``lr_schedule: constant``. Every pass lays the same
    chains into lanes of the same length, so the step count is known up front."""
    if cfg.lr_schedule == "constant":
        return None
    per_pass = lanes(chains, cfg.batch, cfg.ticks(cfg.window_ms), np.random.default_rng(0))[0]
    total = cfg.epochs * cfg.data.passes * per_pass.shape[1]
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total + 1,
                                               pct_start=0.1, anneal_strategy="cos",
                                               div_factor=25.0, final_div_factor=400.0)


def _resume(path: Path, cfg: Config, seed: int, model: MicroGru, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LRScheduler | None, rng: np.random.Generator,
            state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load a checkpoint into the model, optimiser, schedule, generators and
    ``state`` (in place); returns the best model so far."""
    ck = torch.load(path, weights_only=False)
    _check_resumable(ck, cfg, seed, path)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    if sched is not None:
        sched.load_state_dict(ck["scheduler"])
    rng.bit_generator.state = ck["rng"]["numpy"]
    torch.set_rng_state(ck["rng"]["torch"])
    state.update({k: ck[k] for k in state})
    return ck["best_model"]


def _check_resumable(ck: dict[str, Any], cfg: Config, seed: int, path: Path) -> None:
    """Refuse to resume a checkpoint of another config or seed. Only patience may
    change, and epochs too under a constant learning rate (the one-cycle schedule
    is laid over the epochs the run started with)."""
    free = ("patience",) if cfg.lr_schedule == "onecycle" else ("epochs", "patience")

    def resumable(c: Config) -> dict[str, Any]:
        return {k: v for k, v in c.to_dict().items() if k not in free}

    if resumable(from_saved(ck["config"], where=str(path))) != resumable(cfg) or ck["seed"] != seed:
        raise ValueError(f"{path}: --resume with a different config or seed (only "
                         f"{' and '.join(free)} may change); use a new --out folder")


def _tensorboard(folder: Path | None, seed: int, log):  # type: ignore[no-untyped-def]
    if folder is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log("--tensorboard: the tensorboard package is not installed "
            "(pip install tensorboard); logging to the console only")
        return None
    return SummaryWriter(str(Path(folder) / f"seed-{seed}"))


# -- the whole fit ------------------------------------------------------------------------

def fit(cfg: Config, data: list[str], out: Path, seeds: list[int], resume: bool = False,
        tensorboard: Path | None = None, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Train every seed, keep the best on validation, calibrate, evaluate, save final.pt."""
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n",
                                     encoding="utf-8")
    # 1. data, splits, Kalman prior, normalisation (all fitted on train)
    streams = load_sources(data, cfg)
    _advise_rate(streams, cfg, log)
    prep = prepare(streams, cfg, log=log)
    sizes = {k: int(len(v.t)) for k, v in prep.splits.items()}
    log(f"data: {len(streams)} streams; ticks train {sizes['train']} val {sizes['val']} "
        f"test {sizes['test']}; output_scale {[round(v, 4) for v in prep.output_scale]}")

    # 2. train every seed; the lowest validation loss wins
    t_train = time.perf_counter()
    runs = [train_seed(prep, s, out / f"seed-{s}", resume, tensorboard, log) for s in seeds]
    train_secs = time.perf_counter() - t_train
    best = min(runs, key=lambda r: r["best_val"])
    model = MicroGru(cfg.micro_gru.hidden, cfg.K, len(FEATURES[cfg.system]))
    model.load_state_dict(best["best_model"])
    tensors = model.artifact_tensors()

    # 3. gate calibration on validation (B), through the engine
    config = artifact_config(cfg, prep.mean, prep.std, prep.output_scale, prep.kalman)
    gate = None
    if cfg.system == "B":
        gate = evaluation.calibrate_gate(config, tensors, prep.splits["val"], cfg, log=log)
        config = artifact_config(cfg, prep.mean, prep.std, prep.output_scale, prep.kalman, gate)

    # 4. the uncertainty radius on validation, through the engine
    unc = uncertainty.calibrate_radius(config, tensors, prep.splits["val"], cfg, log=log)
    config = dict(config, uncertainty=unc)

    # 5. held-out accuracy through the engine: FP32, INT8, baselines
    metrics = {"test": evaluation.evaluate(config, tensors, prep.splits["test"], cfg)}
    _log_metrics(metrics["test"], log)
    final = {
        "config": cfg.to_dict(),
        "tensors": tensors,
        "normalisation": {"mean": prep.mean, "std": prep.std, "output_scale": prep.output_scale},
        "kalman": prep.kalman,
        "gate": None if gate is None else {k: gate[k] for k in ("lambda", "threshold", "variance",
                                                                "chosen")},
        "gate_trace": None if gate is None else gate["trace"],
        "uncertainty": unc,
        "provenance": {
            "trainer": "tmn-train fit",
            "data": data,
            "seed": best["seed"],
            "seeds": {str(r["seed"]): {"initial_val": r["initial_val"], "best_val": r["best_val"],
                                       "best_epoch": r["best_epoch"], "epochs_run": r["epoch"]}
                      for r in runs},
            "git_sha": git_sha(),
            "torch": torch.__version__,
            "ticks": sizes,
            "train_seconds": round(train_secs, 1),
            "total_seconds": round(time.perf_counter() - t_start, 1),
            "history": best["history"],
            "metrics": metrics,
        },
    }
    save_atomic(final, out / FINAL)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log(f"fit: wrote {out / FINAL} (seed {best['seed']}, {train_secs:.0f} s training, "
        f"{time.perf_counter() - t_start:.0f} s in all)")
    return final


def _advise_rate(streams: list, cfg: Config, log) -> None:  # type: ignore[no-untyped-def]
    """Say so when the recordings are much slower than the model grid: the grid then
    holds mostly interpolated samples, and training takes longer for nothing."""
    native = native_rate(streams)
    if native is not None and cfg.sample_rate_hz > 4.0 * native:
        rate = suggested_rate(native, cfg)
        log(f"data: the recordings come at about {native:.0f} Hz, the model grid is "
            f"{cfg.sample_rate_hz:g} Hz; --set sample_rate_hz={rate:g} trains about "
            f"{cfg.sample_rate_hz / rate:.0f}x faster on the same information (window_ms "
            f"and horizon_step_ms are whole samples there)")


def _log_metrics(m: dict[str, Any], log) -> None:  # type: ignore[no-untyped-def]
    rows = [("fp32", m["fp32"]), ("int8", m["int8"]), ("kalman_only", m["kalman_only"]),
            ("constant_velocity", m["constant_velocity"])]
    for name, r in rows:
        extra = f" pass {r['pass_rate']:.3f}" if "pass_rate" in r else ""
        log(f"test {name:18s} @500ms P50 {r['p50'][-1]:9.4g} P90 {r['p90'][-1]:9.4g} "
            f"P99 {r['p99'][-1]:9.4g} MSE {r['mse'][-1]:10.4g} jitter {r['jitter']:.4g}{extra}")
    log(f"test int8/fp32 MSE@500 ratio {m['int8_mse_ratio']:.4f} "
        f"(all horizons {m['int8_mse_ratio_all']:.4f})")
    if "coverage" in m["int8"]:
        c = m["int8"]["coverage"]
        log(f"test int8 90% radius coverage {min(c):.3f}-{max(c):.3f} over the horizons "
            f"({c[-1]:.3f} at the last)")


def load_final(path: Path) -> tuple[Config, dict[str, Any]]:
    try:
        ck = torch.load(path, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a checkpoint written by tmn-train fit ({e})") from e
    if not isinstance(ck, dict) or "tensors" not in ck:
        raise ValueError(f"{path}: not a final checkpoint of tmn-train fit (no tensors); "
                         "export the final.pt that fit writes")
    return from_saved(ck["config"], where=str(path)), ck
