"""``tmn-bench accuracy``: A, B and the baselines on held-out recordings
(``evaluate``), with its own metrics (``metrics``), statistics (``stats``) and
report (``report``). It needs the training package, whose held-out scoring
(``tmn_train.scoring``) and data loaders it uses.
"""
