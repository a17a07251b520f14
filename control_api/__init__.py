"""Control service: one REST call from a training script to a served, GitOps-managed model."""

__version__ = "0.1.0"
