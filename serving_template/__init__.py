"""What every serving image is made of: the ``model_server`` package and the Dockerfile templates."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
MODEL_SERVER_DIR = TEMPLATE_DIR / "model_server"
SERVER_DIR = MODEL_SERVER_DIR  # older name, kept for callers written against it
