#!/usr/bin/env python3
"""An independent cosign simple-signing implementation for gantry-trust's interop tests.

Written from cosign's documented formats with Python's `cryptography`, sharing no code with
gantry:

  cosign_oracle.py make OUTDIR DOCKER_REFERENCE IMAGE_DIGEST
      Generates a P-256 key (cosign.pub as SPKI PEM; the private key as SEC1 and as PKCS#8),
      builds the simple-signing payload, signs it (ECDSA P-256, SHA-256, ASN.1 DER) and writes
      the signature image: payload.json, config.json, manifest.json.

  cosign_oracle.py verify PUBLIC_PEM MANIFEST PAYLOAD IMAGE_DIGEST DOCKER_REFERENCE
      Checks a signature image made elsewhere the way cosign does and prints "verified".
"""

import base64
import hashlib
import json
import os
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
TYPE = "cosign container image signature"


def payload(reference, digest):
    doc = {
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": TYPE,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make(outdir, reference, digest):
    key = ec.generate_private_key(ec.SECP256R1())
    write(outdir, "cosign.pub", key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write(outdir, "sec1.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    write(outdir, "pkcs8.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    body = payload(reference, digest)
    signature = key.sign(body, ec.ECDSA(hashes.SHA256()))
    config = json.dumps({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [sha256(body)]},
        "config": {},
    }, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": sha256(config),
        },
        "layers": [{
            "mediaType": SIMPLE_SIGNING,
            "size": len(body),
            "digest": sha256(body),
            "annotations": {SIGNATURE: base64.b64encode(signature).decode()},
        }],
    }, separators=(",", ":")).encode()
    write(outdir, "payload.json", body)
    write(outdir, "config.json", config)
    write(outdir, "manifest.json", manifest)


def verify(public_pem, manifest_path, payload_path, digest, reference):
    key = serialization.load_pem_public_key(read(public_pem))
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        fail("not a P-256 public key")
    manifest = json.loads(read(manifest_path))
    body = read(payload_path)
    if manifest.get("schemaVersion") != 2:
        fail("schemaVersion is not 2")
    layers = manifest.get("layers", [])
    if len(layers) != 1:
        fail(f"expected one signature layer, found {len(layers)}")
    layer = layers[0]
    if layer["mediaType"] != SIMPLE_SIGNING:
        fail("layer media type " + layer["mediaType"])
    if layer["digest"] != sha256(body) or layer["size"] != len(body):
        fail("payload does not match its layer")
    signature = base64.b64decode(layer["annotations"][SIGNATURE], validate=True)
    try:
        key.verify(signature, body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        fail("signature does not verify")
    doc = json.loads(body)
    if doc["critical"]["type"] != TYPE:
        fail("wrong type")
    if doc["critical"]["image"]["docker-manifest-digest"] != digest:
        fail("signed for another image")
    if body != payload(reference, digest):
        fail("payload bytes differ from cosign's layout: " + body.decode())
    print("verified")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(outdir, name, data):
    with open(os.path.join(outdir, name), "wb") as f:
        f.write(data)


def fail(message):
    print("oracle: " + message, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "make":
        make(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "verify":
        verify(*sys.argv[2:])
    else:
        fail(__doc__)
