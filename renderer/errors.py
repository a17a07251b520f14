"""The renderer's only error type.

The renderer is a pure library and must not import the control service, so it raises a plain
``ValueError`` subclass that names the offending field; the service maps it to its own
invalid-request error.
"""

from __future__ import annotations

from pydantic import ValidationError


class RenderError(ValueError):
    """A spec cannot be rendered.

    ``field`` is a dotted path into the spec (``image``, ``autoscaling.min_replicas``, ``env``).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    @classmethod
    def from_validation_error(cls, error: ValidationError) -> RenderError:
        """Fold pydantic's error list into one RenderError; ``field`` names the first problem."""
        problems = error.errors(include_url=False, include_input=False)
        if not problems:  # pragma: no cover - pydantic never raises an empty ValidationError
            return cls("", str(error))
        fields = [".".join(str(part) for part in problem["loc"]) for problem in problems]
        messages = [_strip_pydantic_prefix(problem["msg"]) for problem in problems]
        if len(problems) == 1:
            return cls(fields[0], messages[0])
        summary = "; ".join(f"{field}: {message}" for field, message in zip(fields, messages, strict=True))
        return cls(fields[0], summary)


def _strip_pydantic_prefix(message: str) -> str:
    # pydantic prefixes errors raised inside validators with "Value error, ".
    prefix = "Value error, "
    return message[len(prefix) :] if message.startswith(prefix) else message
