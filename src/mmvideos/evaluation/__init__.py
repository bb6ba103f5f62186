"""Evaluation of the learned representations: the transfer heads, metrics and references.

``fit`` (the shallow transfer head: model, Adam training, penalty search), ``lbfgs`` (its
L-BFGS optimiser), ``metrics`` (Top-n, mAP, AUC), ``baselines`` (the reference
representations: log-mel statistics, Google's VGGish), ``paper_results`` (the paper's
figures, shown beside ours), ``uncertainty`` (bootstrap intervals, fold spread, paired differences)
and ``results`` (seeds merged, rows compared, the table as data). The ``transfer`` stage (:mod:`mmvideos.stages.transfer`) runs them.
"""
