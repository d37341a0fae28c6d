"""`loom up` runs the trigger machinery: a signed webhook starts a run, the queue consumer
starts the event a queue-policy workflow held back, the SMTP listener takes mail for an
EMAIL trigger, and a stop shuts all of it down."""

from __future__ import annotations

import smtplib
import socket
import uuid
from email.message import EmailMessage
from pathlib import Path

import httpx

from loom.db import apply_migrations
from tests.utils.api import signup
from tests.utils.pg import PgCluster
from tests.utils.procs import cli_env, free_port, start_up, stop_up
from tests.utils.triggers import body_of, create, deploy, flow, signed, wait_until, webhook


def test_up_receives_webhooks_queues_by_policy_and_takes_mail(
    cluster: PgCluster, tmp_path: Path
) -> None:
    owner = cluster.create_database(f"e2e_{uuid.uuid4().hex[:8]}")  # nothing else scheduled
    apply_migrations(owner)
    port, smtp_port = free_port(), free_port()
    env = cli_env(
        tmp_path,
        DATABASE_URL=cluster.as_url(owner),
        LOOM_SMTP_PORT=str(smtp_port),
        LOOM_INTAKE_POLL_SECONDS="0.05",
    )
    proc = start_up(env, port)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            session = signup(http)
            pause = {"type": "FLOW", "subtype": "WAIT", "parameters": {"seconds": 0.5}}
            definition = flow(webhook(), then=pause)
            definition["nodes"].append(
                {"id": "mail", "type": "TRIGGER", "subtype": "EMAIL", "parameters": {}}
            )
            definition["edges"].append({"from": "mail", "to": "out"})
            workflow_id = create(http, session.headers, definition)
            deployed = deploy(http, session.headers, workflow_id, concurrency_policy="queue")
            hooks = {t["node_id"]: t for t in deployed["triggers"]}

            replies = []
            for n in range(2):
                body = body_of({"n": n})
                replies.append(
                    http.post(
                        hooks["t"]["url"], content=body, headers=signed(hooks["t"]["secret"], body)
                    ).json()
                )
            assert [r["status"] for r in replies] == ["started", "queued"]

            message = EmailMessage()
            message["From"] = "ada@example.com"
            message["To"] = hooks["mail"]["address"]
            message["Subject"] = "hello"
            message.set_content("hi")
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
                smtp.send_message(message)

            def three_succeeded() -> bool:
                runs = http.get(
                    "/v1/runs", params={"workflow_id": workflow_id}, headers=session.headers
                ).json()["items"]
                return len(runs) == 3 and all(r["status"] == "SUCCESS" for r in runs)

            wait_until(three_succeeded, timeout=60, what="three runs")
    finally:
        stop_up(proc)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", smtp_port)) != 0, "the SMTP listener stopped"
