"""graft_client.Client: graft's gRPC API in Python."""
import difflib
import os
import time
from pathlib import Path
from typing import Iterator, List, Optional

import grpc
from google.protobuf import json_format

from graft_client._gen.graft.v1 import (backbones_pb2, backbones_pb2_grpc, datasets_pb2, datasets_pb2_grpc,
                                        inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc,
                                        predictions_pb2, predictions_pb2_grpc, training_pb2, training_pb2_grpc)
from graft_client._gen.grpc.health.v1 import health_pb2, health_pb2_grpc
from graft_client.errors import GraftError, InvalidArgument, NotFound, from_rpc_error
from graft_client.events import JobEvent, event_of
from graft_client.images import to_image_inputs

# graftd accepts messages up to 64 MiB (--max_message_bytes); gRPC clients
# default to receiving 4 MiB, which Predict answers with many images and
# top_k 1000 exceed.
MAX_MESSAGE_BYTES = 64 << 20
_CHUNK = 1 << 20
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _state_name(state: int) -> str:
    return training_pb2.JobState.Name(state).replace("JOB_STATE_", "")


class Client:
    """A connection to graftd.

    target: "host:port" (default $GRAFT_SERVER or localhost:50051).
    token: the bearer token; else the first line of token_file when given;
    else $GRAFT_TOKEN (what the caller names wins over the environment). tls: False (plaintext), True (system roots), or a dict with
    "ca", and for mutual TLS "cert" and "key" (PEM file paths).
    """

    def __init__(self, target: Optional[str] = None, token: Optional[str] = None, tls=False,
                 token_file: Optional[str] = None, timeout: float = 60.0):
        self.target = target or os.environ.get("GRAFT_SERVER", "localhost:50051")
        if token is None and token_file:
            token = Path(token_file).expanduser().read_text().splitlines()[0].strip()
        if token is None:
            token = os.environ.get("GRAFT_TOKEN")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        if tls:
            files = tls if isinstance(tls, dict) else {}
            read = lambda key: Path(files[key]).read_bytes() if files.get(key) else None  # noqa: E731
            credentials = grpc.ssl_channel_credentials(read("ca"), read("key"), read("cert"))
            self._channel = grpc.secure_channel(self.target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(self.target, options)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._inference = inference_pb2_grpc.InferenceStub(self._channel)
        self._backbone_names = None
        self._backbones_used = set()
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.models = Models(self)
        self.backbones = Backbones(self)
        self.predictions = Predictions(self)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout=None):
        try:
            return method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def health(self) -> str:
        """SERVING or NOT_SERVING."""
        r = self._call(self._health.Check, health_pb2.HealthCheckRequest())
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)

    def _is_backbone(self, name: str) -> bool:
        if self._backbone_names is None:
            names = set()
            for b in self.backbones.list():
                names.add(b.name.lower())
                names.update(a.lower() for a in b.aliases)
            self._backbone_names = names
        return name.lower() in self._backbone_names

    def predict(self, model: str, images, top_k: Optional[int] = None, store: Optional[bool] = None,
                with_ids: bool = False) -> List:
        """Top-k classes of each image: [[{"label", "index", "probability"}, ...] per image], best first.

        model: a model id, NAME, NAME:VERSION, NAME@ALIAS, or a backbone name
        (its ImageNet head). images: see graft_client.images.to_image_inputs.
        top_k: None asks for the server's default (5, or the model's classes if fewer).
        store=False: keep no prediction record of this request, whatever the
        model's record policy. with_ids: each image's answer is
        {"prediction_id", "recorded", "top": [...]} (for predictions.feedback).
        """
        request = inference_pb2.PredictRequest(images=to_image_inputs(images))
        if top_k is not None:
            request.top_k = top_k
        if store is not None:
            request.store = store
        if model in self._backbones_used:
            request.backbone = model
            response = self._call(self._inference.Predict, request)
        else:
            try:
                request.models.append(model)
                response = self._call(self._inference.Predict, request)
            except NotFound:
                # Not a model: a backbone's ImageNet head, remembered as one.
                if not self._is_backbone(model):
                    raise
                self._backbones_used.add(model)
                del request.models[:]
                request.backbone = model
                response = self._call(self._inference.Predict, request)
        tops = [[{"label": s.label, "index": s.index, "probability": s.probability} for s in p.top]
                for p in response.results[0].predictions]
        if not with_ids:
            return tops
        return [{"prediction_id": p.prediction_id, "recorded": p.recorded, "top": top}
                for p, top in zip(response.results[0].predictions, tops)]

    def embed(self, model: str, images, block: str = ""):
        """Embeddings as a numpy array [N, dim] (a list of lists without numpy)."""
        request = inference_pb2.EmbedRequest(images=to_image_inputs(images), block=block)
        if self._is_backbone(model):
            request.backbone = model
        else:
            request.model = model
        response = self._call(self._inference.Embed, request)
        rows = [list(e.values) for e in response.embeddings]
        try:
            import numpy as np
            return np.asarray(rows, dtype=np.float32).reshape(len(rows), response.dim)
        except ImportError:
            return rows


class Datasets:
    def __init__(self, client: Client):
        self._c = client
        self._stub = datasets_pb2_grpc.DatasetsStub(client._channel)

    def upload(self, path, name: str, validation_fraction: float = 0.2, seed: int = 0, progress=False):
        """Uploads a folder (<class>/*.jpg or train/ and val/) or an archive (.zip, .tar, .tar.gz).

        progress: True prints a progress line to stderr; a callable gets
        (bytes_sent, bytes_total). Returns the UploadDatasetResponse (its
        .dataset and the .rejected files with their reasons).
        """
        path = Path(path)
        if path.is_dir():
            files = sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*")
                           if p.is_file() and not p.is_symlink())
        elif path.is_file():
            files = [(path.name, path)]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        folder = path.is_dir()
        total = sum(p.stat().st_size for _, p in files)
        report = _progress_printer(total) if progress is True else progress

        def requests():
            header = datasets_pb2.UploadHeader(
                name=name, total_bytes=total,
                format=datasets_pb2.UPLOAD_FORMAT_FOLDER if folder else datasets_pb2.UPLOAD_FORMAT_UNSPECIFIED,
                split=datasets_pb2.ValidationSplit(fraction=validation_fraction, seed=seed))
            yield datasets_pb2.UploadDatasetRequest(header=header)
            sent = 0
            for rel, p in files:
                size = p.stat().st_size
                with open(p, "rb") as f:
                    offset = 0
                    while True:
                        data = f.read(_CHUNK)
                        offset += len(data)
                        last = offset >= size or not data
                        chunk = datasets_pb2.FileChunk(data=data, last=folder and last)
                        if folder and offset - len(data) == 0:
                            chunk.path = rel
                        yield datasets_pb2.UploadDatasetRequest(chunk=chunk)
                        sent += len(data)
                        if report:
                            report(sent, total)
                        if last:
                            break

        try:
            return self._stub.UploadDataset(requests(), metadata=self._c._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def list(self):
        return _all_pages(self._c, self._stub.ListDatasets, datasets_pb2.ListDatasetsRequest(), "datasets")

    def get(self, ref: str):
        return self._c._call(self._stub.GetDataset, datasets_pb2.GetDatasetRequest(id=ref))

    def delete(self, ref: str):
        self._c._call(self._stub.DeleteDataset, datasets_pb2.DeleteDatasetRequest(id=ref))


def _progress_printer(total):
    import sys

    def report(sent, _):
        end = "\n" if sent >= total else ""
        print(f"\rupload: {sent / 2**20:.1f} / {total / 2**20:.1f} MiB", end=end, file=sys.stderr, flush=True)

    return report


def _all_pages(client, method, request, field):
    out = []
    while True:
        page = client._call(method, request)
        out.extend(getattr(page, field))
        if not page.next_page_token:
            return out
        request.page_token = page.next_page_token


_OPTIMIZERS = {"sgd": 1, "adam": 2, "adamw": 3, "rmsprop": 4}
_SHORTCUTS = ("epochs", "learning_rate", "optimizer", "fine_tune_blocks", "fine_tune_epochs", "fine_tune_learning_rate",
              "patience")


def job_spec(spec=None, **kwargs) -> training_pb2.JobSpec:
    """A JobSpec from a JobSpec, a dict in its JSON form, and/or keyword arguments.

    Any JobSpec field by name (backbone, dataset, head, stages, augmentation,
    early_stopping, model_name, ...; nested values as dicts), and shortcuts:
    epochs, learning_rate (a number, or "auto": found by the range test),
    optimizer ("adam", "sgd", ...) for the head stage; search (a SearchSpec
    as a dict) makes it a search job;
    fine_tune_blocks, fine_tune_epochs, fine_tune_learning_rate for a second
    stage training the top blocks with SGD (momentum 0.9), as the Keras
    tutorials do; patience turns on early stopping with best weights restored.
    """
    out = training_pb2.JobSpec()
    if isinstance(spec, training_pb2.JobSpec):
        out.CopyFrom(spec)
    elif isinstance(spec, dict):
        json_format.ParseDict(spec, out)
    elif spec is not None:
        raise TypeError("spec must be a JobSpec or a dict")
    short = {k: kwargs.pop(k) for k in _SHORTCUTS if k in kwargs}
    known = {f.name for f in training_pb2.JobSpec.DESCRIPTOR.fields}
    for name in kwargs:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known | set(_SHORTCUTS)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"job_spec() got an unknown keyword {name!r}{hint}")
    if kwargs:
        try:
            json_format.ParseDict(kwargs, out, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, f"job_spec(): {e}") from None
    if any(k in short for k in ("epochs", "learning_rate", "optimizer")):
        if not out.stages:
            out.stages.add(train="head")
        head = out.stages[0]
        if "epochs" in short:
            head.epochs = short["epochs"]
        if short.get("learning_rate") == "auto":
            head.optimizer.auto_learning_rate = True
        elif "learning_rate" in short:
            head.optimizer.learning_rate = short["learning_rate"]
        if "optimizer" in short:
            kind = _OPTIMIZERS.get(str(short["optimizer"]).lower())
            if kind is None:
                raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT,
                                      f"optimizer: {short['optimizer']!r} is not one of {', '.join(_OPTIMIZERS)}")
            head.optimizer.kind = kind
    if "fine_tune_blocks" in short or "fine_tune_epochs" in short:
        if not out.stages:
            out.stages.add(train="head", epochs=10)
        stage = out.stages.add(train=f"top:{short.get('fine_tune_blocks', 1)}",
                               epochs=short.get("fine_tune_epochs", 10))
        stage.optimizer.kind = training_pb2.OPTIMIZER_SGD
        stage.optimizer.learning_rate = short.get("fine_tune_learning_rate", 1e-4)
        stage.optimizer.momentum = 0.9
    if "patience" in short:
        out.early_stopping.enabled = True
        out.early_stopping.patience = short["patience"]
    return out


class Jobs:
    def __init__(self, client: Client):
        self._c = client
        self._stub = training_pb2_grpc.TrainingStub(client._channel)

    def create(self, spec=None, **kwargs) -> "Job":
        """Queues a fine-tuning job (see job_spec for the arguments)."""
        job = self._c._call(self._stub.CreateJob, training_pb2.CreateJobRequest(spec=job_spec(spec, **kwargs)))
        return Job(self._c, self._stub, job)

    def get(self, job_id: str) -> "Job":
        return Job(self._c, self._stub, self._c._call(self._stub.GetJob, training_pb2.GetJobRequest(id=job_id)))

    def find_learning_rate(self, spec=None, min_lr: float = 0, max_lr: float = 0, steps: int = 0,
                           timeout: float = 1800, **kwargs) -> training_pb2.LearningRateCurve:
        """The learning-rate range test for a spec (as jobs.create takes it):
        .learning_rates, .losses, .smoothed_losses and .suggested."""
        request = training_pb2.FindLearningRateRequest(spec=job_spec(spec, **kwargs), min_lr=min_lr, max_lr=max_lr,
                                                       steps=steps)
        return self._c._call(self._stub.FindLearningRate, request, timeout=timeout)

    def retrain(self, model: str, add=(), epochs: Optional[int] = None, promote: str = "", holdout: str = "",
                metric: str = "val_accuracy", min_gain: float = 0.005, canary_percent: float = 0,
                name: str = "") -> "Job":
        """A new version of `model` (NAME@ALIAS, NAME:VERSION or NAME) trained with
        its own spec on its data plus the `add` datasets. With promote=ALIAS and
        holdout=DATASET the alias moves to it only when it beats the version the
        alias serves on the holdout by min_gain (job.proto.promotion says how it went)."""
        metrics = {"val_loss": training_pb2.MONITOR_VAL_LOSS, "val_accuracy": training_pb2.MONITOR_VAL_ACCURACY,
                   "val_macro_f1": training_pb2.MONITOR_VAL_MACRO_F1}
        if metric not in metrics:
            raise ValueError(f"metric: one of {sorted(metrics)}, got {metric!r}")
        request = training_pb2.RetrainRequest(model=model, add_datasets=list(add), name=name)
        if epochs is not None:
            request.epochs = epochs
        if promote or holdout:
            request.promotion.CopyFrom(training_pb2.PromotionSpec(
                alias=promote, holdout=holdout, metric=metrics[metric], min_gain=min_gain,
                canary_percent=canary_percent))
        return Job(self._c, self._stub, self._c._call(self._stub.Retrain, request))

    def list(self) -> List["Job"]:
        jobs = _all_pages(self._c, self._stub.ListJobs, training_pb2.ListJobsRequest(), "jobs")
        return [Job(self._c, self._stub, j) for j in jobs]


class Job:
    """A fine-tuning job: .id, .state ("QUEUED", "RUNNING", "SUCCEEDED", ...),
    .model_id once it succeeded, .error once it failed, and .proto (the Job message)."""

    def __init__(self, client: Client, stub, proto):
        self._c = client
        self._stub = stub
        self.proto = proto

    id = property(lambda self: self.proto.id)
    state = property(lambda self: _state_name(self.proto.state))
    model_id = property(lambda self: self.proto.model_id)
    error = property(lambda self: self.proto.error)
    # A search job's trials, best first (graft.v1.Trial messages).
    leaderboard = property(lambda self: list(self.proto.search.leaderboard))

    def __repr__(self):
        return f"Job({self.id}, {self.state})"

    def refresh(self) -> "Job":
        self.proto = self._c._call(self._stub.GetJob, training_pb2.GetJobRequest(id=self.id))
        return self

    def cancel(self) -> "Job":
        self.proto = self._c._call(self._stub.CancelJob, training_pb2.CancelJobRequest(id=self.id))
        return self

    def watch(self, progress: bool = False, from_seq: int = 0, reconnect_seconds: float = 120,
              timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """Yields the job's events (replayed, then live) until it ends.

        When the connection drops (graftd restarts, the network fails) or
        graftd cancels the stream (a graceful shutdown), it reconnects for up
        to reconnect_seconds and resumes after the last event it yielded:
        nothing is missed or repeated. With timeout (s), it
        raises TimeoutError when the job has not ended by then.
        """
        last = from_seq
        lost_since = None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            request = training_pb2.WatchJobRequest(id=self.id, progress=progress, from_seq=last)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for ev in self._stub.WatchJob(request, metadata=self._c._metadata, timeout=left):
                    lost_since = None
                    event = event_of(ev)
                    if not event.live_only:
                        if ev.seq <= last:
                            continue
                        last = ev.seq
                    yield event
                return
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                    raise TimeoutError(f"job {self.id}: no end within {timeout} s") from None
                # graftd going away (a restart, a network failure) ends the
                # stream UNAVAILABLE, or CANCELLED when its shutdown cancels
                # the calls still open (as does --stream_write_timeout_s for a
                # reader that fell behind): either way, watch again from the
                # last event. This client never cancels its own stream.
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    raise from_rpc_error(e) from None
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_seconds:
                    raise from_rpc_error(e) from None
                time.sleep(0.5)

    def wait(self, timeout: Optional[float] = None, raise_on_failure: bool = True) -> "Job":
        """Waits until the job ends; raises GraftError when it failed (unless told not to)."""
        for _ in self.watch(timeout=timeout):
            pass
        self.refresh()
        if raise_on_failure and self.state == "FAILED":
            raise GraftError(grpc.StatusCode.ABORTED, f"job {self.id} failed: {self.error}")
        return self


class Models:
    def __init__(self, client: Client):
        self._c = client
        self._stub = models_pb2_grpc.ModelsStub(client._channel)

    def list(self):
        return _all_pages(self._c, self._stub.ListModels, models_pb2.ListModelsRequest(), "models")

    def get(self, ref: str):
        return self._c._call(self._stub.GetModel, models_pb2.GetModelRequest(id=ref))

    def delete(self, ref: str):
        self._c._call(self._stub.DeleteModel, models_pb2.DeleteModelRequest(id=ref))

    def set_alias(self, name: str, alias: str, version: int, canaries=None, shadow: int = 0):
        """Points NAME@ALIAS at VERSION. canaries: {version: percent} that take
        a share of the alias's predictions; shadow: a version mirrored every
        prediction off the request path, its answers compared (GetModel of it)."""
        request = models_pb2.SetModelAliasRequest(name=name, alias=alias, version=version, shadow=shadow)
        for v, percent in (canaries or {}).items():
            request.canaries.add(version=v, percent=percent)
        return self._c._call(self._stub.SetModelAlias, request)

    def delete_alias(self, name: str, alias: str):
        self._c._call(self._stub.DeleteModelAlias, models_pb2.DeleteModelAliasRequest(name=name, alias=alias))

    _PRECISIONS = {"fp32": 1, "bf16": 2, "int8": 3}

    def optimize(self, ref: str, precision: str, dataset: str = "", split: str = "val",
                 min_agreement: Optional[float] = None, max_accuracy_drop: Optional[float] = None,
                 max_probability_difference: Optional[float] = None, dry_run: bool = False,
                 calibration_images: Optional[int] = None):
        """Serves the model in `precision` ("bf16", "int8"; "fp32" goes back)
        once measured against fp32 on labelled images (its own validation
        split by default). int8 is first calibrated on `calibration_images`
        (default 256) images of the model's training split. Returns the last OptimizeModelProgress: `check` (the figures)
        and `model`. A check that misses the gate raises FailedPrecondition
        naming the figures; it is stored with the model all the same."""
        if precision not in self._PRECISIONS:
            raise InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"precision must be one of {', '.join(self._PRECISIONS)}, not {precision!r}")
        splits = {"val": 1, "train": 2, "all": 3}
        request = models_pb2.OptimizeModelRequest(model=ref, precision=self._PRECISIONS[precision], dataset=dataset,
                                                  split=splits[split], dry_run=dry_run)
        if min_agreement is not None:
            request.min_agreement = min_agreement
        if max_accuracy_drop is not None:
            request.max_accuracy_drop = max_accuracy_drop
        if max_probability_difference is not None:
            request.max_probability_difference = max_probability_difference
        if calibration_images is not None:
            request.calibration_images = calibration_images
        last = None
        try:
            for message in self._stub.OptimizeModel(request, metadata=self._c._metadata):
                if message.HasField("model"):
                    last = message
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if last is None:
            raise GraftError(grpc.StatusCode.INTERNAL, "graftd ended the optimization without a result")
        return last

    def export(self, ref: str, path) -> int:
        """Writes the model as one safetensors file (torchvision names, metadata
        in its header); returns its size in bytes. The file appears whole or not at all."""
        path = Path(path)
        tmp = path.with_name(path.name + ".partial")
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in self._stub.ExportModel(models_pb2.ExportModelRequest(id=ref), metadata=self._c._metadata):
                    f.write(chunk.data)
                    size += len(chunk.data)
            os.replace(tmp, path)
        except grpc.RpcError as e:
            tmp.unlink(missing_ok=True)
            raise from_rpc_error(e) from None
        return size


class Predictions:
    """Prediction records and feedback: which predictions a model keeps, the
    records, their true labels, and datasets made of them."""

    def __init__(self, client: Client):
        self._c = client
        self._stub = predictions_pb2_grpc.PredictionsStub(client._channel)

    def set_policy(self, model: str, sample_rate: float = 0, below_confidence: float = 0, below_margin: float = 0,
                   quota_bytes: int = 0, max_per_minute: float = 0, allow_new_classes: bool = False):
        """Sets which predictions of a model (a NAME: all its versions) are kept;
        all zero keeps nothing."""
        policy = predictions_pb2.RecordPolicy(sample_rate=sample_rate, below_confidence=below_confidence,
                                              below_margin=below_margin, quota_bytes=quota_bytes,
                                              max_per_minute=max_per_minute, allow_new_classes=allow_new_classes)
        return self._c._call(self._stub.SetRecordPolicy,
                             predictions_pb2.SetRecordPolicyRequest(model=model, policy=policy))

    def get_policy(self, model: str):
        return self._c._call(self._stub.GetRecordPolicy, predictions_pb2.GetRecordPolicyRequest(model=model))

    def list(self, model: str, low_confidence_only: bool = False, feedback: Optional[bool] = None,
             since: float = 0) -> List:
        """Every record of the model, newest first (pages followed). feedback:
        True only those with a label, False only those without."""
        request = predictions_pb2.ListPredictionsRequest(model=model, low_confidence_only=low_confidence_only,
                                                         since=since, page_size=1000)
        if feedback is not None:
            request.feedback = (predictions_pb2.ListPredictionsRequest.WITH_FEEDBACK if feedback
                                else predictions_pb2.ListPredictionsRequest.WITHOUT_FEEDBACK)
        out = []
        while True:
            page = self._c._call(self._stub.ListPredictions, request)
            out.extend(page.records)
            if not page.next_page_token:
                return out
            request.page_token = page.next_page_token

    def get(self, prediction_id: str, include_image: bool = False):
        return self._c._call(self._stub.GetPrediction, predictions_pb2.GetPredictionRequest(
            prediction_id=prediction_id, include_image=include_image))

    def feedback(self, prediction_id: str, label: str):
        """The true label of a recorded prediction; returns the record."""
        return self._c._call(self._stub.Feedback, predictions_pb2.FeedbackRequest(
            prediction_id=prediction_id, label=label))

    def to_dataset(self, model: str, name: str, labelled_only: bool = True, since: float = 0,
                   val_fraction: float = 0, seed: int = 0):
        """A dataset of the model's recorded images, one folder per label."""
        request = predictions_pb2.CreateDatasetFromPredictionsRequest(
            model=model, name=name, labelled_only=labelled_only, since=since)
        request.split.fraction = val_fraction
        request.split.seed = seed
        return self._c._call(self._stub.CreateDatasetFromPredictions, request, timeout=600)

    def purge(self, model: str) -> int:
        return self._c._call(self._stub.PurgePredictions, predictions_pb2.PurgePredictionsRequest(model=model)).deleted


class Backbones:
    def __init__(self, client: Client):
        self._c = client
        self._stub = backbones_pb2_grpc.BackbonesStub(client._channel)

    def list(self):
        return _all_pages(self._c, self._stub.ListBackbones, backbones_pb2.ListBackbonesRequest(), "backbones")

    def get(self, name: str):
        return self._c._call(self._stub.GetBackbone, backbones_pb2.GetBackboneRequest(name=name))

    def memory(self):
        """Device memory against --device_memory_budget (a DeviceMemory message)."""
        return self._c._call(self._stub.ListBackbones, backbones_pb2.ListBackbonesRequest(page_size=1)).memory

    # Residency (admin): load now, evict now, pin or unpin.
    def load(self, name: str):
        return self._c._call(self._stub.LoadBackbone, backbones_pb2.LoadBackboneRequest(name=name), timeout=300)

    def unload(self, name: str):
        return self._c._call(self._stub.UnloadBackbone, backbones_pb2.UnloadBackboneRequest(name=name))

    def pin(self, name: str, pinned: bool = True):
        return self._c._call(self._stub.PinBackbone, backbones_pb2.PinBackboneRequest(name=name, pinned=pinned),
                             timeout=300)
