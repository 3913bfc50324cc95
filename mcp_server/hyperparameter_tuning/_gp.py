"""The Bayesian searcher's Gaussian process: scikit-optimize's, with a cheap predictive variance.

After every told point scikit-optimize refits its GP and evaluates the acquisition on a few
thousand sampled points, once per acquisition function (three with ``gp_hedge``). Its fit inverts
the kernel matrix explicitly (two O(trials³) products) and its predictive variance is an
unoptimized three-operand ``einsum`` — O(points × trials²) outside BLAS, 56% of a proposal at 150
trials (docs/tuning.md). This GP keeps the Cholesky factor instead, computes the variance with one
triangular solve in BLAS and answers the repeated query from a cache. The numbers are the same up
to rounding, so the same seed gives the same proposals. ``fitted_kernel`` lets the Bayesian
searcher reuse a fit's kernel hyperparameters for the next refits once the search is long
(``_strategies.STABLE_AFTER``), which makes those refits one Cholesky factorization.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor as SklearnGP
from skopt.learning import GaussianProcessRegressor
from skopt.learning.gaussian_process.kernels import WhiteKernel


# The kernel's hyperparameters are searched on at most this many points (a seeded subsample): each
# step of that search is O(points³), and a long search would otherwise spend most of a proposal
# there; lengthscales and noise estimated from 200 points hardly differ (docs/tuning.md).
SEARCH_POINTS = 200


def _white_kernel_param(kernel) -> str | None:
    """The parameter name of the WhiteKernel inside a sum kernel (skopt's GP adds one), if any."""
    for name, part in kernel.get_params().items():
        if isinstance(part, WhiteKernel):
            return name
    return None


class FastGP(GaussianProcessRegressor):
    """scikit-optimize's GP; ``predict(X, return_std=True)`` through BLAS, cached for the last X."""

    def fit(self, X, y):
        """scikit-optimize's fit (a learned white-noise term, zeroed for prediction) without the
        explicit inverse of the kernel matrix; ``K_inv_`` is computed only if a gradient asks."""
        self._last_query: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None = None
        self._K_inv = None
        if self.noise and _white_kernel_param(self.kernel) is None:
            self.kernel = self.kernel + (WhiteKernel() if self.noise == "gaussian"
                                         else WhiteKernel(noise_level=self.noise, noise_level_bounds="fixed"))
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        if self.optimizer is not None and len(X) > SEARCH_POINTS:
            # Search the kernel's hyperparameters on a seeded subsample, then factor all points once.
            rows = np.random.default_rng(len(X)).choice(len(X), SEARCH_POINTS, replace=False)
            SklearnGP.fit(self, X[rows], y[rows])
            search, self.kernel, self.optimizer = (self.kernel, self.optimizer), self.kernel_, None
            try:
                SklearnGP.fit(self, X, y)
            finally:
                self.kernel, self.optimizer = search
        else:
            SklearnGP.fit(self, X, y)
        self.noise_ = None
        if self.noise:
            # K(X, X) includes the noise (it is in alpha_ and L_); K(x*, x*) at prediction must not.
            white = _white_kernel_param(self.kernel_)
            if white is not None:
                self.noise_ = self.kernel_.get_params()[white].noise_level
                self.kernel_.set_params(**{white: WhiteKernel(noise_level=0.0)})
            elif isinstance(self.kernel_, WhiteKernel):
                self.kernel_.set_params(noise_level=0.0)
        self.y_train_std_, self.y_train_mean_ = self._y_train_std, self._y_train_mean
        return self

    @property
    def K_inv_(self) -> np.ndarray:
        # Only scikit-optimize's gradient path reads it (acq_optimizer="lbfgs").
        if self._K_inv is None:
            L_inv = solve_triangular(self.L_.T, np.eye(self.L_.shape[0]))
            self._K_inv = L_inv.dot(L_inv.T)
        return self._K_inv

    def predict(self, X, return_std=False, return_cov=False, return_mean_grad=False, return_std_grad=False):
        if not return_std or return_cov or return_mean_grad or return_std_grad or not hasattr(self, "X_train_"):
            return super().predict(X, return_std=return_std, return_cov=return_cov,
                                   return_mean_grad=return_mean_grad, return_std_grad=return_std_grad)
        X = np.asarray(X, dtype=float)
        cached = self._last_query
        if cached is not None and cached[0].shape == X.shape and np.array_equal(cached[0], X):
            return cached[1]
        K_trans = self.kernel_(X, self.X_train_)
        y_mean = self.y_train_std_ * K_trans.dot(self.alpha_) + self.y_train_mean_
        # diag(K_trans K⁻¹ K_transᵀ) = column sums of V² with V = L⁻¹ K_transᵀ (K = L Lᵀ).
        V = solve_triangular(self.L_, K_trans.T, lower=True, check_finite=False)
        y_var = self.kernel_.diag(X) - np.einsum("ij,ij->j", V, V)
        y_std = np.sqrt(np.clip(y_var, 0.0, None) * self.y_train_std_**2)
        self._last_query = (X.copy(), (y_mean, y_std))
        return y_mean, y_std

    def fitted_kernel(self):
        """The kernel with the hyperparameters this fit found, noise included (zeroed after
        fitting): refitting with it and no optimizer reuses them."""
        kernel = clone(self.kernel_)
        white = _white_kernel_param(kernel)
        if self.noise_ is not None and white is not None:
            kernel.set_params(**{white: WhiteKernel(noise_level=float(self.noise_))})
        return kernel
