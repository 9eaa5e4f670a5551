"""Ingest: turn messages from devices into committed archive records.

Two ways in, one set of rules: ``mqtt`` (the server's only paho user: subscribes, groups
deliveries, publishes replies, acknowledges after commit) and ``bundle`` (a USB disk from a
station with no link) both go through :class:`Ingest`. Below them, stage by stage: ``core``
(the :class:`Ingest` facade: the order of the stages and the group's transaction),
``grouping`` (what a group collects), ``devices`` (status and telemetry), ``manifests``
(batches, pages, announced parts, checked against ``limits``: what a station may send),
``parts`` (chunks into verified, committed files),
``replies`` (receipts, rejects, batch states). Only ``mqtt`` imports the broker client;
nothing here imports the web app or archive work (review, re-scans, records): events the
archive cares about leave through callbacks the app injects. May import ``server.store``.

:meth:`Ingest.handle_many` takes a group of (topic, payload) messages and returns, for each,
the messages to publish back; :meth:`Ingest.handle` is a group of one. The caller
(``server.ingest.mqtt``) publishes the replies and acknowledges the MQTT messages only after
``handle_many`` returned, i.e. after everything the group wrote is flushed and committed.

Group commit (why: each forced flush costs ~3–4 ms on our disks, and one message at a time
a page cost 17 of them in sequence: ~20 pages/s). A group is processed as one unit:

1. Decode and check every message (envelope, device, each chunk's own sha256) — no lock.
2. ONE write transaction (``BEGIN IMMEDIATE``) for the whole group: status, telemetry and
   manifests are applied in order (each manifest in a SAVEPOINT, so a refused one is rolled
   back alone); each chunk's part is looked up and its bytes collected per part.
3. Still inside that transaction, per part: the group's chunks are ``pwrite``n into the
   part's partial file. A part the recorded ranges plus the group's chunks cover (always the
   case for a part sent in one chunk: text and thumbnails) is re-hashed from the file and
   renamed into place — no chunk row is ever written for it; the others get their ranges
   recorded (``chunks`` rows). A part that fails its sha256 is forgotten (file and ranges)
   and refused (``corrupt``), the rest of the group is unaffected.
4. :meth:`Store.flush`: ``fdatasync`` of every file written or placed and ``fsync`` of every
   directory whose entries changed (once per directory per group), issued in parallel.
5. COMMIT — one WAL sync under ``synchronous=FULL`` for the whole group. Only now do the
   group's receipts (one per batch, listing every part the group committed) and query
   answers (read after the commit) exist, and only after ``handle_many`` returns are they
   published and the messages acknowledged.

So a chunk is PUBACKed, and a part receipted, only after its bytes and its row are durable,
and a part only after its sha256 was recomputed from the file. Per group: one parallel flush
round and one commit, whatever the number of pages in it.

Several workers (threads or processes over one database file and store, e.g. a shared
subscription): every store mutation happens inside the worker's write transaction, and
SQLite lets one writer at a time hold it; the conditional ``UPDATE ... WHERE state !=
'committed'`` that commits a part is the claim. A part is never written once its row says
committed, so a late duplicate can neither reopen nor touch an archived file.

Failures. A SIGKILL anywhere: nothing of the group was acknowledged, the broker redelivers
it, and what was left is harmless — bytes in a partial file without a committed range are
overwritten by the same verified bytes, and a part renamed into place but not committed is
taken over (re-hashed, flushed again) by the worker that next completes it. An exception in
a group (a full disk, an fsync error, a bug): the transaction rolls back, every part the
group touched that is not committed is forgotten (partial and placed files removed, ranges
deleted: after a failed fsync nothing the page cache says can be trusted, docs/design.md §2), and
the messages are then handled one by one so that one bad message cannot sink the others;
one that fails alone is reported as failed (``Handled.error``) with no reply.

Every handler is idempotent: state lives only in the database and the files, and races are
settled by UNIQUE constraints and conditional updates.
"""

from server.ingest.core import Ingest
from server.ingest.grouping import Handled, Rejected
from server.ingest.manifests import EMPTY_SHA256
from server.ingest.replies import Outgoing

CLAIM_LEASE = 300.0  # kept for old databases: a 'verifying' part is taken over after this
SERVER_ID = "sohoa-server"

__all__ = [
    "CLAIM_LEASE",
    "EMPTY_SHA256",
    "SERVER_ID",
    "Handled",
    "Ingest",
    "Outgoing",
    "Rejected",
]
