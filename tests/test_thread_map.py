"""Members side by side in threads (``oremap.compute.thread_map``): same results as a loop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from oremap.compute import thread_map, worker_cached
from oremap.errors import InputDataError
from oremap.names import MODELS, member_cost


def test_results_in_order_whatever_the_costs() -> None:
    items = list(range(12))
    costs = [float((7 * i) % 5) for i in items]
    assert thread_map(lambda i: i * i, items, costs=costs, workers=3) == [i * i for i in items]
    assert thread_map(lambda i: i, [], workers=2) == []


def test_largest_cost_starts_first() -> None:
    started: list[str] = []
    lock = threading.Lock()

    def run(name: str) -> str:
        with lock:
            started.append(name)
        time.sleep(0.05)  # the first two are both running before either ends
        return name

    names = ["lenet", "woe", "resnet50", "vgg8", "mobilenet_v2"]
    thread_map(run, names, costs=[member_cost(n) for n in names], workers=2)
    assert set(started[:2]) == {"resnet50", "mobilenet_v2"}


def test_one_worker_is_a_plain_loop_on_this_thread() -> None:
    threads = torch.get_num_threads()
    seen = thread_map(lambda _: (threading.current_thread(), torch.get_num_threads()),
                      [1, 2], workers=1)
    assert seen == [(threading.current_thread(), threads)] * 2


def test_threads_run_torch_on_one_thread_and_restore_it() -> None:
    before = torch.get_num_threads()
    inside = thread_map(lambda _: torch.get_num_threads(), [1, 2, 3], workers=2)
    assert inside == [1, 1, 1]
    assert torch.get_num_threads() == before


def test_an_error_arrives_unchanged_and_threads_are_restored() -> None:
    before = torch.get_num_threads()

    def run(i: int) -> int:
        if i == 3:
            raise InputDataError("assays.csv: column 'Au' is missing; add it")
        return i

    with pytest.raises(InputDataError, match=r"^assays.csv: column 'Au' is missing"):
        thread_map(run, range(6), workers=2)
    assert torch.get_num_threads() == before


def test_networks_predicted_side_by_side_equal_one_after_the_other() -> None:
    """Every network's first prediction builds its inference copy (BatchNorm folded) inside
    a worker thread while the others predict: the probabilities equal a sequential run's."""
    from oremap.models import create
    from oremap.train import predict_proba

    def models() -> list[torch.nn.Module]:
        out = []
        for name in MODELS:
            torch.manual_seed(0)
            model = create(name, in_channels=3, num_classes=2, input_size=32, profile="fast")
            model.train()
            model(torch.randn(8, 3, 32, 32))  # BatchNorm statistics away from 0 and 1
            out.append(model.eval())
        return out

    x = np.random.default_rng(0).normal(size=(40, 3, 32, 32)).astype(np.float32)
    alone = [predict_proba(m, x, tta=True) for m in models()]
    together = thread_map(lambda m: predict_proba(m, x, tta=True), models(), workers=3)
    for name, a, b in zip(MODELS, alone, together, strict=True):
        np.testing.assert_allclose(b, a, atol=2e-6, err_msg=name)


def test_worker_cached_builds_once_per_key_and_keeps_the_last() -> None:
    built: list[str] = []

    def build(key: str) -> str:
        built.append(key)
        return key.upper()

    assert worker_cached("test", "a", lambda: build("a")) == "A"
    assert worker_cached("test", "a", lambda: build("a")) == "A"
    assert worker_cached("test", "b", lambda: build("b")) == "B"
    assert worker_cached("test", "a", lambda: build("a")) == "A"  # only the last key is kept
    assert worker_cached("other", "a", lambda: build("x")) == "X"  # names apart
    assert built == ["a", "b", "a", "x"]
