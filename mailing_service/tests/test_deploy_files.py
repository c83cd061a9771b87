"""The deployment files are checked offline, against the schemas their packages ship:
Kubernetes manifests (kubernetes-validate), the CI files and docker-compose.yml (check-jsonschema's
built-in schemas). The kustomization is rendered here for what it uses (resources, namespace,
images, replicas, labels), so that the overlay's result is validated too."""

import copy
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict]:
    """What `kubectl kustomize directory` gives, for the features our kustomizations use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "images",
        "replicas",
        "labels",
    }
    assert not unknown, f"render() does not know {unknown}"
    docs = []
    for resource in kustomization["resources"]:
        path = directory / resource
        docs += render(path) if path.is_dir() else load_all(path)
    docs = copy.deepcopy(docs)
    for doc in docs:
        if "namespace" in kustomization:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for label_set in kustomization.get("labels", []):
            doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])
        for container in _containers(doc):
            for image in kustomization.get("images", []):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
        for replicas in kustomization.get("replicas", []):
            if doc["metadata"]["name"] == replicas["name"] and doc["kind"] == "Deployment":
                doc["spec"]["replicas"] = replicas["count"]
    return docs


def _containers(doc: dict) -> list[dict]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", []) + pod.get("initContainers", [])


BASE = render(K8S / "base")
PRODUCTION = render(K8S / "overlays" / "production")


def by_name(docs, kind: str, name: str) -> dict:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize(
    "doc",
    [*BASE, *PRODUCTION, *load_all(K8S / "base" / "secret.example.yaml")],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}/{doc['metadata'].get('namespace', '-')}",
)
def test_every_manifest_is_valid_kubernetes(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_overlay_sets_namespace_image_and_replicas():
    assert {doc["metadata"]["namespace"] for doc in PRODUCTION} == {"mailing"}
    images = {container["image"] for doc in PRODUCTION for container in _containers(doc)}
    assert images == {"registry.example.com/mailing-service:1.0.0"}
    assert by_name(PRODUCTION, "Deployment", "mailing-worker")["spec"]["replicas"] == 4


def test_beat_is_exactly_one_pod_recreated():
    beat = by_name(PRODUCTION, "Deployment", "mailing-beat")["spec"]

    assert beat["replicas"] == 1
    assert beat["strategy"] == {"type": "Recreate"}


def test_workers_stop_gracefully_within_their_grace_period():
    pod = by_name(BASE, "Deployment", "mailing-worker")["spec"]["template"]["spec"]
    [worker] = pod["containers"]

    assert pod["terminationGracePeriodSeconds"] >= 40  # the sender's graceful stop is ~30 s
    assert "cancel_consumer" in " ".join(worker["lifecycle"]["preStop"]["exec"]["command"])


def test_web_health_checks_use_the_health_endpoints():
    [web] = _containers(by_name(BASE, "Deployment", "mailing-web"))

    assert web["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_the_ingress_sends_receipts_to_the_receipt_server_and_the_rest_to_web():
    [rule] = by_name(BASE, "Ingress", "mailing-web")["spec"]["rules"]
    backends = {path["path"]: path["backend"]["service"]["name"] for path in rule["http"]["paths"]}
    receipts = by_name(BASE, "Deployment", "mailing-receipts")
    [server] = _containers(receipts)

    assert backends == {"/receipts/": "mailing-receipts", "/": "mailing-web"}
    service = by_name(BASE, "Service", "mailing-receipts")
    assert service["spec"]["selector"].items() <= receipts["spec"]["template"]["metadata"]["labels"].items()
    assert server["command"][:3] == ["python", "manage.py", "serve_receipts"]
    assert server["livenessProbe"]["httpGet"]["path"] == "/health/live"


def test_every_container_has_requests_and_limits():
    for doc in BASE:
        for container in _containers(doc):
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), doc["metadata"]["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), doc["metadata"]["name"]


def test_disruption_budgets_select_web_and_worker_pods():
    for name, component in [("mailing-web", "web"), ("mailing-worker", "worker")]:
        budget = by_name(BASE, "PodDisruptionBudget", name)
        deployment = by_name(BASE, "Deployment", name)
        assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": component}
        assert (
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == component
        )


def test_the_secret_is_a_template_outside_the_kustomization():
    [secret] = load_all(K8S / "base" / "secret.example.yaml")

    assert not [doc for doc in BASE if doc["kind"] == "Secret"]
    assert all("change-me" in value or "example" in value for value in secret["stringData"].values())
    referenced = {
        source["secretRef"]["name"]
        for doc in BASE
        for container in _containers(doc)
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    assert referenced == {secret["metadata"]["name"]}


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "schema, path",
    [
        ("vendor.gitlab-ci", REPO / ".gitlab-ci.yml"),
        ("vendor.github-workflows", REPO / ".github" / "workflows" / "ci.yml"),
        ("vendor.compose-spec", REPO / "docker-compose.yml"),
    ],
)
def test_ci_and_compose_files_match_their_schemas(schema, path):
    result = check_jsonschema(schema, path)

    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_file_fails_the_schema_check(tmp_path):
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  web:\n    image: 3\n    ports: nope\n")

    assert check_jsonschema("vendor.compose-spec", broken).returncode != 0


def gitlab_job() -> tuple[dict, list[str]]:
    job = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())["test"]
    return job, [*job.get("before_script", []), *job["script"], *job.get("after_script", [])]


def github_job() -> tuple[dict, list[str]]:
    job = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())["jobs"]["test"]
    return job, [step["run"] for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("ci_job", [gitlab_job, github_job])
def test_the_ci_files_run_ci_run_and_install_nothing_of_their_own(ci_job):
    """What .ci/run installs and starts (the services, chromium-driver, promtool...) is what CI has:
    a CI file with packages or services of its own would drift from it."""
    job, commands = ci_job()

    assert commands == ["bash .ci/run"]
    assert "services" not in job
