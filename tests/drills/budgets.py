"""Each drill's time budget, and the table of measured times that the test run prints.

The budgets are for the call phase of each drill on the 2-core CI machine
while the other test workers run beside the lab. A drill over its budget is
flagged in the table, not failed: timings on a shared machine are not a test
result (see docs/testing.md), but a drill that grows past its budget should
be looked at.
"""

BUDGETS = {
    'test_multibackend_runbook.py::test_runbook_repairs_the_multibackend_rename': 240,
    'test_multibackend_rehost.py::test_volumes_of_a_renamed_cinder_volume_are_rehosted_and_deleted': 120,
    'test_audit_run.py::test_stuck_detaching_and_error_deleting_volumes_are_repaired_after_two_sightings': 120,
    'test_audit_run.py::test_bdm_nova_kept_after_cinder_let_go_is_removed_and_the_volume_attaches_again': 120,
    'test_cinder_volume_state_api.py::test_cinder_volume_killed_mid_detach_is_repaired': 150,
    'test_nova_bdm_purge_api.py::test_bdm_nova_kept_after_cinder_let_go_is_purged_and_the_volume_attaches_again': 90,
    'test_compute_node_evacuation.py::test_dead_compute_host_is_fenced_and_evacuated': 150,
    'test_compute_node_evacuation.py::test_an_instance_nova_cannot_evacuate_moves_in_the_databases': 150,
    'test_nova_instance_host_api.py::test_dead_compute_is_fenced_and_its_server_evacuated': 120,
    'test_power_loss_recovery.py::test_power_loss_recovery_restores_every_attachment_once': 300,
    'test_binding_failed.py::test_failed_live_migration_cache_is_rebuilt_from_neutron': 90,
    'test_nova_instance_delete_api.py::test_server_on_a_dead_compute_is_deleted_through_nova': 120,
    'test_nova_task_state_api.py::test_a_stop_cast_to_a_dead_compute_is_cleared_through_nova': 90,
    'test_nova_task_state_live_migration.py::test_a_running_live_migration_is_aborted_through_nova': 60,
    'test_nova_task_state_live_migration.py::test_a_running_live_migration_is_forced_to_complete_through_nova': 60,
}


def drill_key(nodeid):
    """'tests/drills/test_x.py::test_y@lab' -> 'test_x.py::test_y'."""
    path, _sep, name = nodeid.partition('::')
    return '%s::%s' % (path.rsplit('/', 1)[-1], name.split('@', 1)[0].split('[', 1)[0])


def table(durations):
    """Markdown rows of every budgeted drill: measured call time, budget, verdict."""
    lines = ['| drill | seconds | budget | |', '|---|---|---|---|']
    for key, budget in sorted(BUDGETS.items()):
        seconds = durations.get(key)
        if seconds is None:
            verdict, shown = 'not run', '-'
        else:
            verdict, shown = ('within' if seconds <= budget else 'OVER BUDGET'), '%.1f' % seconds
        lines.append('| %s | %s | %d | %s |' % (key, shown, budget, verdict))
    return lines
