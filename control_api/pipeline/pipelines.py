"""The kinds of pipeline a deployment record can be: a deploy, a rollback or an undeploy.

Which steps each walks depends on the target kind (``control_api.stack.targets``); ``none`` has a
deploy pipeline only, which stops after registration (status ``registered``).
"""

DEPLOY = "deploy"
ROLLBACK = "rollback"
UNDEPLOY = "undeploy"
