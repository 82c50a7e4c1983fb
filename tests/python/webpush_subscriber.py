#!/usr/bin/env python3
"""A Web Push subscriber, independent of the hub's Rust code: makes the browser-side keys and
decrypts what a push service received with them, using http_ece (RFC 8188/8291).

  webpush_subscriber.py keygen            -> {"private": ..., "p256dh": ..., "auth": ...}
  webpush_subscriber.py decrypt < {"private": ..., "auth": ..., "body": <base64url>}
                                          -> the plaintext on stdout
"""
import base64
import json
import os
import sys

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def main():
    if sys.argv[1:] == ["keygen"]:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        private = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        print(json.dumps({"private": b64e(private), "p256dh": b64e(public), "auth": b64e(os.urandom(16))}))
    elif sys.argv[1:] == ["decrypt"]:
        req = json.load(sys.stdin)
        key = serialization.load_der_private_key(b64d(req["private"]), password=None)
        plain = http_ece.decrypt(
            b64d(req["body"]), private_key=key, auth_secret=b64d(req["auth"]), version="aes128gcm"
        )
        sys.stdout.write(plain.decode())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
