"""``mlops``: the users' command line for the control service (deploy with live progress, inspect, roll back)."""
