"""Test-only stdout callback: prints each task's result as one JSON document.

ansible-core no longer ships a JSON stdout callback, and the tests need the
result dict exactly as Ansible hands it to callbacks (after no_log masking).
"""

from __future__ import annotations

import json

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: module_results
type: stdout
short_description: print task results as JSON (stackmender tests)
description: Prints every task result as one JSON document at the end of the run.
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'module_results'

    def __init__(self):
        super().__init__()
        self.results = []

    def _record(self, result, **extra):
        payload = dict(result._result)
        payload.update(extra)
        self.results.append({'task': result._task.get_name(), 'host': result._host.get_name(), 'result': payload})

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        self._display.display(json.dumps({'results': self.results}, default=str))
