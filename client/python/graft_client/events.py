"""A job's events as typed Python objects."""
from dataclasses import dataclass
from datetime import datetime

from graft_client._gen.graft.v1 import training_pb2


@dataclass
class JobEvent:
    job_id: str
    seq: int  # 1-based, gapless per job (a BatchProgress carries the last stored seq)
    time: datetime
    live_only = False


@dataclass
class StateChanged(JobEvent):
    state: str  # QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED
    reason: str


@dataclass
class EpochEnded(JobEvent):
    stage: int
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    learning_rate: float
    images_per_second: float
    epoch_seconds: float
    frozen_part_cached: bool  # the frozen part's features came from the cache: images/s counts the head only


@dataclass
class EarlyStopped(JobEvent):
    epoch: int
    best_epoch: int
    best_value: float


@dataclass
class BestRestored(JobEvent):
    epoch: int


@dataclass
class CheckpointSaved(JobEvent):
    epoch: int
    batch: int


@dataclass
class BatchProgress(JobEvent):
    epoch: int
    batch: int
    batches: int
    live_only = True


@dataclass
class PromotionDecided(JobEvent):
    """spec.promotion's decision: the alias moved (promoted) or stayed; both figures on the holdout."""
    alias: str
    promoted: bool
    champion_version: int
    champion_value: float
    challenger_version: int
    challenger_value: float
    reason: str


def event_of(ev: training_pb2.JobEvent) -> JobEvent:
    base = dict(job_id=ev.job_id, seq=ev.seq, time=ev.time.ToDatetime())
    kind = ev.WhichOneof("event")
    if kind == "state":
        return StateChanged(**base, state=training_pb2.JobState.Name(ev.state.state).replace("JOB_STATE_", ""),
                            reason=ev.state.reason)
    if kind == "epoch":
        m = ev.epoch
        return EpochEnded(**base, stage=m.stage, epoch=m.epoch, train_loss=m.train_loss,
                          train_accuracy=m.train_accuracy, val_loss=m.val_loss, val_accuracy=m.val_accuracy,
                          val_macro_f1=m.val_macro_f1, learning_rate=m.learning_rate,
                          images_per_second=m.images_per_second, epoch_seconds=m.epoch_seconds,
                          frozen_part_cached=m.frozen_part_cached)
    if kind == "early_stop":
        return EarlyStopped(**base, epoch=ev.early_stop.epoch, best_epoch=ev.early_stop.best_epoch,
                            best_value=ev.early_stop.best_value)
    if kind == "best_restored":
        return BestRestored(**base, epoch=ev.best_restored.epoch)
    if kind == "checkpoint":
        return CheckpointSaved(**base, epoch=ev.checkpoint.epoch, batch=ev.checkpoint.batch)
    if kind == "promotion":
        p = ev.promotion
        return PromotionDecided(**base, alias=p.alias, promoted=p.promoted, champion_version=p.champion_version,
                                champion_value=p.champion_value, challenger_version=p.challenger_version,
                                challenger_value=p.challenger_value, reason=p.reason)
    if kind == "progress":
        return BatchProgress(**base, epoch=ev.progress.epoch, batch=ev.progress.batch, batches=ev.progress.batches)
    return JobEvent(**base)
