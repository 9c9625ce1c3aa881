"""attention-sweeper: Ray Tune + Optuna sweeps of attention architectures, tracked in MLflow."""

__version__ = "0.1.0"
