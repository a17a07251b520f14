"""The pull request description a reviewer reads: what changes, how the model compares, how to undo it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, StrictUndefined

ROWS = (("version", "Version"), ("image", "Image"), ("run_id", "MLflow run"))
EMPTY = "—"

_TEMPLATE = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True).from_string(
    """\
## Deploy `{{ model_name }}` version {{ new_version }}

{% if has_current %}Replaces version {{ current_version }}.{% else %}First deployment of this model.{% endif %}

| | New | Current |
| --- | --- | --- |
{% for row in rows %}| {{ row.label }} | {{ row.new }} | {{ row.current }} |
{% endfor %}{% if not metric_rows %}
No metrics were logged.
{% endif %}
### How to roll back

- **Before merging:** close this pull request; nothing reaches the cluster.
- **After merging:** revert the merge commit (`git revert -m 1 <merge sha>`, or `git revert <sha>` for a \
squash merge) and let the control service sync it{% if has_current %}; the manifests of version \
{{ current_version }} come back byte for byte{% endif %}.
- **In Argo CD:** open the model's application, *History and Rollback*, and pick the previous revision.
"""
)


def render_pr_body(model_name: str, new: Mapping[str, Any], current: Mapping[str, Any] | None) -> str:
    """Markdown for a deploy's pull request.

    ``new`` / ``current`` carry ``version``, ``image``, ``run_id`` and ``metrics`` (name -> number);
    ``current`` is None for a model's first deploy.
    """
    current_values = current or {}
    rows = [
        {
            "label": label,
            "new": _cell(new.get(key), code=key != "version"),
            "current": _cell(current_values.get(key), code=key != "version"),
        }
        for key, label in ROWS
    ]
    new_metrics = dict(new.get("metrics") or {})
    current_metrics = dict(current_values.get("metrics") or {})
    metric_rows = [
        {
            "label": f"metric `{_escape(name)}`",
            "new": _metric_with_change(new_metrics.get(name), current_metrics.get(name)),
            "current": _metric(current_metrics.get(name)),
        }
        for name in sorted(set(new_metrics) | set(current_metrics))
    ]
    return _TEMPLATE.render(
        model_name=_escape(model_name),
        new_version=_escape(str(new.get("version", EMPTY))),
        has_current=current is not None,
        current_version=_escape(str(current_values.get("version", EMPTY))),
        rows=rows + metric_rows,
        metric_rows=metric_rows,
    )


def _cell(value: Any, code: bool) -> str:
    if value is None or value == "":
        return EMPTY
    text = _escape(str(value))
    return f"`{text}`" if code else text


def _metric(value: Any) -> str:
    if value is None:
        return EMPTY
    return f"{value:.6g}" if isinstance(value, float) else _escape(str(value))


def _metric_with_change(new: Any, current: Any) -> str:
    shown = _metric(new)
    if _is_number(new) and _is_number(current) and new != current:
        delta = new - current
        return f"{shown} ({'+' if delta > 0 else '−'}{abs(delta):.4g})"
    return shown


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _escape(text: str) -> str:
    # A pipe would split a table cell, a newline would end the table, a backtick would close inline code.
    return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")
