"""pytest-xdist's `--dist loadgroup`, made to finish after a worker dies.

`make test` runs two workers with `--dist loadgroup`. When a worker dies mid-test (pytest-timeout
ends a hung one, a test crashes the interpreter), pytest-xdist 3.8 replaces it, and then its
group scheduler can wait for ever with every worker idle: a CI run of ours did, after a SANE
test hung (pytest-xdist issues 1323, 1327 and 1378; the fixes are not in a release on our
package index). Three faults, each fixed here in a subclass the controller gets through the
`pytest_xdist_make_scheduler` hook:

* The dead worker's whole workload went back on the queue, the groups it had finished
  included. Such a group is sent to a worker as an empty list of tests, which the worker
  never reports done, so that worker is never given more (1323, 1378). Only groups with
  tests still to run go back now.
* The test the worker died in went back with them and ran again on the replacement, which
  a test that kills its interpreter kills too, until the restarts run out (pytest-xdist
  pull request 1371). xdist has already reported it failed; it is not run again.
* A worker runs a test only once it holds the next one (or has been told to stop), and a
  replacement worker was given one group: a group of one test never ran (1327). A worker
  is now given groups until it holds two tests, or told to stop when none are left.
"""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling
from xdist.workermanage import WorkerController


class RecoveringLoadGroupScheduling(LoadGroupScheduling):
    def remove_node(self, node: WorkerController) -> str | None:
        workload = self.assigned_work.pop(node)
        unfinished = {scope: unit for scope, unit in workload.items() if not all(unit.values())}
        if not unfinished:
            return None
        # The test the worker was running: the first one of its groups not yet done.
        scope, crashed = next(
            (scope, nodeid)
            for scope, unit in unfinished.items()
            for nodeid, done in unit.items()
            if not done
        )
        unfinished[scope][crashed] = True
        for scope, unit in reversed(unfinished.items()):  # in their order, before the rest
            if not all(unit.values()):
                self.workqueue[scope] = unit
                self.workqueue.move_to_end(scope, last=False)
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed

    def _reschedule(self, node: WorkerController) -> None:
        # xdist's own rule (a group more once a worker holds two tests or fewer, stop when
        # none are left), except that it goes on until the worker holds two.
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()  # the worker runs what it holds, then stops
            return
        if self._pending_of(self.assigned_work[node]) > 2:
            return
        while True:
            self._assign_work_unit(node)
            if self._pending_of(self.assigned_work[node]) >= 2:
                return
            if not self.workqueue:
                node.shutdown()
                return


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return RecoveringLoadGroupScheduling(config, log)
