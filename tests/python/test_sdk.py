"""graft_client as a Python user uses it: upload -> train -> watch (through a
graftd restart) -> predict -> export -> delete, and its exceptions."""
import base64
import json
import struct
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import IMAGES, SHARED, Graftd

DATA = SHARED / "data" / "hymenoptera"
DOG = (IMAGES / "dog.jpg").read_bytes()


@pytest.fixture
def server(tmp_path):
    g = Graftd(tmp_path).start()
    yield g
    assert g.stop() == 0


def val_images():
    return [(p, cls) for cls in ("ants", "bees") for p in sorted((DATA / "val" / cls).iterdir())]


def test_upload_train_watch_through_a_restart_predict_export_delete(server, graft_client, tmp_path):
    from PIL import Image

    c = graft_client.Client(server.address, token=server.token)
    assert c.health() == "SERVING"

    progress = []
    uploaded = c.datasets.upload(DATA, name="bees", progress=lambda sent, total: progress.append((sent, total)))
    assert [k.name for k in uploaded.dataset.classes] == ["ants", "bees"]
    assert uploaded.dataset.val_images == len(val_images())
    assert progress[-1][0] == progress[-1][1] > 0
    assert [d.name for d in c.datasets.list()] == ["bees"]

    job = c.jobs.create(backbone="MobileNetV2", dataset="bees", epochs=4, learning_rate=1e-3, model_name="bees",
                        seed=3)
    events, restarted = [], False
    for event in job.watch():
        events.append(event)
        if isinstance(event, graft_client.EpochEnded) and not restarted:
            # The connection drops with graftd; watch reconnects and resumes.
            assert server.stop() == 0
            server.start()
            restarted = True
    assert restarted
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events missed or repeated"
    assert [e.state for e in events if isinstance(e, graft_client.StateChanged)][-1] == "SUCCEEDED"
    epochs = [e for e in events if isinstance(e, graft_client.EpochEnded)]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1].val_accuracy >= 0.85
    job = job.wait()
    assert job.state == "SUCCEEDED" and job.model_id

    # Predict: paths, bytes, PIL images and numpy pixels are the same image.
    path, _ = val_images()[-1]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    forms = c.predict("bees", [path, path.read_bytes(), Image.open(path).convert("RGB"), pixels], top_k=2)
    assert len(forms) == 4
    for other in forms[1:]:
        assert other[0]["label"] == forms[0][0]["label"]
        assert abs(other[0]["probability"] - forms[0][0]["probability"]) < 1e-5
    right = 0
    images = val_images()
    for start in range(0, len(images), 32):
        batch = images[start:start + 32]
        for (_, cls), top in zip(batch, c.predict("bees:1", [p for p, _ in batch], top_k=1)):
            right += top[0]["label"] == cls
    assert right / len(images) >= 0.85
    assert c.predict("MobileNetV2", DOG)[0][0]["label"].startswith("malamute")

    # Prediction records: kept by policy, labelled through feedback, made a dataset.
    c.predictions.set_policy("bees", sample_rate=1)
    answers = c.predict("bees", [p for p, _ in images[:4]], top_k=1, with_ids=True)
    assert all(a["recorded"] and a["prediction_id"].startswith("pred-") for a in answers)
    assert not c.predict("bees", [images[0][0]], store=False, with_ids=True)[0]["recorded"]
    for a, (_, cls) in zip(answers, images[:4]):
        record = c.predictions.feedback(a["prediction_id"], cls)
        assert record.feedback_label == cls and record.disagrees == (a["top"][0]["label"] != cls)
    assert c.predictions.get(answers[0]["prediction_id"], include_image=True).image == images[0][0].read_bytes()
    assert len(c.predictions.list("bees", feedback=True)) == 4
    # A retrain whose holdout the job would train on is refused by name.
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.retrain("bees", promote="prod", holdout="bees", epochs=1)
    assert "spec.promotion.holdout: dataset 'bees' shares" in e.value.message
    assert c.predictions.purge("bees") == 4
    assert c.embed("bees", DOG).shape == (1, 1280)

    # The same model through the Open Inference Protocol's REST, by name and version.
    body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "data": [base64.b64encode(path.read_bytes()).decode()]}]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/v2/models/bees/versions/1/infer", body,
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        out = json.loads(r.read())["outputs"][0]
    assert out["shape"] == [1, 2]
    assert abs(max(out["data"]) - forms[0][0]["probability"]) < 1e-5

    # bfloat16 serving measured through the SDK (a dry run: the model keeps
    # serving fp32), where the CPU computes bfloat16 natively.
    with pytest.raises(graft_client.InvalidArgument):
        c.models.optimize("bees", "fp16")
    flags = Path("/proc/cpuinfo").read_text()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        done = c.models.optimize("bees", "bf16", dry_run=True, min_agreement=0.9, max_accuracy_drop=0.05)
        assert done.check.passed and done.check.images == len(images) and done.check.split == "val"
        assert done.check.top1_agreement >= 0.9 and 0 < done.check.max_probability_difference < 0.2
        assert done.model.precision == 1  # PRECISION_FP32: a dry run switches nothing
        assert [ch.precision for ch in c.models.get("bees").precision_checks] == [2]

    model = c.models.get("bees")
    assert model.id == job.model_id and list(model.class_names) == ["ants", "bees"]
    assert [m.id for m in c.models.list()] == [model.id]
    size = c.models.export("bees", tmp_path / "bees.safetensors")
    exported = (tmp_path / "bees.safetensors").read_bytes()
    assert len(exported) == size > 1_000_000
    header = json.loads(exported[8:8 + struct.unpack("<Q", exported[:8])[0]])
    assert "graft.model" in header["__metadata__"]

    c.models.delete(model.id)
    with pytest.raises(graft_client.NotFound) as e:
        c.models.get(model.id)
    assert e.value.code == grpc.StatusCode.NOT_FOUND and model.id in e.value.message
    c.datasets.delete("bees")
    assert c.datasets.list() == []


def test_watch_follows_a_job_across_ten_graceful_restarts(server, graft_client, tmp_path):
    # A small dataset (10 images per class and split), so each restart's
    # resume is quick; SIGTERM after each of the first ten epochs. graftd's
    # shutdown ends the open watch UNAVAILABLE or CANCELLED: either way the
    # SDK watches again from its last event.
    small = tmp_path / "small"
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (small / split / cls).mkdir(parents=True)
            for p in sorted((DATA / split / cls).glob("*.jpg"))[:10]:
                (small / split / cls / p.name).write_bytes(p.read_bytes())
    c = graft_client.Client(server.address, token=server.token)
    c.datasets.upload(small, name="small")
    job = c.jobs.create(backbone="squeezenet1_1", dataset="small", epochs=12, learning_rate=1e-3, seed=5)
    events, restarts = [], 0
    for event in job.watch(reconnect_seconds=120):
        events.append(event)
        if isinstance(event, graft_client.EpochEnded) and restarts < 10:
            assert server.stop() == 0
            server.start()
            restarts += 1
    assert restarts == 10
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events missed or repeated"
    assert [e.epoch for e in events if isinstance(e, graft_client.EpochEnded)] == list(range(1, 13))
    assert [e.state for e in events if isinstance(e, graft_client.StateChanged)][-1] == "SUCCEEDED"


def test_errors_are_exceptions_with_code_and_message(graftd, graft_client):
    c = graft_client.Client(graftd.address, token=graftd.token)
    with pytest.raises(graft_client.Unauthenticated) as e:
        graft_client.Client(graftd.address, token="nope").models.list()
    assert "unknown or revoked token" in e.value.message
    with pytest.raises(graft_client.NotFound) as e:
        c.predict("no-such-model", DOG)
    assert isinstance(e.value, graft_client.GraftError) and "no-such-model" in e.value.message
    with pytest.raises(graft_client.NotFound):
        c.jobs.create(backbone="MobileNetV2", dataset="no-such-dataset", epochs=1)
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.create(backbone="MobileNetV2", dataset="x", batch_size=-1)
    assert "batch_size" in e.value.message
    # The SDK's own checks are GraftError subclasses too, in the SDK's snake_case.
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.create(backbone="MobileNetV2", dataset="x", optimizer="adagrad")
    assert "'adagrad' is not one of sgd, adam, adamw, rmsprop" in e.value.message
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.create(backbone="MobileNetV2", dataset="x", batchsize=8)
    assert "unknown keyword 'batchsize'; did you mean 'batch_size'?" in e.value.message
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.create(backbone="MobileNetV2", dataset="x", head={"hiden_units": [8]})
    assert "hiden_units" in e.value.message
    # epochs 0 is refused, not silently 10.
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.jobs.create(backbone="MobileNetV2", dataset="x", epochs=0)
    assert "spec.stages[0].epochs: must be 1..10000, got 0" in e.value.message
    with pytest.raises(graft_client.InvalidArgument) as e:
        c.predict("MobileNetV2", b"not an image")
    assert "image 0" in e.value.message
    with pytest.raises(TypeError):
        c.predict("MobileNetV2", [42])
    with pytest.raises(FileNotFoundError):
        c.datasets.upload("/no/such/folder", name="x")


def test_an_explicit_token_file_wins_over_the_environment(graftd, graft_client, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(graftd.token + "\n")
    monkeypatch.setenv("GRAFT_TOKEN", "stale-token-from-the-environment")
    assert isinstance(graft_client.Client(graftd.address, token_file=str(token_file)).models.list(), list)
    with pytest.raises(graft_client.Unauthenticated):
        graft_client.Client(graftd.address).models.list()


def test_wait_times_out_on_a_job_that_cannot_start(graftd, graft_client):
    c = graft_client.Client(graftd.address, token=graftd.token)
    c.datasets.upload(DATA, name="for-timeout")
    # Two jobs: the second waits QUEUED behind the first (one runs at a time).
    first = c.jobs.create(backbone="MobileNetV2", dataset="for-timeout", epochs=30)
    second = c.jobs.create(backbone="MobileNetV2", dataset="for-timeout", epochs=1)
    try:
        with pytest.raises(TimeoutError):
            second.wait(timeout=1)
        assert second.refresh().state == "QUEUED"
    finally:
        for job in (second, first):
            job.cancel()
    assert second.refresh().state == "CANCELLED"


def test_job_spec_from_keywords_like_the_keras_tutorial(graft_client):
    spec = graft_client.job_spec(backbone="MobileNetV2", dataset="flowers", epochs=10, patience=3,
                                 fine_tune_blocks=2, fine_tune_epochs=5, augmentation={"horizontal_flip": True})
    assert [(s.train, s.epochs) for s in spec.stages] == [("head", 10), ("top:2", 5)]
    assert spec.stages[1].optimizer.learning_rate == pytest.approx(1e-4)
    assert spec.early_stopping.enabled and spec.early_stopping.patience == 3
    assert spec.augmentation.horizontal_flip
    with pytest.raises(Exception) as e:
        graft_client.job_spec(backbone="x", no_such_field=1)
    assert "no_such_field" in str(e.value)


def test_residency_load_pin_unload_under_a_budget(tmp_path, graft_client):
    # 40 MiB fits mobilenet_v2 (27 MiB) and one squeezenet (9.5 MiB), not both squeezenets too.
    g = Graftd(tmp_path, "--device_memory_budget=40MiB", "--preload=squeezenet1_1").start()
    try:
        c = graft_client.Client(g.address, token=g.token)
        assert c.backbones.get("squeezenet1_1").residency.pinned
        assert c.backbones.memory().budget_bytes == 40 << 20
        loaded = c.backbones.load("MobileNetV2")
        assert loaded.residency.device == "cpu"
        with pytest.raises(graft_client.ResourceExhausted) as e:
            c.backbones.pin("mobilenet_v2")
            c.backbones.load("squeezenet1_0")
        assert "--device_memory_budget" in e.value.message and "pinned mobilenet_v2" in e.value.message
        assert not c.backbones.pin("mobilenet_v2", False).residency.pinned
        assert c.backbones.load("squeezenet1_0").residency.device == "cpu"  # evicts mobilenet_v2
        assert c.backbones.get("mobilenet_v2").residency.evictions == 1
        assert c.backbones.unload("squeezenet1_1").residency.device == ""
        assert c.backbones.memory().backbone_bytes == c.backbones.get("squeezenet1_0").residency.bytes
    finally:
        assert g.stop() == 0


def test_search_job_leaderboard_and_learning_rate_finder(graftd, graft_client):
    c = graft_client.Client(graftd.address, token=graftd.token)
    c.datasets.upload(DATA, name="for-search")
    curve = c.jobs.find_learning_rate(backbone="squeezenet1_1", dataset="for-search", input_size=112, steps=40)
    assert len(curve.learning_rates) == len(curve.losses) >= 10
    assert curve.learning_rates[0] == pytest.approx(1e-7)
    assert 1e-7 < curve.suggested < 10

    job = c.jobs.create(dataset="for-search", input_size=112, epochs=3, seed=2,
                        search={"backbones": ["squeezenet1_1"], "learning_rates": [1e-3, 1e-2],
                                "heads": [{}, {"hidden_units": [32]}]})
    job.wait(timeout=600)
    assert job.refresh().state == "SUCCEEDED", job.error
    board = job.leaderboard
    assert len(board) == 4 and job.proto.search.trials_done == 4
    assert board[0].best.val_accuracy >= board[-1].best.val_accuracy
    model = c.models.get(job.model_id)
    assert model.spec.stages[0].optimizer.learning_rate == pytest.approx(board[0].learning_rate)

    spec = graft_client.job_spec(backbone="squeezenet1_1", dataset="x", learning_rate="auto")
    assert spec.stages[0].optimizer.auto_learning_rate
