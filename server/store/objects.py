"""The archive's files in an S3 object store, and the one way every reader gets at a stored
part whichever store holds it.

Writing (:class:`ObjectStore`): chunks arriving over MQTT (or from a USB bundle) are staged
on local disk exactly as the local store receives them (:class:`server.store.files.Store`:
the partial file, written at offsets). When a part is complete, the staged file is re-hashed
(SHA-256 against the manifest), then uploaded, and the upload is verified before
:meth:`ObjectStore.place` returns True — only then does the ingest claim the part, commit it
and send the receipt:

- a single PUT carries ``Content-MD5`` (the server refuses bytes that do not match it:
  ``BadDigest``) and ``x-amz-checksum-sha256`` (checked by servers that support it; Ceph 16
  ignores it), and the SHA-256 as object metadata;
- a capture larger than ``part_bytes`` goes up as a multipart upload, each part with its
  ``Content-MD5``. A restarted ingest finds the upload the previous attempt left
  (``ListMultipartUploads``), keeps the parts whose ETag is the MD5 of the bytes staged
  here and sends the rest (an upload whose parts have other sizes, left by an attempt with
  another ``part_bytes``, is aborted and started afresh): it completes the upload, it
  never commits an object it has not verified;
- then a HEAD must show the size, the ETag (the MD5 of the bytes, or for a multipart object
  the MD5 of the parts' MD5s and their count) and the SHA-256 metadata this side computed.
  A store whose ETags are not MD5s (AWS with SSE-KMS or SSE-C, MinIO encrypting at rest)
  has the object read back and hashed instead (:func:`_holds_bytes`).

Object keys are ``<prefix>/<device id>/<batch id>/<page no>-<page id>.<part>.<ext>`` — the
local layout, so keys of different stations never collide. The catalogue records the part's
location ``s3://bucket/key``; a part committed on the local store keeps its absolute path.

Reading (:func:`open_read`, :func:`read_bytes`, :func:`stream`, :func:`exists`,
:func:`size`, :func:`sha256`, :func:`local_file`): a location is an absolute path or an
``s3://`` URL; the S3 connection of the bucket is the one :func:`open_store` (or
:func:`register`) set up in this process.

Owns: the S3 client (nothing else imports boto3), object keys, uploads and their
verification, the read interface of both stores, ``store migrate``. Must not: commit or
receipt anything (the ingest does, after :meth:`ObjectStore.place` said True), trust a
checksum the object store reports when a reader asks for ``sha256`` (it re-reads), or put
keys in a URL or a log line.

Credentials never travel in the URL: ``SOHOA_S3_ACCESS_KEY_ID`` / ``SOHOA_S3_SECRET_ACCESS_KEY``
in the environment, else the systemd credentials ``s3-access-key-id`` / ``s3-secret-access-key``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from server.config import ServerSettings
from server.store.db import Database
from server.store.files import HASH_BLOCK, Pending, Store, StoreError

DEFAULT_PART_BYTES = 8 * 1024 * 1024
MIN_PART_BYTES = 64 * 1024  # AWS S3 and a default Ceph want 5 MiB; a test gateway allows less
SCHEME = "s3"
log = logging.getLogger(__name__)


# Why the object store refuses, as an operator must hear it (Vietnamese, English): the cause
# decides the one line logged and the one alert raised while it lasts (server.ingest.mqtt),
# and what ``sohoa-server doctor`` says. Codes as RADOS Gateway (Ceph 16) and AWS answer them;
# each was seen on the test gateway (tests/test_objstore.py, the failure tests).
CAUSES: dict[str, tuple[str, str]] = {
    "quota": (
        "Kho đối tượng S3 đã vượt hạn mức (quota) của bucket: không nhận thêm tệp. Tăng hạn"
        " mức (radosgw-admin quota set --quota-scope=bucket …) hoặc thêm dung lượng; các trạm"
        " giữ trang và tự gửi lại.",
        "The S3 object store refuses new objects: the bucket is over its quota"
        " (QuotaExceeded). Raise the quota (radosgw-admin quota set --quota-scope=bucket …) or"
        " add capacity; stations keep their pages and send again by themselves.",
    ),
    "full": (
        "Kho đối tượng S3 đã đầy (507 / XMinioStorageFull): không nhận thêm tệp. Thêm dung"
        " lượng cho kho (ổ đĩa, nút) hoặc giải phóng chỗ; các trạm giữ trang và tự gửi lại.",
        "The S3 object store is full (507 / XMinioStorageFull): it takes no more files. Add"
        " capacity to the store (disks, nodes) or free space on it; stations keep their pages"
        " and send again by themselves.",
    ),
    "keys": (
        "Khóa S3 không đúng hoặc đã bị thu hồi (InvalidAccessKeyId / SignatureDoesNotMatch)."
        " Ghi khóa hiện hành vào /etc/sohoa/credentials/s3-access-key-id và"
        " s3-secret-access-key; máy chủ tự đọc lại, không cần khởi động lại.",
        "The S3 keys are wrong or revoked (InvalidAccessKeyId / SignatureDoesNotMatch). Put"
        " the current keys in /etc/sohoa/credentials/s3-access-key-id and"
        " s3-secret-access-key; the server reads them again by itself, no restart needed.",
    ),
    "denied": (
        "Kho đối tượng S3 từ chối người dùng này (AccessDenied / UserSuspended): kiểm tra quyền"
        " của người dùng S3 trên bucket.",
        "The S3 object store refuses this user (AccessDenied / UserSuspended): check the S3"
        " user's rights on the bucket.",
    ),
    "no_bucket": (
        "Bucket của kho đối tượng S3 không tồn tại (NoSuchBucket): kiểm tra store_url, hoặc"
        " tạo lại bucket rồi khôi phục các tệp (sohoa-server store restore, runbook R7).",
        "The object store's bucket does not exist (NoSuchBucket): check store_url, or make"
        " the bucket again and bring the files back (sohoa-server store restore, runbook R7).",
    ),
    "clock": (
        "Đồng hồ của máy chủ lưu trữ lệch quá xa giờ của kho đối tượng S3"
        " (RequestTimeTooSkewed): kho từ chối mọi yêu cầu. Bật đồng bộ giờ (chrony hoặc"
        " systemd-timesyncd) trên máy chủ và trên máy S3, kiểm tra bằng timedatectl.",
        "The archive server's clock is too far from the S3 object store's"
        " (RequestTimeTooSkewed): the store refuses every request. Turn on time"
        " synchronisation (chrony or systemd-timesyncd) on the server and on the S3 host;"
        " check with timedatectl.",
    ),
    "region": (
        "Kho đối tượng S3 dùng vùng (region) khác với vùng ghi trong store_url"
        " (AuthorizationHeaderMalformed: thông báo của kho nêu vùng đúng). Ghi vùng đó vào"
        " store_url (…&region=TÊN_VÙNG) rồi khởi động lại máy chủ. Không gửi tệp nào.",
        "The S3 object store is in another region than store_url says"
        " (AuthorizationHeaderMalformed: the store's message names the right one). Put that"
        " region in store_url (…&region=NAME) and restart the server. Nothing was sent.",
    ),
    "part_size": (
        "Kho đối tượng S3 từ chối tệp tải lên nhiều phần vì mỗi phần quá nhỏ (EntityTooSmall):"
        " tăng part_bytes trong store_url (AWS và Ceph mặc định cần ít nhất 5 MiB, ví dụ"
        " …&part_bytes=8388608) rồi khởi động lại máy chủ. Các trạm giữ trang và tự gửi lại.",
        "The S3 object store refuses multipart uploads: their parts are too small"
        " (EntityTooSmall). Raise part_bytes in store_url (AWS and a default Ceph want at least"
        " 5 MiB: …&part_bytes=8388608) and restart the server; stations keep their pages and"
        " send again by themselves.",
    ),
    "tls": (
        "Không tin được chứng chỉ TLS của kho đối tượng S3 (CA cấp chứng chỉ không có trong"
        " danh sách tin cậy của máy chủ, hoặc chứng chỉ hết hạn / sai tên máy). Đặt tệp CA"
        " vào /usr/local/share/ca-certificates/ rồi chạy update-ca-certificates, hoặc ghi"
        " đường dẫn tệp CA vào store_url (…&ca=/etc/sohoa/tls/s3-ca.pem). Không gửi tệp nào.",
        "The S3 object store's TLS certificate is not trusted (its CA is not among this"
        " server's trusted ones, or the certificate expired or names another host). Put the"
        " CA file in /usr/local/share/ca-certificates/ and run update-ca-certificates, or name"
        " it in store_url (…&ca=/etc/sohoa/tls/s3-ca.pem). Nothing was sent.",
    ),
    "unreachable": (
        "Không kết nối được kho đối tượng S3 (mạng, hoặc máy chủ S3 ngừng/quá tải): kiểm tra"
        " máy chủ S3 và đường mạng tới nó.",
        "The S3 object store cannot be reached (network, or the S3 server down/overloaded):"
        " check the S3 server and the network to it.",
    ),
    "other": (
        "Kho đối tượng S3 không nhận tệp (xem nhật ký máy chủ).",
        "The S3 object store does not take the files (see the server's log).",
    ),
}
_CODES = {
    "QuotaExceeded": "quota",
    "XMinioStorageFull": "full",  # MinIO past its free-space threshold (507)
    "InsufficientStorage": "full",
    "InsufficientCapacity": "full",
    "InvalidAccessKeyId": "keys",
    "SignatureDoesNotMatch": "keys",
    "AccessDenied": "denied",
    "UserSuspended": "denied",
    "AccountProblem": "denied",
    "AllAccessDisabled": "denied",
    "NoSuchBucket": "no_bucket",
    "RequestTimeTooSkewed": "clock",
    # AWS, MinIO with a region set, Garage ("garage"): a request signed for another region.
    "AuthorizationHeaderMalformed": "region",
    "IllegalLocationConstraintException": "region",
    "PermanentRedirect": "region",
    "EntityTooSmall": "part_size",  # part_bytes= below the store's minimum part size
    "ServiceUnavailable": "unreachable",
    "SlowDown": "unreachable",
    "InternalError": "unreachable",
}


class ObjectStoreError(StoreError):
    """The object store could not take or give a part (unreachable, refused, mismatched).
    ``cause``: a key of :data:`CAUSES` (what an operator must do)."""

    def __init__(self, message: str, cause: str = "other") -> None:
        super().__init__(message)
        self.cause = cause

    @property
    def vi(self) -> str:
        return CAUSES[self.cause][0]

    @property
    def en(self) -> str:
        return CAUSES[self.cause][1]


def failure(exc: Exception, what: str) -> ObjectStoreError:
    """The :class:`ObjectStoreError` for a botocore error about ``what`` (a key, a bucket),
    with its cause."""
    from botocore.exceptions import ClientError, SSLError

    cause: str | None
    if isinstance(exc, SSLError):  # before the request: the certificate is not trusted
        cause = "tls"
    elif isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        cause = _CODES.get(code)
        if cause is None and code in ("404", "NotFound") and "/" not in what:
            cause = "no_bucket"  # HEAD on a bucket has no body, only its status
        if cause is None:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            cause = (
                "full"
                if status == 507  # Insufficient Storage, whatever the code
                else "unreachable"
                if status >= 500
                else "denied"
                if status == 403
                else "other"
            )
    else:  # BotoCoreError: no answer (connection refused, timeout, DNS)
        cause = "unreachable"
    return ObjectStoreError(f"object store: {what}: {exc}", cause or "other")


class DamagedSource(ObjectStoreError):
    """The local file to upload is missing or does not hash as recorded: never uploaded."""


@dataclass(frozen=True)
class Target:
    """Where the objects go:
    ``s3://bucket/prefix?endpoint=URL&region=NAME&part_bytes=N&timeout=SECONDS&ca=FILE``.
    ``timeout``: how long an upload waits for the store's answer before it tries again
    (3 tries; a reader waits at most :data:`READ_TIMEOUT_S`, twice). ``ca``: the CA
    certificate(s) an ``https://`` endpoint's certificate is checked with (PEM; default:
    the system's trusted CAs, :data:`SYSTEM_CAS`)."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    part_bytes: int
    timeout_s: float = 60.0
    ca: str | None = None

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme != SCHEME or not parts.hostname:
            raise ValueError("use s3://bucket/prefix?endpoint=https://host:port")
        if parts.username or parts.password:
            raise ValueError(
                "no credentials in the store URL: use the s3-access-key-id and"
                " s3-secret-access-key credentials (or SOHOA_S3_* in the environment)"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region", "part_bytes", "timeout", "ca"}
        if unknown:
            raise ValueError(f"unknown store URL option(s): {', '.join(sorted(unknown))}")
        endpoint = query.get("endpoint")
        if endpoint is not None and urlsplit(endpoint).scheme not in ("http", "https"):
            raise ValueError("endpoint= must be an http:// or https:// URL")
        try:
            part_bytes = int(query.get("part_bytes", DEFAULT_PART_BYTES))
        except ValueError:
            raise ValueError("part_bytes= must be a number of bytes") from None
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"part_bytes= must be at least {MIN_PART_BYTES}")
        try:
            timeout_s = float(query.get("timeout", 60))
        except ValueError:
            raise ValueError("timeout= must be a number of seconds") from None
        if not 1 <= timeout_s <= 3600:
            raise ValueError("timeout= must be between 1 and 3600 seconds")
        ca = query.get("ca")
        if ca is not None and not ca.startswith("/"):
            raise ValueError("ca= must be the absolute path of a PEM file")
        prefix = parts.path.strip("/")
        return cls(
            bucket=parts.hostname,
            prefix=f"{prefix}/" if prefix else "",
            endpoint=endpoint,
            region=query.get("region", "us-east-1"),
            part_bytes=part_bytes,
            timeout_s=timeout_s,
            ca=ca,
        )

    def location(self, key: str) -> str:
        return f"{SCHEME}://{self.bucket}/{key}"


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never in a log or a traceback
        return "Credentials(…)"


def make_client(target: Target, credentials: Credentials, *, reads: bool = False) -> Any:
    """A boto3 S3 client for ``target``: path-style addressing (gateways on an IP), short
    timeouts and few retries (an unreachable store must fail the group quickly: the device
    is told to retry later), checksums only where this module asks for them. ``reads``: the
    client of this process's readers (:func:`register`), which waits
    :data:`READ_TIMEOUT_S` for an answer instead of an upload's 60 s, with a connection
    for each of :data:`READ_SLOTS`."""
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": "path"},
        connect_timeout=5,
        read_timeout=min(READ_TIMEOUT_S, target.timeout_s) if reads else target.timeout_s,
        max_pool_connections=READ_SLOTS + 2 if reads else 10,
        # botocore's max_attempts counts retries: 3 tries in all for an upload; a reader
        # tries twice (a stale keep-alive connection after a gateway's restart fails once).
        retries={"total_max_attempts": 2, "mode": "standard"}
        if reads
        else {"max_attempts": 2, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        verify=_trusted(target),
        endpoint_url=target.endpoint,
        region_name=target.region,
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        config=config,
    )


# Debian's trusted CAs, with what an administrator added (update-ca-certificates). botocore
# would otherwise check certificates against its own bundle only (certifi's), where a
# province's own CA never is.
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def _trusted(target: Target) -> str | bool:
    """What an https endpoint's certificate is checked with: ``ca=``, else the system's."""
    if target.ca is not None:
        if not os.path.isfile(target.ca):
            raise ObjectStoreError(f"store URL ca={target.ca}: no such file", "tls")
        return target.ca
    return SYSTEM_CAS if os.path.isfile(SYSTEM_CAS) else True


# -- the registry of this process's S3 connections (for readers) ----------------------------------

_lock = threading.Lock()
_clients: dict[str, Any] = {}  # bucket -> client
# bucket -> how to read its keys again when the store refuses them (True: a new client now)
_renewers: dict[str, Callable[[], bool]] = {}


def register(bucket: str, client: Any, renew: Callable[[], bool] | None = None) -> None:
    with _lock:
        _clients[bucket] = client
        if renew is not None:
            _renewers[bucket] = renew


def _renewed(bucket: str, exc: Exception) -> bool:
    """Refused for its keys (or with a bare 403: a HEAD carries no code): read the keys
    again; True when they changed and the bucket's client now uses them (ask once more)."""
    if failure(exc, bucket).cause not in ("keys", "denied"):
        return False
    with _lock:
        renew = _renewers.get(bucket)
    return renew is not None and renew()


def _renewer(
    target: Target, credentials: Credentials, read: Callable[[], Credentials]
) -> Callable[[], bool]:
    """A ``renew`` for :func:`register`: ``read`` the keys again and, if they changed,
    register a client that uses them."""
    current = [credentials]

    def renew() -> bool:
        try:
            fresh = read()
        except ObjectStoreError:
            return False
        if fresh == current[0]:
            return False
        current[0] = fresh
        log.warning("object store %s: new keys read; using them", target.bucket)
        register(target.bucket, make_client(target, fresh, reads=True))
        return True

    return renew


# -- an object store that stops answering --------------------------------------------------------
#
# A gateway that hangs (a stuck radosgw, a link that drops packets) answers nothing and
# refuses nothing: each request waits for its timeout. The staff app reads on a pool of 40
# threads shared by every page, so 60 reads of a stopped gateway's images held them all: for
# ~50 s nothing answered, not even the login page, and each read got its 503 after 60-180 s.
# The ingest thread, which also handles every station's status, waited 180 s on each upload
# and then again on each message of the group handled one by one: over 5 minutes for a batch
# of 3 pages (tests/test_objstore.py, the two hung-gateway tests, measured so). Now:
#
# - at most READ_SLOTS reads wait on the store at once (the rest wait READ_SLOT_WAIT_S for a
#   slot, then fail), and a read waits READ_TIMEOUT_S for an answer (twice);
# - once a read has had no answer, the bucket's reads are *silent*: every read fails at once
#   (cause "unreachable": staff get a 503 with Retry-After) while one thread asks the store
#   (a listing) every PROBE_EVERY_S; its first answer of any kind ends it. Uploads fall silent
#   the same way, on their own (stations are told retry_later; the probe is a small write):
#   a full Ceph cluster blocks writes and still serves reads. Logged once when a silence
#   starts, once when it ends.
#
# A refusal (connection refused, an error code) is fast, and silences nothing.

READ_TIMEOUT_S = 10.0
READ_SLOTS = 8
READ_SLOT_WAIT_S = 5.0
PROBE_EVERY_S = 10.0
RETRY_AFTER_S = 15  # what a reader that got a 503 is told to wait

_read_slots = threading.BoundedSemaphore(READ_SLOTS)
# (bucket, "read" or "write") -> when it stopped answering (time.time()). Reads and writes
# fall silent apart: a Ceph cluster that is full (or has its writes paused) blocks every
# write while it still serves every read, and staff can then go on reading.
_silent_since: dict[tuple[str, str], float] = {}


def _unanswered(exc: BaseException) -> bool:
    """A request that got no answer in time (not a refusal)."""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    return isinstance(exc, ConnectTimeoutError | ReadTimeoutError)


def _silent(bucket: str, what: str, kind: str = "read") -> None:
    """Fail at once while ``bucket``'s store gives no answer to this ``kind`` of request."""
    with _lock:
        since = _silent_since.get((bucket, kind))
    if since is not None:
        raise ObjectStoreError(
            f"object store: {what}: it has not answered a {kind} since"
            f" {time.strftime('%H:%M:%S', time.localtime(since))}; asked again every"
            f" {PROBE_EVERY_S:.0f} s",
            "unreachable",
        )


def _heard_nothing(
    bucket: str, exc: BaseException, kind: str = "read", ask: Callable[[], None] | None = None
) -> None:
    """Make ``bucket``'s ``kind`` of request silent if ``exc`` is a request that got no
    answer, and start the thread that asks it until it answers: ``ask`` (a request of that
    kind; raises what botocore raises), by default a one-key listing."""
    if not _unanswered(exc):
        return
    with _lock:
        if (bucket, kind) in _silent_since:
            return
        _silent_since[bucket, kind] = time.time()
    log.warning(
        "object store %s does not answer %ss (%s): they fail at once until it answers again;"
        " asking it every %.0f s",
        bucket,
        kind,
        exc,
        PROBE_EVERY_S,
    )
    threading.Thread(
        target=_ask_until_heard,
        args=(bucket, kind, ask or (lambda: _list_one(bucket))),
        name="sohoa-s3-probe",
        daemon=True,
    ).start()


def _list_one(bucket: str) -> None:
    with _lock:
        client = _clients.get(bucket)
    if client is not None:
        client.list_objects_v2(Bucket=bucket, MaxKeys=1)


def _ask_until_heard(bucket: str, kind: str, ask: Callable[[], None]) -> None:
    """``ask`` every :data:`PROBE_EVERY_S` until the store answers anything at all (a
    refusal is an answer: its cause is for the next request to meet), then end the
    silence."""
    from botocore.exceptions import BotoCoreError, ClientError

    while True:
        time.sleep(PROBE_EVERY_S)
        try:
            ask()
        except ClientError:
            pass
        except (BotoCoreError, ObjectStoreError):
            continue
        with _lock:
            since = _silent_since.pop((bucket, kind), time.time())
        log.warning(
            "object store %s answers %ss again (silent for %.0f s)",
            bucket,
            kind,
            time.time() - since,
        )
        return


@contextlib.contextmanager
def _asking(bucket: str, what: str) -> Iterator[None]:
    """One request of a reader to ``bucket``: not while it is silent, in one of
    :data:`READ_SLOTS`; a request that gets no answer makes it silent."""
    _silent(bucket, what)
    if not _read_slots.acquire(timeout=READ_SLOT_WAIT_S):
        raise ObjectStoreError(
            f"object store: {what}: {READ_SLOTS} reads already wait on it", "unreachable"
        )
    try:
        _silent(bucket, what)  # fell silent while this one waited for its slot
        yield
    except Exception as exc:
        _heard_nothing(bucket, exc)
        raise
    finally:
        _read_slots.release()


def _client_for(bucket: str) -> Any:
    with _lock:
        client = _clients.get(bucket)
    if client is None:
        raise ObjectStoreError(
            f"a part is in the object store bucket {bucket!r}, but this process has no"
            " connection to it (SOHOA_STORE_URL)"
        )
    return client


Location = str | os.PathLike[str]  # what the catalogue records (str) or a local Path


def split_location(location: Location) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://`` location; None for a local path."""
    location = os.fspath(location)
    if not location.startswith(f"{SCHEME}://"):
        return None
    rest = location[len(SCHEME) + 3 :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ObjectStoreError(f"not an object location: {location!r}")
    return bucket, key


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 (integrity, not security)


def _etag(value: str) -> str:
    return value.strip('"').lower()


class ObjectStore(Store):
    """The S3 store: local staging (``root``) for arriving chunks, objects for parts."""

    def __init__(
        self,
        staging: Path,
        target: Target,
        client: Any,
        *,
        reader: bool = True,
        readers: Any | None = None,
    ) -> None:
        """``reader``: register a client for this process's readers of ``s3://bucket/…``
        locations (not for a backup store: another site's bucket may bear the same name):
        ``readers`` (:func:`make_client` with ``reads``), else ``client``."""
        super().__init__(staging)
        self.target = target
        self.client = client
        self.reader = reader
        # Keys changed under the server (rotated, revoked): where to read them again, and
        # the ones in use. Set by open_store; None: never re-read.
        self.rekey: Callable[[], Credentials] | None = None
        self.credentials: Credentials | None = None
        if reader:
            register(target.bucket, readers or client, self.new_keys)

    def key(self, final: Path) -> str:
        try:
            rel = final.relative_to(self.root)
        except ValueError:
            raise StoreError(f"{final} is outside the store") from None
        return self.target.prefix + rel.as_posix()

    def location(self, final: Path) -> str:
        return self.target.location(self.key(final))

    def place(self, final: Path, sha256: str, size: int, pending: Pending) -> bool:
        """Verify the staged part (as the local store does), upload it and verify the
        object; True only when the object store holds exactly these bytes. A failed
        upload raises :class:`ObjectStoreError` (nothing is committed; the device is told
        to send again later)."""
        if not super().place(final, sha256, size, pending):
            return False
        self.upload(final, self.key(final), sha256, size)
        pending.uploaded.append(final)
        return True

    def committed(self, pending: Pending) -> None:
        """After the catalogue's COMMIT: the staged copies of uploaded parts go."""
        for final in pending.uploaded:
            final.unlink(missing_ok=True)
        pending.uploaded.clear()

    # -- uploading -----------------------------------------------------------------------------

    def upload(
        self, source: Path, key: str, sha256: str, size: int, *, replace: bool = False
    ) -> None:
        """Put ``source`` at ``key`` and verify the object. The file is read and hashed
        first (SHA-256 and size as recorded, and the ETag its bytes must give); an object
        already at ``key`` with exactly that is kept (a retry, a resumed migration), any
        other is replaced — with ``replace``, any object is (a repair: a damaged object's
        HEAD looks right). Refused for its keys, it reads the keys again once and, if they
        changed, tries again with them. Raises :class:`ObjectStoreError`."""
        try:
            self._upload(source, key, sha256, size, replace)
        except ObjectStoreError as exc:
            if exc.cause != "keys" or not self.new_keys():
                raise
            self._upload(source, key, sha256, size, replace)

    def new_keys(self) -> bool:
        """Read the keys again (:attr:`rekey`); True when they changed and the client now
        uses them."""
        if self.rekey is None:
            return False
        try:
            credentials = self.rekey()
        except ObjectStoreError:
            return False
        if credentials == self.credentials:
            return False
        log.warning("object store %s: new keys read; using them", self.target.bucket)
        self.credentials = credentials
        self.client = make_client(self.target, credentials)
        if self.reader:
            register(self.target.bucket, make_client(self.target, credentials, reads=True))
        return True

    def _upload(self, source: Path, key: str, sha256: str, size: int, replace: bool) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self.reader:  # the archive's own store (a backup store's name may be the same)
            _silent(self.target.bucket, key, "write")
        try:
            etag = self.etag_of(source, sha256, size)
            if not replace and self._verified(key, sha256, size, etag):
                return
            if size > self.target.part_bytes:
                self._multipart(source, key, sha256)
            else:
                _put(self.client, self.target.bucket, key, source.read_bytes(), sha256)
            if not self._verified(key, sha256, size, etag):
                self._abort_uploads(key)  # the next attempt starts afresh
                raise ObjectStoreError(f"{key}: the stored object does not verify")
        except (BotoCoreError, ClientError) as exc:
            if self.reader:
                _heard_nothing(self.target.bucket, exc, "write", self._write_probe)
            raise self._failure(exc, key) from exc

    def _write_probe(self) -> None:
        """A small object put and deleted (doctor's probe): whether the store takes writes."""
        key = self.target.prefix + PROBE_KEY
        data = b"sohoa: does the store take writes again?"
        self.client.put_object(
            Bucket=self.target.bucket, Key=key, Body=data, ContentMD5=_md5_b64(data)
        )
        self.client.delete_object(Bucket=self.target.bucket, Key=key)

    def _failure(self, exc: Exception, key: str) -> ObjectStoreError:
        """:func:`failure`, but a refused HEAD (a status without a body, so without its
        code: wrong keys and a denied user look alike) is asked again as a listing, whose
        refusal names its cause."""
        from botocore.exceptions import BotoCoreError, ClientError

        found = failure(exc, key)
        if found.cause not in ("denied", "other"):
            return found
        try:
            self.client.list_objects_v2(Bucket=self.target.bucket, Prefix=key, MaxKeys=1)
        except (BotoCoreError, ClientError) as again:
            return ObjectStoreError(f"object store: {key}: {again}", failure(again, key).cause)
        return found

    def etag_of(self, source: Path, sha256: str, size: int) -> str:
        """The ETag an object of ``source``'s bytes has here (the MD5, or for a multipart
        upload the MD5 of the parts' MD5s and their count), after checking that the bytes
        hash to ``sha256`` and ``size``."""
        whole = hashlib.sha256()
        md5s: list[bytes] = []
        total = 0
        try:
            with source.open("rb") as f:
                while block := f.read(self.target.part_bytes):
                    whole.update(block)
                    md5s.append(hashlib.md5(block).digest())  # noqa: S324 (S3 ETags are MD5s)
                    total += len(block)
        except OSError as exc:
            raise DamagedSource(f"{source}: {exc.strerror or exc}") from exc
        if (whole.hexdigest(), total) != (sha256, size):
            raise DamagedSource(f"{source} does not hash to its recorded sha256")
        if size <= self.target.part_bytes:
            return md5s[0].hex() if md5s else hashlib.md5(b"").hexdigest()  # noqa: S324
        return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"  # noqa: S324

    def holds(self, key: str, sha256: str, size: int) -> bool:
        """Whether an object at ``key`` has ``size`` bytes and the SHA-256 label an upload
        of these bytes gave it (a HEAD: the bytes are not re-read; the fixity check does)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._verified(key, sha256, size, None)
        except (BotoCoreError, ClientError) as exc:
            raise failure(exc, key) from exc

    def check(self, *, write: bool = False) -> str:
        """That the store answers a listing with these keys and (``write``) takes a small
        object, put then deleted; its URL without keys. Raises :class:`ObjectStoreError`
        with the cause."""
        return _check(self.client, self.target, write)

    def sizes(self, under: str) -> dict[str, int]:
        """Every object whose key starts with ``under``: key -> size (listed 1,000 at a
        time; keep ``under`` narrow — a station's folder — for the dict to stay small)."""
        from botocore.exceptions import BotoCoreError, ClientError

        found: dict[str, int] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=under
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found[item["Key"]] = int(item["Size"])
        except (BotoCoreError, ClientError) as exc:
            raise failure(exc, self.target.bucket) from exc
        return found

    def download(self, key: str, dest: Path) -> tuple[str, int]:
        """Write the object at ``key`` into ``dest`` (replaced); its bytes' SHA-256 and size.
        FileNotFoundError when there is no such object; :class:`ObjectStoreError` when the
        store does not answer."""
        from botocore.exceptions import BotoCoreError, ClientError

        digest, total = hashlib.sha256(), 0
        try:
            body = self.client.get_object(Bucket=self.target.bucket, Key=key)["Body"]
            with dest.open("wb") as out:
                while block := body.read(HASH_BLOCK):
                    digest.update(block)
                    out.write(block)
                    total += len(block)
            body.close()
        except (BotoCoreError, ClientError) as exc:
            if _missing(exc):
                raise FileNotFoundError(f"{self.target.bucket}/{key}") from exc
            raise failure(exc, key) from exc
        return digest.hexdigest(), total

    def _verified(self, key: str, sha256: str, size: int, etag: str | None) -> bool:
        """Whether the object at ``key`` has ``size`` bytes and the SHA-256 metadata, and
        (``etag`` given) holds these bytes: its ETag is ``etag``, or else its bytes, read
        back, hash to ``sha256`` (:func:`_holds_bytes`). False when there is no object."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.target.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        if head.get("ContentLength") != size or head.get("Metadata", {}).get("sha256") != sha256:
            return False
        if etag is None:
            return True
        return _holds_bytes(self.client, self.target.bucket, key, head, etag, sha256)

    def _abort_uploads(self, key: str) -> None:
        listing = self.client.list_multipart_uploads(Bucket=self.target.bucket, Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload["Key"] == key:
                self.client.abort_multipart_upload(
                    Bucket=self.target.bucket, Key=key, UploadId=upload["UploadId"]
                )

    def _multipart(self, source: Path, key: str, sha256: str) -> None:
        """Upload ``source`` in parts, resuming an upload an earlier attempt left: its
        parts whose ETag is the MD5 of the same bytes are kept, the others sent again."""
        bucket, step = self.target.bucket, self.target.part_bytes
        upload_id = None
        done: dict[int, str] = {}
        listing = self.client.list_multipart_uploads(Bucket=bucket, Prefix=key)
        for upload in listing.get("Uploads", []):
            if upload["Key"] == key and upload_id is None:
                upload_id = upload["UploadId"]
        if upload_id is not None:
            answer = self.client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
            parts = answer.get("Parts", [])
            done = {p["PartNumber"]: _etag(p["ETag"]) for p in parts}
            size = source.stat().st_size
            if any(int(p["Size"]) != min(step, size - (p["PartNumber"] - 1) * step)
                   for p in parts):  # fmt: skip
                # Left by an attempt with another part_bytes (a refused one, say): its
                # parts cannot be this upload's. Start afresh.
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                upload_id, done = None, {}
        if upload_id is None:
            answer = self.client.create_multipart_upload(
                Bucket=bucket, Key=key, Metadata={"sha256": sha256}
            )
            upload_id = answer["UploadId"]
        listed: list[dict[str, object]] = []
        with source.open("rb") as f:
            number = 0
            while block := f.read(step):
                number += 1
                digest = hashlib.md5(block).digest()  # noqa: S324
                tag = f'"{digest.hex()}"'
                # A part is kept when its ETag is the MD5 of these bytes; a store whose
                # ETags are not MD5s (SSE-KMS, say) gets every part again. The store
                # checks each part against its Content-MD5 (BadDigest), and the whole
                # object is verified after CompleteMultipartUpload, which names each part
                # by the ETag the store gave it.
                if done.get(number) != digest.hex():  # missing, or not these bytes
                    answer = self.client.upload_part(
                        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                        Body=block, ContentMD5=base64.b64encode(digest).decode(),
                    )  # fmt: skip
                    tag = answer["ETag"]
                listed.append({"PartNumber": number, "ETag": tag})
        self.client.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": listed}
        )


# -- reading, whichever store holds the part --------------------------------------------------


# Buckets this process found giving ETags that are not the MD5 of the bytes, and buckets
# whose store refuses the SHA-256 checksum header (each logged once).
_OPAQUE_ETAGS: set[str] = set()
_NO_CHECKSUM_HEADER: set[str] = set()


def _put(client: Any, bucket: str, key: str, data: bytes, sha256: str) -> None:
    """One PUT of ``data`` with its ``Content-MD5`` (the store refuses other bytes:
    BadDigest), its SHA-256 as metadata, and ``x-amz-checksum-sha256`` (a store that
    supports it checks the bytes against it too). Some stores refuse that header instead
    of ignoring it (Backblaze B2, OVH: 400 "Unsupported header 'x-amz-checksum-sha256'"):
    the PUT is sent again without it, and so are the bucket's later PUTs (logged once).
    Content-MD5 and the verification after the PUT stay."""
    from botocore.exceptions import ClientError

    ask: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "ContentMD5": _md5_b64(data),
        "Metadata": {"sha256": sha256},
    }
    if bucket not in _NO_CHECKSUM_HEADER:
        try:
            client.put_object(
                **ask, ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode()
            )
            return
        except ClientError as exc:
            error = exc.response.get("Error", {})
            said = f"{error.get('Code', '')} {error.get('Message', '')}".lower()
            if "checksum" not in said or "header" not in said:
                raise
            _NO_CHECKSUM_HEADER.add(bucket)
            log.warning(
                "object store %s refuses the x-amz-checksum-sha256 header (%s); its uploads"
                " go without it (Content-MD5 and the verification after each stay)",
                bucket,
                error.get("Message") or error.get("Code"),
            )
    client.put_object(**ask)


def _holds_bytes(
    client: Any, bucket: str, key: str, head: dict[str, Any], etag: str, sha256: str
) -> bool:
    """Whether the object at ``key`` (its HEAD: ``head``) holds the bytes whose ETag here
    is ``etag`` (:meth:`ObjectStore.etag_of`) and whose SHA-256 is ``sha256``.

    Most stores (Ceph's gateway, MinIO and AWS without KMS) give the MD5 of the bytes, or
    for a multipart object the MD5 of the parts' MD5s: the ETag settles it. Others do not
    (AWS with SSE-KMS or SSE-C, MinIO with encryption at rest: an ETag "may or may not be
    an MD5", in AWS's words). When the ETag differs, the object is read back and hashed;
    a store found so is logged once (every upload costs it one download)."""
    if _etag(head.get("ETag", "")) == etag:
        return True
    digest, total = hashlib.sha256(), 0
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        while block := body.read(HASH_BLOCK):
            digest.update(block)
            total += len(block)
    finally:
        body.close()
    held = digest.hexdigest() == sha256 and total == int(head.get("ContentLength", -1))
    if held and bucket not in _OPAQUE_ETAGS:
        _OPAQUE_ETAGS.add(bucket)
        log.warning(
            "object store %s: its ETags are not the MD5 of the bytes (encryption at rest,"
            " say); each upload is verified by reading it back and hashing it",
            bucket,
        )
    return held


def _get(location: Location) -> tuple[Any, str, str] | None:
    where = split_location(location)
    if where is None:
        return None
    bucket, key = where
    return _client_for(bucket), bucket, key


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404",
        "NoSuchKey",
        "NotFound",
    )


def put_bytes(location: str, data: bytes, sha256: str) -> None:
    """Write a small object made here (a turned archival page) and verify it as an upload
    is verified: Content-MD5 on the PUT, then the stored size, ETag and SHA-256 checked.
    Raises :class:`ObjectStoreError`; nothing names the object until this returns."""
    from botocore.exceptions import BotoCoreError, ClientError

    split = split_location(location)
    if split is None:
        raise ObjectStoreError(f"not an object location: {location!r}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ObjectStoreError(f"{location}: the bytes do not hash to {sha256}")
    bucket, key = split
    client = _client_for(bucket)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 (integrity, not security)
    try:
        _put(client, bucket, key, data, sha256)
        head = client.head_object(Bucket=bucket, Key=key)
        labelled = (int(head.get("ContentLength", -1)), head.get("Metadata", {}).get("sha256"))
        verified = labelled == (len(data), sha256) and _holds_bytes(
            client, bucket, key, head, md5, sha256
        )
    except (BotoCoreError, ClientError) as exc:
        if _renewed(bucket, exc):
            return put_bytes(location, data, sha256)
        raise failure(exc, key) from exc
    if not verified:
        raise ObjectStoreError(f"{key}: the stored object does not verify")


def open_read(location: Location) -> BinaryIO:
    """The part's bytes as a binary stream (close it). FileNotFoundError when it is gone;
    :class:`ObjectStoreError` (not an OSError: not "missing") when the store cannot answer."""
    got = _get(location)
    if got is None:
        return Path(os.fspath(location)).open("rb")
    client, bucket, key = got
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with _asking(bucket, key):
            body: BinaryIO = client.get_object(Bucket=bucket, Key=key)["Body"]
    except (BotoCoreError, ClientError) as exc:
        if _missing(exc):
            raise FileNotFoundError(location) from exc
        if _renewed(bucket, exc):
            return open_read(location)
        raise failure(exc, str(location)) from exc
    return body


def stream(location: Location, block: int = HASH_BLOCK) -> Iterator[bytes]:
    """The part's bytes in blocks (as :func:`open_read` fails)."""
    from botocore.exceptions import BotoCoreError

    f = open_read(location)
    try:
        while True:
            try:
                data = f.read(block)
            except BotoCoreError as exc:
                where = split_location(location)
                if where is not None:
                    _heard_nothing(where[0], exc)
                raise failure(exc, str(location)) from exc
            if not data:
                return
            yield data
    finally:
        f.close()


def read_bytes(location: Location) -> bytes:
    return b"".join(stream(location))


def exists(location: Location) -> bool:
    try:
        size(location)
    except FileNotFoundError:
        return False
    return True


def size(location: Location) -> int:
    got = _get(location)
    if got is None:
        return Path(os.fspath(location)).stat().st_size
    client, bucket, key = got
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with _asking(bucket, key):
            return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except (BotoCoreError, ClientError) as exc:
        if _missing(exc):
            raise FileNotFoundError(location) from exc
        if _renewed(bucket, exc):
            return size(location)
        raise failure(exc, str(location)) from exc


def sha256(location: Location) -> str:
    """Re-read and re-hash the part (never a checksum the store keeps)."""
    digest = hashlib.sha256()
    for data in stream(location):
        digest.update(data)
    return digest.hexdigest()


@contextlib.contextmanager
def local_file(location: Location, suffix: str = "") -> Iterator[Path]:
    """A local path with the part's bytes for tools that open files (PDF rendering, a
    reprocess subprocess): the path itself for the local store, a temporary copy of an
    object (removed after)."""
    if split_location(location) is None:
        yield Path(os.fspath(location))
        return
    fd, name = tempfile.mkstemp(prefix="sohoa-part-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            for data in stream(location):
                out.write(data)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


# -- building the store the settings name --------------------------------------------------


def credentials_from(environ: dict[str, str], secret: Any, which: str = "s3") -> Credentials:
    """The object store's keys: ``SOHOA_S3_ACCESS_KEY_ID`` / ``SOHOA_S3_SECRET_ACCESS_KEY``,
    else ``secret("s3-access-key-id")`` / ``secret("s3-secret-access-key")`` (systemd's
    credentials directory, then /etc/sohoa/credentials). ``which="backup-s3"``: the backup
    store's (``SOHOA_BACKUP_S3_…``, ``backup-s3-access-key-id``, …)."""
    env = "SOHOA_" + which.upper().replace("-", "_")
    key_id = environ.get(f"{env}_ACCESS_KEY_ID") or secret(f"{which}-access-key-id")
    key = environ.get(f"{env}_SECRET_ACCESS_KEY") or secret(f"{which}-secret-access-key")
    if not key_id or not key:
        raise ObjectStoreError(
            f"the object store needs its keys: the credentials {which}-access-key-id and"
            f" {which}-secret-access-key (or {env}_ACCESS_KEY_ID / {env}_SECRET_ACCESS_KEY)"
        )
    return Credentials(key_id, key)


def open_store(data_dir: Path, store_url: str | None, credentials: Credentials | None) -> Store:
    """The store the settings name: the local store under ``<data_dir>/store`` (no URL), or
    the object store with its staging directory ``<data_dir>/store-staging``."""
    if store_url is None:
        return Store(data_dir / "store")
    target = Target.parse(store_url)
    if credentials is None:
        raise ObjectStoreError("the object store needs its keys")
    store = ObjectStore(
        data_dir / "store-staging",
        target,
        make_client(target, credentials),
        readers=make_client(target, credentials, reads=True),
    )
    store.credentials = credentials
    return store


def connect(settings: ServerSettings, environ: dict[str, str] | None = None) -> Target | None:
    """Register the S3 connection ``settings`` name for this process's readers (no staging
    directory is made); None for the local store."""
    if settings.store_url is None:
        return None
    target = Target.parse(settings.store_url)
    env = dict(os.environ if environ is None else environ)
    credentials = credentials_from(env, settings.secret)
    renew = _renewer(target, credentials, lambda: credentials_from(env, settings.secret))
    register(target.bucket, make_client(target, credentials, reads=True), renew)
    return target


PROBE_KEY = ".sohoa-doctor-probe"  # under the prefix; never a part's key (no device id)


def probe(
    settings: ServerSettings, environ: dict[str, str] | None = None, *, write: bool = False
) -> str:
    """Check that the object store ``settings`` name answers with these keys (a listing of
    one key under the prefix: read-only, and unlike HEAD its refusals carry their code);
    with ``write``, also that it takes a small object (put, then deleted): a bucket over
    its quota still lists. Its redacted URL. Raises :class:`ObjectStoreError` (its cause)."""
    target = connect(settings, environ)
    if target is None:
        raise ObjectStoreError("no store_url: the files are on local disk")
    return _check(_client_for(target.bucket), target, write)


def _check(client: Any, target: Target, write: bool) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    key = target.prefix + PROBE_KEY
    try:
        client.list_objects_v2(Bucket=target.bucket, Prefix=target.prefix, MaxKeys=1)
        if write:
            data = b"sohoa doctor"
            client.put_object(Bucket=target.bucket, Key=key, Body=data, ContentMD5=_md5_b64(data))
            client.delete_object(Bucket=target.bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise _refused(exc, target) from exc
    return _where(target)


def _where(target: Target) -> str:
    return f"s3://{target.bucket}/{target.prefix} at {target.endpoint or 'AWS'}"


def _refused(exc: Exception, target: Target) -> ObjectStoreError:
    """The store's refusal of a check, with its cause; never the keys."""
    return ObjectStoreError(
        f"the object store {_where(target)}: {exc}", failure(exc, target.bucket).cause
    )


# A GET answered this much later than a HEAD of the same small object is the gateway waiting
# on Nagle's algorithm against the client's delayed ACK (~40 ms on Linux): Ceph's beast
# frontend without ``tcp_nodelay=1`` (docs/operations.md). Round trips, TLS and a loaded disk
# slow HEAD and GET alike; only this slows the GET alone.
READ_DELAY_WARN_S = 0.025


def read_delay(settings: ServerSettings, environ: dict[str, str] | None = None) -> float:
    """How much longer the object store takes to answer a GET of a small object than a HEAD
    of it (median of 3 each; seconds). Puts the probe object, then deletes it."""
    target = connect(settings, environ)
    if target is None:
        raise ObjectStoreError("no store_url: the files are on local disk")
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client_for(target.bucket)
    key = target.prefix + PROBE_KEY
    data = b"sohoa doctor: read delay " + b"." * 2000
    heads, gets = [], []
    try:
        client.put_object(Bucket=target.bucket, Key=key, Body=data, ContentMD5=_md5_b64(data))
        try:
            for _ in range(3):
                started = time.perf_counter()
                client.head_object(Bucket=target.bucket, Key=key)
                heads.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.get_object(Bucket=target.bucket, Key=key)["Body"].read()
                gets.append(time.perf_counter() - started)
        finally:
            client.delete_object(Bucket=target.bucket, Key=key)
    except (BotoCoreError, ClientError) as exc:
        raise _refused(exc, target) from exc
    return statistics.median(gets) - statistics.median(heads)


def store_for(settings: ServerSettings, environ: dict[str, str] | None = None) -> Store:
    """The store ``settings`` name, its S3 connection registered for readers."""
    if settings.store_url is None:
        return Store(settings.data_dir / "store")
    env = dict(os.environ if environ is None else environ)
    store = open_store(
        settings.data_dir, settings.store_url, credentials_from(env, settings.secret)
    )
    if isinstance(store, ObjectStore):
        store.rekey = lambda: credentials_from(env, settings.secret)
    return store


def backup_store_for(
    settings: ServerSettings, environ: dict[str, str] | None = None
) -> ObjectStore:
    """The backup object store ``backup_store_url`` names (not registered for readers);
    its downloads are staged in ``<data_dir>/backup/objects-staging``."""
    if settings.backup_store_url is None:
        raise ObjectStoreError(
            "an archive on an object store needs backup_store_url: the second S3 store its"
            " objects are copied to (docs/operations.md §8)"
        )
    target = Target.parse(settings.backup_store_url)
    env = dict(os.environ if environ is None else environ)
    creds = credentials_from(env, settings.secret, "backup-s3")
    staging = settings.data_dir / "backup" / "objects-staging"
    store = ObjectStore(staging, target, make_client(target, creds), reader=False)
    store.credentials = creds
    store.rekey = lambda: credentials_from(env, settings.secret, "backup-s3")
    return store


# -- moving a local store into the object store ------------------------------------------------


@dataclass
class Migration:
    """What one ``store migrate`` run did."""

    moved: int = 0
    bytes: int = 0
    left: int = 0  # local parts not moved yet (stopped by ``limit``)
    damaged: list[str] | None = None  # local files that do not hash as recorded: not moved


def migrate(
    db: Database,
    store: ObjectStore,
    *,
    limit: int | None = None,
    progress: Callable[[str], None] = print,
) -> Migration:
    """Upload every committed part the catalogue finds on local disk to ``store`` and point
    the catalogue at the object, one part at a time: its local file is re-hashed against
    the recorded SHA-256, uploaded and verified (:meth:`ObjectStore.upload`), and only then
    is the part's location changed (a conditional UPDATE: what another process changed is
    left alone). Resumable: parts already moved are no longer local, an object left by a
    run stopped before its UPDATE is verified and kept. Local files are never deleted.
    ``limit``: stop after that many parts (the next run goes on)."""
    report = Migration(damaged=[])
    assert report.damaged is not None
    local = "state = 'committed' AND path IS NOT NULL AND path NOT LIKE 's3://%'"
    total = int(db.read().execute(f"SELECT COUNT(*) FROM parts WHERE {local}").fetchone()[0])  # noqa: S608
    after = 0
    while limit is None or report.moved < limit:
        rows = (
            db.read()
            .execute(
                f"SELECT id, path, sha256, size FROM parts WHERE {local} AND id > ?"  # noqa: S608
                " ORDER BY id LIMIT 100",
                (after,),
            )
            .fetchall()
        )
        if not rows:
            break
        for row in rows:
            if limit is not None and report.moved >= limit:
                break
            after = int(row["id"])
            source = Path(row["path"])
            key = store.target.prefix + "/".join(source.parts[-3:])  # device/batch/file
            try:
                store.upload(source, key, row["sha256"], int(row["size"]))
            except DamagedSource as exc:  # not moved: the fixity check names it too
                report.damaged.append(f"part {after}: {exc}")
                progress(f"NOT MOVED part {after}: {exc}")
                continue
            with db.tx() as con:
                con.execute(
                    "UPDATE parts SET path = ? WHERE id = ? AND path = ?",
                    (store.target.location(key), after, str(source)),
                )
            report.moved += 1
            report.bytes += int(row["size"])
            progress(f"{report.moved}/{total} part(s) moved ({report.bytes} bytes): {key}")
    report.left = int(db.read().execute(f"SELECT COUNT(*) FROM parts WHERE {local}").fetchone()[0])  # noqa: S608
    return report
