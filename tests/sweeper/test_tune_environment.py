"""Ray Tune's settings for a sweep (launch and resume set them alike: tune_environment)."""
from __future__ import annotations

import os

import pytest
from ray.tune import Trainable
from ray.tune.execution import class_cache

from sweeper.launcher import tune_environment


@pytest.fixture
def fresh_settings(monkeypatch):
    """The process's environment and Ray Tune's actor defaults, put back after the test. The
    defaults start as Ray Tune ships them (an earlier sweep in this process changed them)."""
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(class_cache, "DEFAULT_ENV_VARS", {"PL_DISABLE_FORK": "1"})
    for name in class_cache.ENV_VARS_TO_PROPAGATE:
        os.environ.pop(name, None)


class Probe(Trainable):
    pass


def test_trial_actors_get_no_runtime_environment_so_they_can_take_rays_idle_workers(fresh_settings):
    """Ray hands an actor one of the workers it started in advance only if the actor's runtime
    environment is empty; Ray Tune's default one made every slot start a worker of its own."""
    assert class_cache._ActorClassCache().get(Probe)._default_options["runtime_env"]
    tune_environment()
    assert not class_cache._ActorClassCache().get(Probe)._default_options["runtime_env"]


def test_a_users_own_tune_settings_win(fresh_settings):
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0"
    tune_environment()
    assert os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] == "0"
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
