"""graft_client: the Python SDK of graft, the transfer-learning service.

    from graft_client import Client
    c = Client("localhost:50051", token_file="/var/lib/graft/admin.token")
    c.datasets.upload("flowers/", name="flowers", progress=True)
    job = c.jobs.create(backbone="MobileNetV2", dataset="flowers", epochs=10, patience=3, model_name="flowers")
    for event in job.watch():
        print(event)
    print(c.predict("flowers", ["rose.jpg"]))
"""
from graft_client.client import Backbones, Client, Datasets, Job, Jobs, Models, job_spec
from graft_client.errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition, GraftError,
                                 InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unauthenticated,
                                 Unavailable)
from graft_client.events import (BatchProgress, BestRestored, CheckpointSaved, EarlyStopped, EpochEnded, JobEvent,
                                 PromotionDecided, StateChanged)

__all__ = ["Client", "Datasets", "Jobs", "Job", "Models", "Backbones", "job_spec", "GraftError", "InvalidArgument",
           "NotFound", "AlreadyExists", "PermissionDenied", "Unauthenticated", "ResourceExhausted",
           "FailedPrecondition", "Unavailable", "DeadlineExceeded", "Cancelled", "JobEvent", "StateChanged",
           "EpochEnded", "EarlyStopped", "BestRestored", "CheckpointSaved", "BatchProgress",
           "PromotionDecided"]
