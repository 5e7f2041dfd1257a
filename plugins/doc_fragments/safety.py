# -*- coding: utf-8 -*-
# Copyright: stackmender developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # Guards, force and journals: the same in every remediation module.
    DOCUMENTATION = r'''
options:
  force:
    description:
      - Override the module's guards, such as Nova still using a volume. Each guard the run
        overrode is returned in RV(forced_guards) and recorded in the journal with O(force_reason).
      - Input errors, unknown resources and rows that changed since the plan are never overridden.
    type: bool
    default: false
    version_added: 0.1.0
  force_reason:
    description:
      - Why the guards may be overridden (a ticket, what was verified). Required with O(force).
    type: str
    version_added: 0.1.0
  accept_unverified:
    description:
      - Go ahead when a guard cannot look because its evidence source was not given, for example
        O(cinder_db) for a guard that checks Cinder's attachments. Without it such a run is refused,
        nothing is changed, and the refusal names the option that would let the guard look.
      - Each guard accepted this way is returned in C(unverified_guards) and recorded in the
        journal with O(unverified_reason). Unlike O(force), it lifts no guard that looked and
        found a problem.
    type: bool
    default: false
    version_added: 0.1.0
  unverified_reason:
    description:
      - Why the run may go ahead without the guards that cannot look (what was checked by hand).
        Required with O(accept_unverified).
    type: str
    version_added: 0.1.0
  journal_dir:
    description:
      - Directory for the journal files of before-images, one per run that writes.
      - Defaults to C($XDG_STATE_HOME/stackmender/journal), that is C(~/.local/state/stackmender/journal).
      - A run that failed between the commits of two databases leaves an C(incomplete) journal here. A re-run
        of the same task (same module, arguments and databases) finishes that run. It writes only what did
        not commit, once the rows show that nothing changed since, and returns the old journal's path as
        C(finishes_journal).
      - A journal keeps whole rows, with the secrets some columns hold (iSCSI CHAP passwords in C(connection_info),
        C(user_data), the instance password), because undo needs them. It is a 0600 file in a directory that
        belongs to the user running the module and that no one else can write; a missing directory is created
        with mode 0700. A directory owned by another user, or writable by its group or by others, is refused
        before anything is written.
    type: path
    version_added: 0.1.0
  expected_fingerprint:
    description:
      - The plan that was reviewed, as the C(fingerprint) of a check run, its C(review) (fingerprint and items),
        or the whole registered result of the check run.
      - The run plans again from what the databases and the cloud hold now. When that plan's fingerprint is not
        the expected one, the run is refused and nothing is changed. Given the review, the refusal lists the
        items C(added) and C(removed) since; given only the fingerprint, it lists the new plan's items.
      - The fingerprint covers every row change (its key, the values it holds and the values it will hold, secrets
        by their stand-in) and every API call, in any order; the time stamps the run writes count as
        C(<time of the run>), so the same plan made later has the same fingerprint.
      - This is how an apply job runs exactly the change a person approved (see docs/safety-model.md).
    type: raw
    version_added: 0.1.0
'''
