"""The definitions section of REPORT.md: how each number is computed."""

DEFINITIONS = """\
## Definitions

Probes use the trained float32 weights with the model in eval mode (fixed BatchNorm
statistics), except where a section says otherwise (perturbation losses in float64; path and
subspace training use batch statistics and recompute them at evaluated points). "Probe subset" = a fixed, unaugmented subset of the training split drawn with
`data.probe_seed`: the same images for every optimizer and seed. Tables give mean ± sample std
over seeds (n = number of seeds with a result).

- **Training**: train accuracy/loss are averages over the last epoch's augmented batches; val
  accuracy/loss on the (sub)set test split, unaugmented. *Epochs to 90%*: first epoch whose val
  accuracy reaches 90% of the final val accuracy.
- **Spectrum** (`probe=lanczos`): Hessian of the mean cross-entropy over the probe subset (no
  weight decay term unless `probe.include_weight_decay`). Extreme eigenvalues by Lanczos with
  full reorthogonalisation (Lanczos 1950; Paige 1972), stopped when every extreme Ritz pair has
  residual ‖Hv − θv‖ ≤ tol·max|θ|. λmax/λmin are mean ± std over `probe.repeats` disjoint
  subsets. |λmin|/λmax measures how indefinite the Hessian is; it is not a condition number.
  Trace by Hutchinson's estimator (Rademacher probes, ± standard error; Hutchinson 1989).
  Density and negative mass by stochastic Lanczos quadrature (Ghorbani et al. 2019): the
  negative mass is the quadrature weight on negative Ritz values, averaged over probe vectors;
  it is smoothed by the Gaussian kernel width and biased toward zero for tiny negative mass.
- **Noise** (`probe=noise`): per-sample gradients g_i on n probe images; C = (1/n) Σ (g_i − ḡ)
  (g_i − ḡ)ᵀ (centred, per-sample). SGD's mini-batch noise covariance is C/B for batch size B.
  λC = top eigenvalue of C via the n×n Gram matrix (exact), λH = top Hessian eigenvalue on the
  same samples; ratio = λC/λH; alignment = v_Hᵀ C v_H / λH (Jastrzębski et al. 2018; Zhu et al.
  2019; Thomas et al. 2020). The estimate of λC is biased upward when n is small relative to the
  rank of C, roughly by tr(C)/n: compare the values across n.
- **Perturbation** (`probe=perturbation`): loss on the probe subset at θ + εv for the top Hessian
  eigenvector v; curvature by central differences (L(ε) − 2L(0) + L(−ε))/ε², which tends to
  λtop as ε → 0 with an O(ε²) error for a twice-differentiable loss (ReLU and max-pool kinks make a
  network's loss only piecewise smooth: there it can stay a few % off); loss range over the grid. A filter-normalised random
  direction (Li et al. 2018) for comparison.
- **Intrinsic dimension** (`probe=intrinsic_dim`; Li et al. 2018): train θ0 + Pz over z ∈ R^d
  from the initialisation with the job's optimizer; d_int90 = smallest d whose test accuracy
  reaches 90% of the full-space model's test accuracy (and a log-linear interpolated value);
  reached_90 = fraction of runs where some d did (else d_int90 > d_max, the largest d tried).
- **Paths**: linear barrier (Entezari et al. 2022) = max over α ∈ [0,1] of L(θα) − ((1−α)La +
  αLb) on the probe subset, BatchNorm statistics recomputed at each α; AutoNEB (Draxler et al.
  2018) and quadratic Bézier curves (Garipov et al. 2018): barrier = max loss along the path −
  max endpoint loss on a fixed evaluation set.
"""
