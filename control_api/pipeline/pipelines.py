"""The kinds of pipeline a deployment record can be: a deploy (train and serve), a version deploy (serve
a registered version without training), either as a canary, a rollback or an undeploy.

Which steps each walks depends on the target kind (``control_api.stack.targets``); ``none`` has a
deploy pipeline only, which stops after registration (status ``registered``).
"""

DEPLOY = "deploy"
DEPLOY_VERSION = "deploy_version"
# The same two with ``strategy: canary``: the new version is released beside the stable one in steps.
CANARY_DEPLOY = "canary_deploy"
CANARY_DEPLOY_VERSION = "canary_deploy_version"
ROLLBACK = "rollback"
UNDEPLOY = "undeploy"
