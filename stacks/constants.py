"""Names shared by the stacks and the infra tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE_NAME = "loom"
BLOB_BUCKET_ID = "Blobs"
# Objects under runs/ are node outputs over the payload threshold; they expire with runs.
BLOB_RETENTION_DAYS = 90

# The state machine has a fixed name so that functions can be granted its ARN without a
# reference to it (the definition refers to them: a reference back would be a cycle).
STATE_MACHINE_NAME = "loom-workflow-run"
STATE_MACHINE_FILE = ROOT / "statemachines" / "workflow_run.asl.json"

# Context flag: skip bundling the layers (tests, and synth without pip).
SKIP_BUNDLING = "loom:skipBundling"

DATABASE_NAME = "loom"
APP_ROLE = "loom_app"

# Node types that run as steps, and the module of their function under functions/nodes.
NODE_FUNCTIONS = {
    "ACTION": "action",
    "AI_AGENT": "ai_agent",
    "EXTERNAL_ACTION": "external_action",
    "FLOW": "flow",
    "HUMAN_IN_THE_LOOP": "human_in_the_loop",
}
# Only these call models, so only they get the litellm layer.
MODEL_CALLERS = {"AI_AGENT"}

# functions/api modules and the path prefixes their routers serve.
API_ROUTES = {
    "public": ["/v1/public/{proxy+}"],
    "auth": ["/v1/auth/{proxy+}"],
    "workflows": ["/v1/workflows", "/v1/workflows/{proxy+}"],
    "runs": ["/v1/runs", "/v1/runs/{proxy+}"],
    "nodes": ["/v1/nodes", "/v1/nodes/{proxy+}"],
    "workspaces": ["/v1/workspaces", "/v1/workspaces/{proxy+}"],
    "api_keys": ["/v1/api-keys", "/v1/api-keys/{proxy+}"],
    "credentials": ["/v1/credentials", "/v1/credentials/{proxy+}"],
    "hil": ["/v1/hil", "/v1/hil/{proxy+}", "/v1/public/hil/{proxy+}"],
    "triggers": [
        "/v1/hooks/{proxy+}",
        "/v1/dead-letters",
        "/v1/dead-letters/{proxy+}",
        "/v1/workflows/{workflow_id}/deploy",
        "/v1/workflows/{workflow_id}/undeploy",
        "/v1/workflows/{workflow_id}/triggers",
        "/v1/workflows/{workflow_id}/triggers/{proxy+}",
    ],
    "mcp": ["/v1/mcp", "/v1/mcp/{proxy+}"],
    "agents": [
        "/v1/agents",
        "/v1/agents/{proxy+}",
        "/v1/episodes/{proxy+}",
        "/v1/threads/{proxy+}",
    ],
    "builder": ["/v1/builder/{proxy+}", "/v1/runs/{run_id}/explain"],
}
# API functions that call models (agents chat and exams; the builder drafts and explains),
# so they get the litellm layer.
API_MODEL_CALLERS = {"agents", "builder"}
API_THROTTLE_RATE = 200
API_THROTTLE_BURST = 400

# Asynchronous invocations: retried this often, then sent to the function's DLQ.
ASYNC_RETRIES = 2
DLQ_MAX_RECEIVE_COUNT = 5
