"""The test gateway with the ways of other S3 stores, which Ceph's gateway does not have.

A proxy between a client and the real gateway (tests/s3server.py): every request goes on
to the gateway, which stores and serves the bytes; the proxy adds, when asked:

- ``opaque_etags``: ETags that are not the MD5 of the bytes (below);
- ``corrupt``: bodies changed on the way (below);
- ``region``: the region the store insists on. A request signed for another one is
  refused as AWS, MinIO with a region set and Garage refuse it (400
  AuthorizationHeaderMalformed, "the region 'X' is wrong; expecting 'Y'"; AWS also names
  it in a ``<Region>`` element and an ``x-amz-bucket-region`` header, with
  ``region_element``); Ceph's gateway accepts any region;
- ``full``: every PUT and part refused as MinIO refuses them past its free-space
  threshold (507 XMinioStorageFull); reads still answer;
- ``refuses_checksum_header``: a PUT or part carrying ``x-amz-checksum-*`` is refused as
  Backblaze B2 refuses it (400 InvalidArgument, "Unsupported header
  'x-amz-checksum-sha256' received for this API call.").

AWS S3 with SSE-KMS or SSE-C, MinIO with encryption at rest, and other S3 servers give
ETags that are not the MD5 of the object's bytes (AWS documents it; MinIO issue 6580).
Ceph's gateway always gives the MD5, so no test against it alone sees such a store. With
``opaque_etags``, every ETag that comes back (the header, and ``<ETag>`` in XML
answers: ListParts, ListObjects, CompleteMultipartUpload) is replaced by an opaque value
of the same form (32 hex digits, the ``-N`` of a multipart object kept). A
CompleteMultipartUpload names the parts by the opaque ETags the client was given; the
proxy puts the gateway's back, so the request is signed again (with the session's keys).

``corrupt``: key fragments whose PUT bodies the proxy changes on the way (one byte
flipped, Content-MD5 and the SHA-256 checksum header dropped, signed again): a store that
keeps other bytes than it was sent and says nothing — with opaque ETags, only a read-back
can see it.

The bytes are stored and served by the real gateway; the ETags, the corrupted bodies and
the refusals above are the proxy's.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

# Headers the client signed that the proxy signs again, and those it never forwards.
_SIGNING = {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
_HOP = {"host", "expect", "connection", "keep-alive", "transfer-encoding", "content-length"}
# What would let the gateway refuse a body the proxy changed.
_CHECKED = {"content-md5", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm"}
_XML_ETAG = re.compile(rb"<ETag>(&quot;|\")?([0-9a-fA-F]{32})(-\d+)?(&quot;|\")?</ETag>")


class QuirkyStore:
    """Start with :meth:`start`, stop with :meth:`stop`; ``endpoint`` is the URL to use
    instead of the gateway's. ``opaque_seen`` counts the ETags it replaced, ``refused``
    the requests it refused."""

    def __init__(self, upstream: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.upstream = upstream.rstrip("/")
        self.access_key, self.secret_key = access_key, secret_key
        self.gateway_region = region  # what the gateway's requests are signed for
        self.real_of: dict[str, str] = {}  # opaque ETag -> the gateway's
        self.opaque_etags = False
        self.corrupt: set[str] = set()
        self.region: str | None = None
        self.region_element = False  # AWS names the region in <Region>, too
        self.refuses_checksum_header = False
        self.full = False
        self.refused: list[str] = []  # "METHOD path: code"
        self.corrupted: list[str] = []  # keys whose PUT bodies were changed
        self.opaque_seen = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    def url_for(self, store_url: str) -> str:
        """A store URL of the gateway's (tests/s3server.py ``CephS3.url``), through here."""
        return store_url.replace(self.upstream, self.endpoint)

    def opaque(self, real: str) -> str:
        """The ETag this store gives for the gateway's ``real`` one (unquoted)."""
        digest, _, count = real.partition("-")
        fake = hashlib.sha256(b"kms:" + digest.encode()).hexdigest()[:32]
        fake = f"{fake}-{count}" if count else fake
        with self._lock:
            self.real_of[fake] = real
            self.opaque_seen += 1
        return fake

    def _unopaque(self, body: bytes) -> bytes:
        def back(m: re.Match[bytes]) -> bytes:
            tag = m.group(2).decode() + (m.group(3) or b"").decode()
            real = self.real_of.get(tag, tag)
            return f"<ETag>&quot;{real}&quot;</ETag>".encode()

        return _XML_ETAG.sub(back, body)

    def _opaque_xml(self, body: bytes) -> bytes:
        def swap(m: re.Match[bytes]) -> bytes:
            tag = m.group(2).decode() + (m.group(3) or b"").decode()
            return f"<ETag>&quot;{self.opaque(tag)}&quot;</ETag>".encode()

        return _XML_ETAG.sub(swap, body)

    def sign(self, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method=method, url=self.upstream + path, data=body, headers=headers)
        S3SigV4Auth(
            Credentials(self.access_key, self.secret_key), "s3", self.gateway_region
        ).add_auth(request)
        return dict(request.headers.items())

    def _refusal(self, method: str, headers: Any) -> tuple[str, str] | None:
        """(code, message) when this store refuses the request, as the stores named in
        the module docstring do."""
        if self.region is not None:
            scope = str(headers.get("Authorization", "")).partition("Credential=")[2]
            signed_for = scope.split("/")[2] if scope.count("/") >= 4 else ""
            if signed_for != self.region:
                return (
                    "AuthorizationHeaderMalformed",
                    f"The authorization header is malformed; the region '{signed_for}' is"
                    f" wrong; expecting '{self.region}'",
                )
        if self.full and method == "PUT":
            return (
                "XMinioStorageFull",
                "Storage backend has reached its minimum free drive threshold. Please delete"
                " a few objects to proceed.",
            )
        if self.refuses_checksum_header and method == "PUT":
            for name in headers.keys():  # noqa: SIM118 (an email.message.Message)
                if name.lower().startswith("x-amz-checksum-"):
                    return (
                        "InvalidArgument",
                        f"Unsupported header '{name.lower()}' received for this API call.",
                    )
        return None

    def _refuse(self, handler: BaseHTTPRequestHandler, code: str, message: str) -> None:
        self.refused.append(f"{handler.command} {handler.path}: {code}")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            + (f"<Region>{self.region}</Region>" if self.region_element else "")
            + "<RequestId>quirky</RequestId></Error>"
        ).encode()
        handler.send_response(507 if code == "XMinioStorageFull" else 400)
        handler.send_header("Content-Type", "application/xml")
        if self.region_element:  # AWS: on every answer, a HEAD's (no body) too
            handler.send_header("x-amz-bucket-region", str(self.region))
        if handler.command == "HEAD":  # as S3: a HEAD's refusal has no body
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        refusal = self._refusal(method, handler.headers)
        if refusal is not None:
            self._refuse(handler, *refusal)
            return
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() not in _SIGNING and k.lower() not in _HOP
        }
        key = unquote(urlsplit(path).path)
        if method == "POST" and "uploadId=" in path and b"<ETag>" in body:
            body = self._unopaque(body)
        if method == "PUT" and body and any(frag in key for frag in self.corrupt):
            body = bytes([body[0] ^ 0xFF]) + body[1:]
            headers = {k: v for k, v in headers.items() if k.lower() not in _CHECKED}
            self.corrupted.append(key)
        signed = self.sign(method, path, headers, body)
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=signed)
            answer = conn.getresponse()
            data = answer.read()
            out_headers = answer.getheaders()
            status, reason = answer.status, answer.reason
        finally:
            conn.close()
        if self.opaque_etags and data and (b"<ETag>" in data):
            data = self._opaque_xml(data)
        handler.send_response(status, reason)
        for name, value in out_headers:
            low = name.lower()
            if low in ("transfer-encoding", "connection", "keep-alive"):
                continue
            if low == "content-length" and method != "HEAD":
                continue
            if low == "etag" and self.opaque_etags:
                value = f'"{self.opaque(value.strip(chr(34)))}"'
            handler.send_header(name, value)
        if method != "HEAD":
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD" and data:
            handler.wfile.write(data)

    def start(self) -> QuirkyStore:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()  # answers go out at once, as the gateway's (tcp_nodelay=1)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _any(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
