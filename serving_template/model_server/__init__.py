"""The model server inside every serving image: FastAPI on uvicorn, model files baked into the image."""

__version__ = "1.0.0"
