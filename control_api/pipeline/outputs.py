"""The names of step outputs that other steps, the journal's readers or the API use.

A step's outputs are a flat mapping stored as JSON with its step record (the journal's format); these
names are that format's vocabulary. A waiting step's own state uses names that start with
``poll_`` (``journal.records.POLL_PREFIX``), which a retry clears.
"""

from __future__ import annotations

from typing import Final

# train
RUN_ID: Final = "run_id"
EXPERIMENT_ID: Final = "experiment_id"
EXPERIMENT_NAME: Final = "experiment_name"
MODEL_SOURCE: Final = "model_source"  # the logged model, models:/<logged model id>
IMAGE_REUSED_FROM: Final = "image_reused_from"  # a version deploy serves the image of this earlier commit
TRAINING_PACKAGES: Final = "training_packages"  # pinned versions the serving image installs too
TRAIN_PGID: Final = "train_pgid"
# register
MODEL_VERSION: Final = "model_version"
MODEL_URI: Final = "model_uri"
# build and push
LOCAL_IMAGE: Final = "local_image"
IMAGE_URI: Final = "image_uri"  # by digest
# commit and review
COMMIT: Final = "commit"
COMMIT_CHANGED: Final = "commit_changed"
GITOPS_PATH: Final = "gitops_path"
APPLICATION: Final = "application"
TARGET: Final = "target"
PULL_REQUEST_URL: Final = "pull_request_url"
PULL_REQUEST_NUMBER: Final = "pull_request_number"
# sync and wait
SYNCED_REVISION: Final = "synced_revision"
EXTERNAL_IP: Final = "external_ip"
DEPLOYMENT_URL: Final = "deployment_url"
# how the deploy ends, when a step decides it otherwise than its pipeline (an aborted canary)
FINAL_STATUS: Final = "final_status"
# a waiting step's own state
POLL_DEADLINE: Final = "poll_deadline"
POLL_DELAY: Final = "poll_delay"
POLL_STATE: Final = "poll_state"
POLL_REASON: Final = "poll_reason"
