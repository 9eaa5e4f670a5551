"""The test S3 server itself (tests/s3server.py): a second cluster started beside the
session's, as two test workers start theirs."""

from __future__ import annotations

import urllib.request

import pytest
from s3server import CephS3

pytestmark = pytest.mark.s3


def test_a_cluster_whose_monitor_port_is_taken_is_made_again_on_fresh_ports(
    s3_server: CephS3,
) -> None:
    """The port picked for a cluster's monitor was free when picked and is taken before the
    monitor binds it — here by the session's own cluster's monitor. Before, the new
    monitor exited, the new OSD joined the other cluster ("wrong fsid") and never came up,
    and every object-store test of that worker failed at setup (a CI run). Now the cluster
    sees another's monitor answer, and is made again on fresh ports; both clusters work."""
    other = CephS3()
    taken = s3_server.mon_port
    other.mon_port = taken
    try:
        other.start()
        assert other.mon_port != taken
        assert other._ceph("fsid").strip() != s3_server._ceph("fsid").strip()
        for server in (other, s3_server):
            with urllib.request.urlopen(server.endpoint, timeout=10) as answer:
                assert answer.status == 200
    finally:
        other.stop()
