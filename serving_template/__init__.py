"""The model server that runs inside every image, and the Dockerfile templates of its two layers."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
SERVER_DIR = TEMPLATE_DIR / "model_server"
