"""Concurrent deploy threads (and, on PostgreSQL, several replicas) lose no journal update."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from control_api.journal.store import DeploymentStatus, Journal, StepStatus

WRITERS = 8
STEPS = ["train", "register", "build", "push"]


def run_together(work, count: int = WRITERS) -> list:
    """Run ``work(index)`` on ``count`` threads released at the same moment; re-raise the first error."""
    start = threading.Barrier(count)

    def released(index: int):
        start.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return [future.result(timeout=120) for future in [pool.submit(released, i) for i in range(count)]]


def test_writers_each_running_their_own_deployments_lose_nothing(journal):
    per_writer = 2

    def deploy_models(writer: int) -> list[str]:
        ids = []
        for n in range(per_writer):
            deployment = journal.create(
                kind="deploy",
                model_name=f"model-{writer}",
                namespace="models",
                request={"writer": writer, "n": n},
                step_names=STEPS,
            )
            for position, name in enumerate(STEPS):
                journal.step_started(deployment.id, name)
                journal.step_progress(deployment.id, name, {f"{name}_started_by": writer})
                journal.add_log(deployment.id, name, [f"{name} {writer}/{n}"])
                journal.step_finished(deployment.id, name, StepStatus.SUCCEEDED, outputs={f"{name}_result": position})
            journal.set_status(deployment.id, DeploymentStatus.DEPLOYED, finished=True)
            ids.append(deployment.id)
        return ids

    created = [i for ids in run_together(deploy_models) for i in ids]

    assert len(set(created)) == WRITERS * per_writer
    records, total = journal.list(limit=500)
    assert total == WRITERS * per_writer
    assert {r.id for r in records} == set(created)
    assert journal.unfinished() == []
    for record in records:
        writer = record.request["writer"]
        assert record.status == DeploymentStatus.DEPLOYED
        assert [(s.status, s.attempts) for s in record.steps] == [(StepStatus.SUCCEEDED, 1)] * len(STEPS)
        expected = {}
        for position, name in enumerate(STEPS):
            expected.update({f"{name}_started_by": writer, f"{name}_result": position})
        assert record.outputs == expected
        # per step: started, log line, finished; then the status change
        assert len(journal.events(record.id)) == 3 * len(STEPS) + 1


def test_writers_updating_the_same_step_keep_every_output_and_attempt(journal):
    rounds = 5
    deployment = journal.create(kind="deploy", model_name="iris", namespace="models", request={}, step_names=STEPS)

    def hammer_one_step(writer: int) -> None:
        for n in range(rounds):
            journal.step_started(deployment.id, "train")
            journal.step_progress(deployment.id, "train", {f"progress-{writer}-{n}": n})
            journal.step_finished(deployment.id, "train", StepStatus.SUCCEEDED, outputs={f"finished-{writer}-{n}": n})

    run_together(hammer_one_step)

    train = journal.get(deployment.id).step("train")
    assert train.attempts == WRITERS * rounds
    expected = {
        f"{kind}-{w}-{n}": n for kind in ("progress", "finished") for w in range(WRITERS) for n in range(rounds)
    }
    assert train.outputs == expected
    assert len(journal.events(deployment.id)) == 2 * WRITERS * rounds


def test_replicas_sharing_one_postgresql_lose_no_update(postgres_url):
    """Several service replicas on one database: the in-process lock cannot help, the database must."""
    replicas = [Journal(postgres_url) for _ in range(2)]
    try:
        deployment = replicas[0].create(
            kind="deploy", model_name="iris", namespace="models", request={}, step_names=STEPS
        )
        rounds = 5

        def write_through_a_replica(writer: int) -> None:
            replica = replicas[writer % len(replicas)]
            for n in range(rounds):
                replica.step_started(deployment.id, "build")
                replica.step_progress(deployment.id, "build", {f"{writer}-{n}": n})

        run_together(write_through_a_replica)

        for replica in replicas:
            build = replica.get(deployment.id).step("build")
            assert build.attempts == WRITERS * rounds
            assert build.outputs == {f"{w}-{n}": n for w in range(WRITERS) for n in range(rounds)}
    finally:
        for replica in replicas:
            replica.close()


def test_replicas_starting_together_on_an_empty_postgresql_all_come_up(postgres_url):
    """Every replica creates the schema at start-up; racing CREATE TABLEs must not crash any of them."""
    replicas = run_together(lambda _: Journal(postgres_url), count=4)
    try:
        created = replicas[0].create(kind="deploy", model_name="iris", namespace="models", request={}, step_names=STEPS)
        assert [replica.get(created.id).id for replica in replicas] == [created.id] * 4
    finally:
        for replica in replicas:
            replica.close()
