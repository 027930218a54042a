"""``tmn-bench accuracy``: replay held-out recordings through the engine with every
model (FP32 and INT8) and the baselines (Kalman-only, constant velocity);
per-horizon metrics, B-vs-A and B-vs-Kalman statistics, targets MET or MISSED.
It trains nothing (bench/README.md, "The accuracy benchmark").

``evaluate`` runs it, with its own metrics (``metrics``), statistics
(``stats``) and report (``report``). It needs the training package, whose
held-out scoring (``tmn_train.scoring``) and data loaders it uses.
"""
