"""The MLflow tracking server for attention-sweeper: safe defaults, one command.

``python -m mlflow_server`` (or ``sweeper ui``) serves the runs that ``sweeper launch`` writes by
default, on loopback only; reaching it from other machines needs ``--expose`` and a password.
``options`` builds the server's command line (pure, tested without a server); ``process`` runs it.
"""
