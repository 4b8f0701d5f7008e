"""The Open Inference Protocol (KServe v2) on graftd: gRPC with stubs generated
from proto/inference, and REST with nothing but Python's standard library.
The probabilities must equal graft's own Predict."""
import base64
import json
import os
import re
import shutil
import struct
import subprocess
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from conftest import IMAGES, SOURCE

DOG = (IMAGES / "dog.jpg").read_bytes()
EAGLE = (IMAGES / "eagle.jpg").read_bytes()
BACKBONE = "mobilenet_v2"


@pytest.fixture(scope="module")
def channel(graftd):
    with grpc.insecure_channel(graftd.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def stub(oip, channel):
    return oip[1].GRPCInferenceServiceStub(channel)


@pytest.fixture(scope="module")
def auth(graftd):
    return (("authorization", f"Bearer {graftd.token}"),)


def graft_probabilities(graft_client, graftd, images=None, tensor=None):
    """graft's own Predict, top_k = every class, as an [N, 1000] array."""
    from graft_client._gen.graft.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    with grpc.insecure_channel(graftd.address) as ch:
        request = inference_pb2.PredictRequest(backbone=BACKBONE, top_k=1000)
        for b in images or []:
            request.images.add(encoded=b)
        if tensor is not None:
            request.images.add(tensor=common_pb2.FloatTensor(shape=list(tensor.shape),
                                                             raw_values=tensor.astype("<f4").tobytes()))
        response = inference_pb2_grpc.InferenceStub(ch).Predict(
            request, metadata=(("authorization", f"Bearer {graftd.token}"),))
    out = np.zeros((len(response.results[0].predictions), 1000), dtype=np.float32)
    for p in response.results[0].predictions:
        for s in p.top:
            out[p.image_index, s.index] = s.probability
    return out


def raw_bytes(*elements):
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def infer_request(pb, images=None, tensor=None, raw=False, classification=None, model=BACKBONE):
    r = pb.ModelInferRequest(model_name=model, id="req-1")
    if images is not None:
        t = r.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
        if raw:
            r.raw_input_contents.append(raw_bytes(*images))
        else:
            t.contents.bytes_contents.extend(images)
    if tensor is not None:
        t = r.inputs.add(name="tensor", datatype="FP32", shape=list(tensor.shape))
        if raw:
            r.raw_input_contents.append(tensor.astype("<f4").tobytes())
        else:
            t.contents.fp32_contents.extend(tensor.ravel().tolist())
    if classification is not None:
        out = r.outputs.add(name="probabilities")
        out.parameters["classification"].int64_param = classification
    return r


def probabilities_of(response):
    out = response.outputs[0]
    if response.raw_output_contents:
        values = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    else:
        values = np.asarray(out.contents.fp32_contents, dtype=np.float32)
    return values.reshape(list(out.shape))


def test_server_live_ready_and_metadata(oip, stub, auth):
    pb = oip[0]
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    with pytest.raises(grpc.RpcError) as e:
        stub.ServerMetadata(pb.ServerMetadataRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    meta = stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=auth)
    assert meta.name == "graft"
    assert "classification" in meta.extensions


def test_model_metadata_and_readiness(oip, stub, auth):
    pb = oip[0]
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=BACKBONE), metadata=auth)
    assert meta.name == BACKBONE and list(meta.versions) == ["1"]
    inputs = {t.name: (t.datatype, list(t.shape)) for t in meta.inputs}
    assert inputs == {"image": ("BYTES", [-1]), "tensor": ("FP32", [-1, 3, 224, 224])}
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("probabilities", "FP32", [-1, 1000])]
    assert stub.ModelReady(pb.ModelReadyRequest(name="MobileNetV2"), metadata=auth).ready
    # A registry backbone without weights on this machine is a model, not ready.
    assert not stub.ModelReady(pb.ModelReadyRequest(name="resnet50"), metadata=auth).ready
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelReady(pb.ModelReadyRequest(name="no-such-model"), metadata=auth)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in e.value.details()


@pytest.mark.parametrize("raw", [False, True])
def test_bytes_inputs_give_graft_predict_probabilities(oip, stub, auth, graft_client, graftd, raw):
    response = stub.ModelInfer(infer_request(oip[0], images=[DOG, EAGLE], raw=raw), metadata=auth)
    assert response.model_name == BACKBONE and response.model_version == "1" and response.id == "req-1"
    assert (response.outputs[0].name, response.outputs[0].datatype) == ("probabilities", "FP32")
    assert bool(response.raw_output_contents) == raw
    probs = probabilities_of(response)
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs, graft_probabilities(graft_client, graftd, images=[DOG, EAGLE]), atol=1e-6)
    assert abs(probs[0].sum() - 1) < 1e-3


@pytest.mark.parametrize("raw", [False, True])
def test_fp32_tensor_inputs_give_graft_predict_probabilities(oip, stub, auth, graft_client, graftd, raw):
    tensor = np.random.default_rng(7).normal(size=(2, 3, 224, 224)).astype(np.float32)
    probs = probabilities_of(stub.ModelInfer(infer_request(oip[0], tensor=tensor, raw=raw), metadata=auth))
    assert probs.shape == (2, 1000)
    np.testing.assert_allclose(probs, graft_probabilities(graft_client, graftd, tensor=tensor), atol=1e-6)


def test_classification_extension(oip, stub, auth, graft_client, graftd):
    response = stub.ModelInfer(infer_request(oip[0], images=[DOG, EAGLE], classification=3), metadata=auth)
    out = response.outputs[0]
    assert (out.datatype, list(out.shape)) == ("BYTES", [2, 3])
    rows = [e.decode() for e in out.contents.bytes_contents]
    score, index, label = rows[0].split(":", 2)
    assert label.startswith("malamute")
    expected = graft_probabilities(graft_client, graftd, images=[DOG])[0]
    assert int(index) == int(expected.argmax()) and abs(float(score) - expected.max()) < 1e-5
    assert rows[3].split(":", 2)[2].startswith("kite")
    # Asking for more classes than the model has answers all of them.
    every = stub.ModelInfer(infer_request(oip[0], images=[DOG], classification=5000), metadata=auth)
    assert list(every.outputs[0].shape) == [1, 1000]
    assert [e.decode() for e in every.outputs[0].contents.bytes_contents][0] == rows[0]
    # Raw requests get raw answers, length-prefixed.
    raw = stub.ModelInfer(infer_request(oip[0], images=[DOG], raw=True, classification=2), metadata=auth)
    first = raw.raw_output_contents[0]
    n = struct.unpack("<I", first[:4])[0]
    assert first[4:4 + n].decode() == rows[0]


@pytest.mark.parametrize("mutate, code, words", [
    (lambda r: r.inputs[0].contents.bytes_contents.append(DOG), grpc.StatusCode.INVALID_ARGUMENT,
     "has 2 bytes_contents; its shape holds 1"),
    (lambda r: r.raw_input_contents.append(raw_bytes(DOG)), grpc.StatusCode.INVALID_ARGUMENT,
     "both contents and raw_input_contents"),
    (lambda r: setattr(r.inputs[0], "datatype", "INT32"), grpc.StatusCode.INVALID_ARGUMENT, "datatype 'INT32'"),
    (lambda r: r.outputs.add(name="logits"), grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'logits'"),
    (lambda r: setattr(r, "model_name", "nobody"), grpc.StatusCode.NOT_FOUND, "no model or backbone 'nobody'"),
    (lambda r: r.inputs[0].shape.__setitem__(0, 100), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "--max_images_per_request"),
    (lambda r: r.inputs[0].contents.bytes_contents.__setitem__(0, b"not an image"), grpc.StatusCode.INVALID_ARGUMENT,
     "image 0"),
])
def test_bad_requests_are_refused_by_name(oip, stub, auth, mutate, code, words):
    request = infer_request(oip[0], images=[DOG])
    mutate(request)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, metadata=auth)
    assert e.value.code() == code, e.value.details()
    assert words in e.value.details()


def test_raw_bytes_with_a_lying_length_is_refused(oip, stub, auth):
    request = infer_request(oip[0], images=[DOG], raw=True)
    request.raw_input_contents[0] = struct.pack("<I", 1 << 30) + DOG
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, metadata=auth)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "claims 1073741824 bytes" in e.value.details()


# ---- REST -------------------------------------------------------------------

def http(graftd, method, path, body=None, token="admin", headers=None):
    request = urllib.request.Request(f"http://127.0.0.1:{graftd.http_port}{path}", data=body, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    if token:
        request.add_header("Authorization", f"Bearer {graftd.token if token == 'admin' else token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def json_infer(images=None, tensor=None, classification=None):
    inputs = []
    if images is not None:
        inputs.append({"name": "image", "datatype": "BYTES", "shape": [len(images)],
                       "data": [base64.b64encode(b).decode() for b in images]})
    if tensor is not None:
        inputs.append({"name": "tensor", "datatype": "FP32", "shape": list(tensor.shape), "data": tensor.tolist()})
    body = {"id": "r1", "inputs": inputs}
    if classification:
        body["outputs"] = [{"name": "probabilities", "parameters": {"classification": classification}}]
    return json.dumps(body).encode()


def test_rest_health_metadata_and_tokens(graftd):
    assert http(graftd, "GET", "/v2/health/live", token=None)[0] == 200
    assert http(graftd, "GET", "/v2/health/ready", token=None)[0] == 200
    status, headers, body = http(graftd, "GET", "/v2", token=None)
    assert status == 401 and "no token" in json.loads(body)["error"]
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert http(graftd, "GET", "/v2", token="wrong")[0] == 401
    status, _, body = http(graftd, "GET", "/v2")
    assert status == 200 and json.loads(body)["name"] == "graft"
    status, _, body = http(graftd, "GET", f"/v2/models/{BACKBONE}/versions/1")
    meta = json.loads(body)
    assert status == 200 and meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]
    assert http(graftd, "GET", f"/v2/models/{BACKBONE}/ready")[0] == 200
    assert http(graftd, "GET", "/v2/models/resnet50/ready")[0] == 400
    status, _, body = http(graftd, "GET", "/v2/models/nobody")
    assert status == 404 and "no model or backbone 'nobody'" in json.loads(body)["error"]


def test_rest_json_infer_equals_graft_predict(graftd, graft_client):
    status, headers, body = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", json_infer(images=[DOG, EAGLE]),
                                 headers={"Content-Type": "application/json"})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["id"] == "r1" and answer["model_version"] == "1"
    out = answer["outputs"][0]
    assert out["shape"] == [2, 1000] and out["datatype"] == "FP32"
    probs = np.asarray(out["data"], dtype=np.float32).reshape(2, 1000)
    np.testing.assert_allclose(probs, graft_probabilities(graft_client, graftd, images=[DOG, EAGLE]), atol=1e-6)
    # FP32 as nested JSON arrays.
    tensor = np.random.default_rng(3).normal(size=(1, 3, 224, 224)).astype(np.float32)
    status, _, body = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", json_infer(tensor=tensor))
    assert status == 200, body
    probs = np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32).reshape(1, 1000)
    np.testing.assert_allclose(probs, graft_probabilities(graft_client, graftd, tensor=tensor), atol=1e-6)
    # Classification strings.
    status, _, body = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", json_infer(images=[DOG], classification=1))
    out = json.loads(body)["outputs"][0]
    assert out["datatype"] == "BYTES" and out["shape"] == [1, 1] and ":malamute" in out["data"][0]


def test_rest_form_encoded_content_type_is_read_as_json(graftd):
    # curl -d and urllib send application/x-www-form-urlencoded by default: the
    # body is the protocol's JSON all the same (cpp-httplib used to cap such
    # bodies at 8 KiB whatever the limit).
    status, _, answer = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", json_infer(images=[DOG]),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, answer
    assert json.loads(answer)["outputs"][0]["shape"] == [1, 1000]


def test_rest_binary_tensor_data(graftd, graft_client):
    header = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                                     "parameters": {"binary_data_size": len(raw_bytes(DOG, EAGLE))}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    status, headers, body = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", header + raw_bytes(DOG, EAGLE),
                                 headers={"Inference-Header-Content-Length": str(len(header)),
                                          "Content-Type": "application/octet-stream"})
    assert status == 200, body
    n = int(headers["Inference-Header-Content-Length"])
    answer = json.loads(body[:n])
    out = answer["outputs"][0]
    assert out["parameters"]["binary_data_size"] == 2 * 1000 * 4 and "data" not in out
    probs = np.frombuffer(body[n:], dtype="<f4").reshape(2, 1000)
    np.testing.assert_allclose(probs, graft_probabilities(graft_client, graftd, images=[DOG, EAGLE]), atol=1e-6)


@pytest.mark.parametrize("body, headers, words", [
    (b"{not json", {}, "not valid JSON"),
    (b"[]", {}, "must be a JSON object"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}', {}, "not a base64 string"),
    (b'{"inputs": []}', {}, "takes one input"),
    (b"[" * 100000, {}, "nests deeper than 16"),
    (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 99}}]}',
     {}, "binary_data_size must be an integer within"),
    (b"{}", {"Inference-Header-Content-Length": "5"}, "is 5 but the body has 2 bytes"),
], ids=["not-json", "array", "bad-base64", "no-inputs", "deep", "binary-size", "header-length"])
def test_rest_bad_requests_answer_400_with_the_reason(graftd, body, headers, words):
    status, _, answer = http(graftd, "POST", f"/v2/models/{BACKBONE}/infer", body, headers=headers)
    assert status == 400, answer
    assert words in json.loads(answer)["error"]


def test_rest_serves_https_with_the_grpc_certificate(tmp_path, graft_client):
    import ssl
    import subprocess

    from conftest import Graftd

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    g = Graftd(tmp_path, f"--tls_cert={tmp_path / 'cert.pem'}", f"--tls_key={tmp_path / 'key.pem'}").start()
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        request = urllib.request.Request(f"https://localhost:{g.http_port}/v2",
                                         headers={"Authorization": f"Bearer {g.token}"})
        with urllib.request.urlopen(request, context=context, timeout=30) as r:
            assert json.loads(r.read())["name"] == "graft"
        # Plain HTTP is not answered.
        with pytest.raises(Exception):
            urllib.request.urlopen(f"http://127.0.0.1:{g.http_port}/v2/health/live", timeout=10).read()
        # The gRPC port speaks TLS with the same certificate.
        creds = grpc.ssl_channel_credentials((tmp_path / "cert.pem").read_bytes())
        with grpc.secure_channel(f"localhost:{g.port}", creds) as ch:
            from graft_client._gen.grpc.health.v1 import health_pb2, health_pb2_grpc
            assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=30).status == 1
    finally:
        assert g.stop() == 0


def test_the_readme_rest_example_runs_verbatim(graftd, tmp_path):
    """The README's curl example, taken from README.md as it stands, run by bash
    in a folder holding dog.jpg, against this graftd's REST port."""
    readme = (SOURCE / "README.md").read_text()
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "/infer --data-binary" in b]
    assert len(blocks) == 1, "README.md has no (or more than one) REST infer example"
    script = blocks[0].replace("localhost:8000", f"127.0.0.1:{graftd.http_port}")
    shutil.copy(IMAGES / "dog.jpg", tmp_path / "dog.jpg")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "GRAFT_TOKEN": graftd.token})
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    top = answer["outputs"][0]["data"]
    assert len(top) == 3 and top[0].split(":")[2].startswith("malamute"), answer
