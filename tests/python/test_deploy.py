"""The deployment files say what graftd accepts: the Kubernetes base and its
CPU and GPU overlays (rendered here as kustomize renders them: resources,
then JSON patches), the compose file's two profiles and Prometheus's scrape
config. Every graftd flag they pass is a flag graftd has, every Secret,
volume claim, port name and selector they refer to exists, the roles are
what README "Scaling out" says, and the autoscaler's metric is one graftd
exports."""
import base64
import copy
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml

from conftest import GRAFTD, IMAGES, SHARED, SOURCE, Graftd, free_port

K8S = SOURCE / "deploy" / "k8s"


def graftd_flags():
    out = subprocess.run([GRAFTD, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--(?:\[no\])?([a-z_0-9]+)", out, re.M))


def load_docs(path: Path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def json_patch(doc, ops):
    for op in ops:
        parts = [p for p in op["path"].split("/") if p]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            assert op["op"] == "add" and last == "-", op
            parent.append(op["value"])
        else:
            assert op["op"] == "add" or last in parent, f"{op['op']} of a missing {op['path']}"
            parent[last] = op["value"]


def render(directory: Path):
    """A kustomization's objects: resources (files or kustomizations), images, patches."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objects = []
    for r in k.get("resources", []):
        path = directory / r
        assert path.exists(), f"{directory}/kustomization.yaml: resource {r} does not exist"
        objects += render(path) if path.is_dir() else load_docs(path)
    for image in k.get("images", []):
        for o in objects:
            for c in pod_spec(o).get("containers", []) if pod_spec(o) else []:
                if c["image"].split(":")[0] == image["name"]:
                    c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    for patch in k.get("patches", []):
        target = patch["target"]
        matches = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert len(matches) == 1, f"patch target {target} matches {len(matches)} objects"
        json_patch(matches[0], yaml.safe_load(patch["patch"]))
    return copy.deepcopy(objects)


def pod_spec(o):
    return o.get("spec", {}).get("template", {}).get("spec")


def find(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def check_references(objects, flags):
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for o in objects:
        spec = pod_spec(o)
        if spec is None:
            continue
        labels = o["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in o["spec"]["selector"]["matchLabels"].items())
        claims = {v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v}
        for claim in claims:
            assert ("PersistentVolumeClaim", claim) in names, f"{o['metadata']['name']}: no claim {claim}"
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in names
        for c in spec["containers"]:
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])}
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = find(objects, "Secret", ref["name"])
                    assert ref["key"] in secret["stringData"], f"Secret {ref['name']} has no key {ref['key']}"
            if c["image"].startswith("graft:"):
                for arg in c["args"]:
                    flag = arg[2:].split("=")[0]
                    assert flag in flags, f"{o['metadata']['name']}: graftd has no flag --{flag}"
    for svc in (o for o in objects if o["kind"] == "Service"):
        pods = [o for o in objects if pod_spec(o) and all(
            o["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in svc["spec"]["selector"].items())]
        assert pods, f"Service {svc['metadata']['name']} selects no pods"
        ports = {p["name"] for o in pods for c in pod_spec(o)["containers"] for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, f"Service {svc['metadata']['name']}: no container port {p['targetPort']}"


def args_of(objects, kind, name):
    return pod_spec(find(objects, kind, name))["containers"][0]["args"]


def test_kubernetes_overlays_render_and_refer_to_what_exists():
    flags = graftd_flags()
    assert {"serve", "train", "artifact_dir", "worker_id", "job_takeover_s"} <= flags
    for overlay, device in (("cpu", "--device=cpu"), ("gpu", "--device=cuda:0")):
        objects = render(K8S / "overlays" / overlay)
        check_references(objects, flags)
        serve = args_of(objects, "Deployment", "graftd-serve")
        train = args_of(objects, "StatefulSet", "graftd-train")
        assert "--train=false" in serve and "--serve=false" in train
        assert device in serve and device in train
        # One artifact volume, ReadWriteMany, at the --artifact_dir of both roles.
        assert find(objects, "PersistentVolumeClaim", "graft-artifacts")["spec"]["accessModes"] == ["ReadWriteMany"]
        for kind, name, args in (("Deployment", "graftd-serve", serve), ("StatefulSet", "graftd-train", train)):
            mounts = {m["name"]: m["mountPath"] for m in pod_spec(find(objects, kind, name))["containers"][0]["volumeMounts"]}
            assert f"--artifact_dir={mounts['artifacts']}" in args
        # Trainers are named by their stable pod names.
        assert "--worker_id=$(POD_NAME)" in train
        # Data-parallel ranks find rank 0 at its pod IP, on a declared port.
        trainer = pod_spec(find(objects, "StatefulSet", "graftd-train"))["containers"][0]
        assert "--dist_host=$(POD_IP)" in train and "--dist_port=29500" in train
        assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in trainer["env"]
        assert {"name": "dist", "containerPort": 29500} in trainer["ports"]
        # Only trainers reach a trainer's rendezvous and Gloo ports.
        policy = find(objects, "NetworkPolicy", "graftd-train")["spec"]
        labels = find(objects, "StatefulSet", "graftd-train")["spec"]["template"]["metadata"]["labels"]
        assert policy["policyTypes"] == ["Ingress"]
        assert all(labels.get(k) == v for k, v in policy["podSelector"]["matchLabels"].items())
        peers, open_ports = policy["ingress"]
        assert all(labels.get(k) == v for k, v in peers["from"][0]["podSelector"]["matchLabels"].items())
        assert "ports" not in peers
        assert sorted(p["port"] for p in open_ports["ports"]) == [9464, 50051] and "from" not in open_ports
        hpa = find(objects, "HorizontalPodAutoscaler", "graftd-serve")
        assert hpa["spec"]["scaleTargetRef"]["name"] == "graftd-serve"
        if overlay == "gpu":
            for kind, name in (("Deployment", "graftd-serve"), ("StatefulSet", "graftd-train")):
                c = pod_spec(find(objects, kind, name))["containers"][0]
                assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
                assert c["image"] == "graft:cuda"


def test_the_autoscalers_metric_and_the_readiness_probe_are_graftds(tmp_path):
    objects = render(K8S / "overlays" / "cpu")
    metric = find(objects, "HorizontalPodAutoscaler", "graftd-serve")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    port = free_port()
    g = Graftd(tmp_path, f"--metrics_port={port}", "--train=false").start()
    try:
        # One prediction through a serving process's REST port makes its batcher's series.
        body = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                       "data": [base64.b64encode((IMAGES / "dog.jpg").read_bytes()).decode()]}]})
        request = urllib.request.Request(f"http://127.0.0.1:{g.http_port}/v2/models/mobilenet_v2/infer",
                                         data=body.encode(), method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {g.token}"})
        assert urllib.request.urlopen(request, timeout=60).status == 200
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert re.search(rf'^{metric}{{backbone="mobilenet_v2"}} ', text, re.M), f"graftd exports no {metric}"
    finally:
        g.stop()
    probe = pod_spec(find(objects, "Deployment", "graftd-serve"))["containers"][0]["readinessProbe"]
    assert probe["grpc"]["port"] == 50051


def test_compose_profiles_and_prometheus_discovery(tmp_path):
    flags = graftd_flags()
    compose = yaml.safe_load((SOURCE / "deploy" / "docker-compose.yml").read_text())
    services = compose["services"]
    env = (SOURCE / "deploy" / ".env").read_text()
    assert re.search(r"^COMPOSE_PROFILES=single$", env, re.M)
    assert services["graftd"]["profiles"] == ["single"]
    scale = {n: s for n, s in services.items() if s.get("profiles") == ["scale-out"]}
    assert set(scale) == {"postgres", "graftd-serve-1", "graftd-serve-2", "graftd-train"}
    for name in ("graftd-serve-1", "graftd-serve-2", "graftd-train"):
        s = scale[name]
        for arg in s["command"]:
            assert arg[2:].split("=")[0] in flags, f"{name}: graftd has no flag {arg}"
        assert s["environment"]["GRAFT_DATABASE"].startswith("postgresql://")
        assert "graft-artifacts:/var/lib/graft-artifacts" in s["volumes"]
        assert "--artifact_dir=/var/lib/graft-artifacts" in s["command"]
        assert "graftd-metrics" in s["networks"]["default"]["aliases"]
    assert "--train=false" in scale["graftd-serve-1"]["command"]
    assert "--train=false" in scale["graftd-serve-2"]["command"]
    assert "--serve=false" in scale["graftd-train"]["command"]
    assert "graftd-metrics" in services["graftd"]["networks"]["default"]["aliases"]
    # Host ports do not collide.
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", []) if "single" not in s.get("profiles", [])]
    assert len(published) == len(set(published))
    prometheus = yaml.safe_load((SOURCE / "deploy" / "prometheus" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["job_name"] == "graftd"  # the alerts select job="graftd"
    assert job["dns_sd_configs"][0]["names"] == ["graftd-metrics"]
    # And Prometheus itself accepts the file (with the alerts where compose mounts them).
    prometheus["rule_files"] = [str(SOURCE / "deploy" / "prometheus" / "alerts.yml")]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus))
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_sigterm_while_graftd_starts_stops_it_cleanly(tmp_path):
    # A supervisor (Kubernetes, systemd, a test restarting graftd) may send
    # SIGTERM at any moment, also while graftd is still starting: it must
    # shut down cleanly (exit 0, "graftd shutting down"), never die of the
    # signal's default action.
    g = Graftd(tmp_path)
    g.data_dir.mkdir(parents=True)
    with open(g.log, "ab") as log:
        proc = subprocess.Popen(
            [GRAFTD, "--host=127.0.0.1", f"--port={g.port}", "--metrics_port=-1", "--offline", "--http_port=-1",
             f"--data_dir={g.data_dir}", f"--zoo_dir={SHARED / 'weights'}", "--preload=mobilenet_v2"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        # Logged while the zoo is made, before the preloaded backbone loads.
        while b"device memory budget" not in g.log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, g.log.read_text()[-4000:]
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = g.log.read_text()
    assert code == 0, f"graftd ended with {code} on a SIGTERM while starting; its log:\n{text[-4000:]}"
    assert "graftd shutting down" in text
