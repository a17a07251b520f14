"""Two service processes share one PostgreSQL journal, and five deploys of one model arrive at both at
once: exactly one is admitted, the other four get 409 naming it.

Each replica checks for a running operation before it inserts one, and that check is atomic within one
process only. To make the cross-replica race certain rather than likely, the test holds an EXCLUSIVE
lock on the deployments table while the requests arrive: plain reads go through (every replica's check
finds the model free), inserts wait. Once one insert waits in each replica, the lock is released and
the inserts race; only the database can then refuse the second one.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.support.service_process import ServiceProcess

MODEL = "contended"
REPLICAS = 2
DEPLOYS = 5
# Admission is what is tested: the admitted deploy only has to stay active until every answer is in.
SLEEPING_SCRIPT = "import time\ntime.sleep(30)\n"
WAITING_INSERTS_QUERY = """
    SELECT count(*) FROM pg_locks
    WHERE NOT granted AND locktype = 'relation' AND relation = 'deployments'::regclass
"""


def deploy_body() -> dict:
    return {
        "script_content": base64.b64encode(SLEEPING_SCRIPT.encode()).decode(),
        "script_name": "sleep.py",
        "model_name": MODEL,
        "requirements": [],
    }


def wait_for_waiting_inserts(connection: psycopg.Connection, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    waiting = 0
    with psycopg.connect(connection.info.dsn, autocommit=True) as observer:
        while time.monotonic() < deadline:
            waiting = observer.execute(WAITING_INSERTS_QUERY).fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.05)
    raise AssertionError(f"{waiting} inserts waiting on the deployments table, expected {count}")


def test_five_concurrent_deploys_across_two_replicas_admit_exactly_one(postgres_url, tmp_path, venv_cache):
    replicas = [
        ServiceProcess(
            {
                "MLOPS_DATA_DIR": str(tmp_path / f"replica-{index}"),
                "MLOPS_JOURNAL__URL": postgres_url,
                "MLOPS_TARGET__KIND": "none",
                "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
            },
            tmp_path / f"replica-{index}.log",
        )
        for index in range(REPLICAS)
    ]
    libpq_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with ThreadPoolExecutor(REPLICAS) as starting:
            list(starting.map(ServiceProcess.start, replicas))

        with psycopg.connect(libpq_url) as holder, ThreadPoolExecutor(DEPLOYS) as pool:
            holder.execute("LOCK TABLE deployments IN EXCLUSIVE MODE")
            targets = [replicas[index % REPLICAS] for index in range(DEPLOYS)]
            futures = [
                pool.submit(replica.post, "/mlops/deploy", params={"wait": "false"}, json=deploy_body())
                for replica in targets
            ]
            # Each replica handles a deploy on its event loop, so one insert per replica waits.
            wait_for_waiting_inserts(holder, REPLICAS)
            holder.rollback()
            answers = [future.result() for future in futures]

        admitted = [answer for answer in answers if answer.status_code == 202]
        assert len(admitted) == 1, [(a.status_code, a.text) for a in answers]
        running_id = admitted[0].json()["deployment_id"]
        refused = [answer for answer in answers if answer is not admitted[0]]
        for answer in refused:
            assert answer.status_code == 409, answer.text
            error = answer.json()["error"]
            assert set(error) == {"code", "message", "details", "request_id"}
            assert error["code"] == "deploy_in_progress"
            assert error["details"]["deployment_id"] == running_id
            assert running_id in error["message"]

        # Both replicas see the one deployment of the model, and it is running.
        for replica in replicas:
            listed = replica.get("/mlops/deployments", params={"model": MODEL}).json()
            assert [item["deployment_id"] for item in listed["items"]] == [running_id]
            assert listed["items"][0]["status"] not in ("failed", "registered", "deployed", "timed_out")
    finally:
        for replica in replicas:
            replica.stop()
