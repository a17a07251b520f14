"""Image builders: a Docker Engine (``docker``) or the daemonless ``buildah`` command (``buildah``).

The kinds are registered in ``control_api.stack.builders``.
"""
