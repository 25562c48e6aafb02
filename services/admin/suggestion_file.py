"""The file ``policy suggest --save ID FILE`` writes, and the check ``policy apply FILE --suggestion ID`` makes.

A saved suggestion is the whole policy document: the live policy of the moment plus the suggested change.
``--suggestion ID`` records the version's source as ``suggestion:ID``, the audit trail's "this came from
the optimiser". That claim is only true of the file as saved, against the live policy it was made from, so
the header carries two SHA-256 digests (of the document below it, and of the live policy then) and apply
refuses ``--suggestion`` when the file was edited since, names another suggestion, or the live policy has
changed (another apply, a rollback by the guard, or a file saved from another database): applied, such a
file would undo whatever changed since, under the optimiser's name. Without ``--suggestion`` any file
applies as the approver's own proposal.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from spendgate.domain.errors import ConfigError, shown

_ID = re.compile(r"^# spendgate suggestion (\S+)$", re.MULTILINE)
_CHECKS = re.compile(r"^# spendgate checks: live ([0-9a-f]{64}) document ([0-9a-f]{64})$", re.MULTILINE)


def digest(document: dict[str, Any]) -> str:
    """SHA-256 of a policy document's canonical JSON (keys sorted, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def header(suggestion_id: str, summary: str, *, document: dict[str, Any], live: dict[str, Any]) -> str:
    """The comment lines above the saved document."""
    return (f"# spendgate suggestion {suggestion_id}\n# {' '.join(summary.split())}\n"
            f"# spendgate checks: live {digest(live)} document {digest(document)}\n"
            "# (policy apply --suggestion refuses this file once it or the live policy has changed)\n")


def check(text: str, *, source: str, suggestion_id: str, document: dict[str, Any], live: dict[str, Any]) -> None:
    """:class:`ConfigError` unless ``text`` (with its parsed ``document``) is suggestion ``suggestion_id`` as
    saved, made from the ``live`` policy."""
    named, checks = _ID.search(text), _CHECKS.search(text)
    if named is None or checks is None:
        raise ConfigError(f"{source} is not a file `policy suggest --save {suggestion_id} FILE` wrote: "
                          "apply it without --suggestion (it is then your proposal)")
    if named.group(1) != suggestion_id:
        raise ConfigError(f"{source} holds suggestion {shown(named.group(1))}, not {shown(suggestion_id)}")
    if digest(document) != checks.group(2):
        raise ConfigError(f"{source} was edited after it was saved: apply it without --suggestion (it is then "
                          "your proposal, not the suggestion), or save the suggestion again")
    if digest(live) == checks.group(2):
        raise ConfigError(f"the live policy already is suggestion {shown(suggestion_id)} ({source}): "
                          "nothing to apply (see `policy versions`)")
    if digest(live) != checks.group(1):
        raise ConfigError(f"the live policy changed since {source} was saved (another apply, a rollback, or a "
                          "file from another database): applied, it would undo that; run "
                          f"`policy suggest --save {suggestion_id} FILE` again")
