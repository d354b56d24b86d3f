"""Working on disputes: the queue by evidence due date, evidence drafts, and the one answer a
dispute gets (evidence submitted, or the dispute accepted).

Disputes themselves are created and moved by provider events (``processing._apply_dispute``); this
module is what finance staff do about them. Only providers with the ``dispute_evidence``
capability (Stripe) can be answered from Paydesk; the others are answered in the provider's own
dashboard, and the services say so before anything starts.

``Dispute.evidence`` (JSON) holds, by key:

* ``fields``: the text evidence, by Stripe's own field names (only the text fields Stripe accepts);
* ``files``: files attached to the case (PNG, JPEG or PDF by content), stored under ``var/proofs``
  by SHA-256 like payment proofs: name, hash, type, size, who added them and when, and the
  Stripe file evidence field each one answers (``field``: ``receipt``, ..., default
  ``uncategorized_file``; one file per field, as Stripe takes). Once a file is uploaded to the
  provider, its entry also holds the provider's id for it (``provider_file_id``) and when;
* ``response``: the answer in progress or given: ``action`` (submit/accept), ``state``
  (``in_progress``, ``done`` or ``failed``), who, when, and the provider's error when it failed.

Answering follows the checkout pattern: a transaction claims the dispute (``response.state =
in_progress``, committed before the provider hears of it, so a second answer is refused), the
adapter calls run outside any transaction, and a last transaction records the outcome. A failure
releases the claim and keeps the error; the dispute stays unanswered and can be tried again
(Stripe refuses a second submission if the first did go through). A claim left behind by a
crashed process expires after ``CLAIM_EXPIRES_AFTER``.

Submitting uploads each attached file not uploaded yet (one adapter call per file) and commits its
provider file id to the draft before the next step, then sends the text fields and the file
fields (their ids) in one evidence update with ``submit``. A retry after a failure at any point
reuses the ids already recorded: no file is uploaded twice by Paydesk. (An upload whose outcome
was unknown is repeated, which can leave an unreferenced file at Stripe; nothing points to it.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.models import Dispute, Payment, utcnow
from payments_core.money import format_amount
from payments_core.providers.base import (
    DisputeAdapter,
    DisputeFacts,
    OperationNotSupported,
    ProviderError,
)
from payments_core.providers.registry import Adapters, Capability
from payments_core.providers.registry import require as require_capability
from payments_core.services.payments import lock_payment, record_change
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.services.processing import disputed_minor
from payments_core.services.proofs import sniff_content_type, store_file, stored_path
from payments_core.status import (
    OPEN_DISPUTE_STATUSES,
    Decision,
    DisputeStatus,
    decide_dispute,
)

# Stripe's text evidence fields (Dispute update API, ``evidence[...]``). Its other evidence
# fields (receipt, customer_communication, ...) take ids of files uploaded to Stripe, not text.
STRIPE_TEXT_EVIDENCE_FIELDS: Final = frozenset(
    {
        "access_activity_log",
        "billing_address",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "product_description",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_tracking_number",
        "uncategorized_text",
    }
)
# Stripe's file evidence fields: each takes the id of one file uploaded with purpose
# ``dispute_evidence`` (Files API), never text.
STRIPE_FILE_EVIDENCE_FIELDS: Final = frozenset(
    {
        "cancellation_policy",
        "customer_communication",
        "customer_signature",
        "duplicate_charge_documentation",
        "receipt",
        "refund_policy",
        "service_documentation",
        "shipping_documentation",
        "uncategorized_file",
    }
)
DEFAULT_FILE_FIELD: Final = "uncategorized_file"
# Stripe's limits: 20,000 characters per text field, 150,000 for all text evidence together.
MAX_FIELD_CHARS: Final = 20_000
MAX_TOTAL_CHARS: Final = 150_000
MAX_FILES: Final = 20
CLAIM_EXPIRES_AFTER: Final = timedelta(minutes=15)

Transaction = Callable[[], AbstractContextManager[Session]]


class DisputeError(ValueError):
    """A dispute action that is refused; ``field`` names the input at fault, if one is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EvidenceFile(Protocol):
    """Anything with a name and bytes (``proofs.ProofFile``, an upload)."""

    @property
    def name(self) -> str: ...

    @property
    def content(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class EvidenceUpload:
    """A file for one of Stripe's file evidence fields (``receipt``, ...). A plain
    ``EvidenceFile`` goes to ``uncategorized_file``."""

    field: str
    file: EvidenceFile


@dataclass(frozen=True, slots=True)
class DisputeRow:
    """One line of the disputes queue."""

    id: str
    payment_id: str
    provider: str
    provider_dispute_id: str
    status: str
    reason: str | None
    amount_minor: int
    currency: str
    evidence_due_at: datetime | None
    evidence_submitted_at: datetime | None
    payment_host_reference: str | None
    payment_customer_email: str | None
    payment_amount_minor: int
    # An answer is in progress or failed: the state and the error, for the queue to show.
    response_state: str | None
    response_error: str | None

    @property
    def amount(self) -> str:
        return format_amount(self.amount_minor, self.currency)


def list_disputes(
    *,
    session: Session,
    status: DisputeStatus | str | None = None,
    due_before: datetime | None = None,
) -> list[DisputeRow]:
    """Disputes with their payment, the soonest evidence due date first (none due: last)."""
    statement = select(Dispute, Payment).join(Payment, col(Payment.id) == col(Dispute.payment_id))
    if status is not None:
        statement = statement.where(col(Dispute.status) == DisputeStatus(status).value)
    if due_before is not None:
        statement = statement.where(col(Dispute.evidence_due_at) < due_before)
    statement = statement.order_by(
        col(Dispute.evidence_due_at).is_(None),
        col(Dispute.evidence_due_at),
        col(Dispute.created_at),
        col(Dispute.id),
    )
    rows = []
    for dispute, payment in session.exec(statement):
        response = _response(dispute)
        rows.append(
            DisputeRow(
                id=dispute.id,
                payment_id=payment.id,
                provider=payment.provider,
                provider_dispute_id=dispute.provider_dispute_id,
                status=dispute.status,
                reason=dispute.reason,
                amount_minor=dispute.amount_minor,
                currency=dispute.currency,
                evidence_due_at=dispute.evidence_due_at,
                evidence_submitted_at=dispute.evidence_submitted_at,
                payment_host_reference=payment.host_reference,
                payment_customer_email=payment.customer_email,
                payment_amount_minor=payment.amount_minor,
                response_state=response.get("state"),
                response_error=response.get("error"),
            )
        )
    return rows


# --- evidence JSON ------------------------------------------------------------------------------


def evidence_fields(dispute: Dispute) -> dict[str, str]:
    fields = (dispute.evidence or {}).get("fields") or {}
    return {str(k): str(v) for k, v in fields.items()}


def evidence_files(dispute: Dispute) -> list[dict[str, Any]]:
    return [dict(f) for f in (dispute.evidence or {}).get("files") or []]


def file_field(entry: Mapping[str, Any]) -> str:
    """The Stripe file evidence field a draft file answers (drafts saved before fields were
    recorded: ``uncategorized_file``)."""
    return str(entry.get("field") or DEFAULT_FILE_FIELD)


def _response(dispute: Dispute) -> dict[str, Any]:
    return dict((dispute.evidence or {}).get("response") or {})


def _set_evidence(dispute: Dispute, **parts: Any) -> None:
    # A new dict, and flagged: SQLAlchemy does not see changes inside a JSON value.
    dispute.evidence = {**(dispute.evidence or {}), **parts}
    flag_modified(dispute, "evidence")


def _lock(session: Session, dispute_id: str) -> tuple[Dispute, Payment]:
    """The dispute and its payment, locked (payment first: the order processing uses)."""
    payment_id = session.exec(
        select(Dispute.payment_id).where(col(Dispute.id) == dispute_id)
    ).one_or_none()
    if payment_id is None:
        raise DisputeError(f"no dispute {dispute_id}", field="dispute")
    payment = lock_payment(session=session, payment_id=payment_id)
    dispute = session.exec(
        select(Dispute).where(col(Dispute.id) == dispute_id).with_for_update()
    ).one()
    return dispute, payment


def _require_answerable(dispute: Dispute, payment: Payment, now: datetime) -> None:
    """Refuse unless the dispute can still be answered from Paydesk."""
    try:
        require_capability(payment.provider, Capability.DISPUTE_EVIDENCE)
    except OperationNotSupported:
        raise DisputeError(
            f"{payment.provider} disputes cannot be answered from Paydesk (only Stripe's can): "
            f"answer {dispute.provider_dispute_id} in the {payment.provider} dashboard",
            field="dispute",
        ) from None
    if dispute.evidence_submitted_at is not None:
        raise DisputeError(
            f"evidence for {dispute.id} was submitted at "
            f"{dispute.evidence_submitted_at:%Y-%m-%d %H:%M} UTC and can no longer be changed",
            field="dispute",
        )
    if dispute.status not in {s.value for s in OPEN_DISPUTE_STATUSES}:
        raise DisputeError(f"dispute {dispute.id} is {dispute.status}: it is closed")
    if dispute.status != DisputeStatus.NEEDS_RESPONSE.value:
        raise DisputeError(
            f"dispute {dispute.id} is {dispute.status}: it was already answered",
            field="dispute",
        )
    response = _response(dispute)
    if response.get("state") == "in_progress":
        started = _parse_time(response.get("at"))
        if started is None or now - started < CLAIM_EXPIRES_AFTER:
            raise DisputeError(
                f"{response.get('by')} is already answering dispute {dispute.id} "
                f"({response.get('action')}, started {response.get('at')})",
                field="dispute",
            )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


# --- drafts -------------------------------------------------------------------------------------


@guarded(Permission.MANAGE_DISPUTES)
def save_evidence_draft(
    *,
    session: Session,
    actor: Actor,
    dispute_id: str,
    fields: Mapping[str, str],
    files: Sequence[EvidenceFile | EvidenceUpload] = (),
    settings: Settings | None = None,
) -> Dispute:
    """Merge ``fields`` into the draft (an empty value removes a field) and attach ``files``.

    Each file answers one of Stripe's file evidence fields: ``EvidenceUpload(field, file)``, or
    ``uncategorized_file`` for a plain file. Stripe takes one file per field, so a second file for
    a field already holding one is refused. Attaching bytes already in the draft again with an
    ``EvidenceUpload`` moves that file to the new field. Nothing is sent to the provider until
    ``submit_evidence``.
    """
    settings = settings or get_settings()
    unknown = sorted(set(fields) - STRIPE_TEXT_EVIDENCE_FIELDS)
    if unknown:
        file_hint = (
            f" ({', '.join(sorted(set(unknown) & STRIPE_FILE_EVIDENCE_FIELDS))} take a file, "
            "not text: attach one for that field)"
            if set(unknown) & STRIPE_FILE_EVIDENCE_FIELDS
            else ""
        )
        raise DisputeError(
            f"unknown evidence field(s) {', '.join(unknown)}{file_hint}; Stripe accepts text in: "
            f"{', '.join(sorted(STRIPE_TEXT_EVIDENCE_FIELDS))}",
            field=unknown[0],
        )
    for name, value in fields.items():
        if not isinstance(value, str):
            raise DisputeError(f"{name} must be text", field=name)
        if len(value) > MAX_FIELD_CHARS:
            raise DisputeError(f"{name}: at most {MAX_FIELD_CHARS:,} characters", field=name)
    checked: list[tuple[str, bytes, str, str | None]] = []
    requested: dict[str, str] = {}
    for item in files:
        upload = item.file if isinstance(item, EvidenceUpload) else item
        name = Path(upload.name or "").name[:255] or "evidence"
        wanted = item.field if isinstance(item, EvidenceUpload) else None
        if wanted is not None and wanted not in STRIPE_FILE_EVIDENCE_FIELDS:
            raise DisputeError(
                f"{name}: {wanted!r} is not a Stripe file evidence field; files go in: "
                f"{', '.join(sorted(STRIPE_FILE_EVIDENCE_FIELDS))}",
                field=wanted,
            )
        slot = wanted or DEFAULT_FILE_FIELD
        if slot in requested:
            raise DisputeError(
                f"{requested[slot]} and {name} are both for {slot}: Stripe takes one file per "
                "evidence field (combine them into one PDF, or use another field)",
                field=slot,
            )
        requested[slot] = name
        if not upload.content:
            raise DisputeError(f"{name} is empty", field="files")
        if len(upload.content) > settings.proof_max_bytes:
            raise DisputeError(
                f"{name} is larger than {settings.proof_max_bytes:,} bytes", field="files"
            )
        content_type = sniff_content_type(upload.content)
        if content_type is None:
            raise DisputeError(
                f"{name}: only PNG, JPEG or PDF files are accepted (checked by content)",
                field="files",
            )
        checked.append((name, upload.content, content_type, wanted))

    now = utcnow()
    dispute, payment = _lock(session, dispute_id)
    _require_answerable(dispute, payment, now)
    draft = evidence_fields(dispute)
    before = {
        "fields": sorted(draft),
        "files": [f["sha256"] for f in evidence_files(dispute)],
        "file_fields": {file_field(f): f["sha256"] for f in evidence_files(dispute)},
    }
    for name, value in fields.items():
        if value.strip():
            draft[name] = value.strip()
        else:
            draft.pop(name, None)
    total = sum(len(v) for v in draft.values())
    if total > MAX_TOTAL_CHARS:
        raise DisputeError(
            f"the evidence text would be {total:,} characters; Stripe takes at most "
            f"{MAX_TOTAL_CHARS:,} in all",
            field="fields",
        )
    attached = evidence_files(dispute)
    by_digest = {f["sha256"]: f for f in attached}
    added: list[dict[str, Any]] = []
    placed: list[dict[str, Any]] = []  # added, or moved to another field
    for name, content, content_type, wanted in checked:
        digest, _ = store_file(content, settings)  # writes only a missing copy
        existing = by_digest.get(digest)
        if existing is not None:
            if wanted is not None and file_field(existing) != wanted:
                existing["field"] = wanted
                placed.append(existing)
            continue
        entry = {
            "name": name,
            "sha256": digest,
            "content_type": content_type,
            "size": len(content),
            "field": wanted or DEFAULT_FILE_FIELD,
            "added_by": actor.name,
            "added_at": now.isoformat(),
        }
        by_digest[digest] = entry
        attached.append(entry)
        added.append(entry)
        placed.append(entry)
    for entry in placed:
        slot = file_field(entry)
        for other in attached:
            if other is not entry and file_field(other) == slot:
                raise DisputeError(
                    f"{slot} already holds {other['name']}: Stripe takes one file per evidence "
                    f"field; attach {entry['name']} to another field, or move "
                    f"{other['name']} first",
                    field=slot,
                )
    if len(attached) > MAX_FILES:
        raise DisputeError(f"at most {MAX_FILES} files per dispute", field="files")
    known = set(by_digest)
    _set_evidence(dispute, fields=draft, files=attached)
    dispute.updated_at = now
    session.add(dispute)
    changed = sorted(fields)
    moved = [entry for entry in placed if entry not in added]
    file_note = (
        f"; {len(added)} file(s) attached ({', '.join(_file_label(e) for e in added)})"
        if added
        else ""
    )
    if moved:
        file_note += f"; moved {', '.join(_file_label(e) for e in moved)}"
    record_change(
        session=session,
        payment=payment,
        actor=actor.name,
        at=now,
        kind="dispute",
        summary=f"Evidence draft for dispute {dispute.provider_dispute_id} saved by {actor.name}"
        + (f" ({', '.join(changed)})" if changed else "")
        + file_note,
        data={
            "dispute_id": dispute.id,
            "fields": changed,
            "files": [f["sha256"] for f in added],
            "file_fields": {file_field(f): f["sha256"] for f in placed},
        },
        action="dispute.evidence_draft_saved",
        entity_type="dispute",
        entity_id=dispute.id,
        before=before,
        after={
            "fields": sorted(draft),
            "files": sorted(known),
            "file_fields": {file_field(f): f["sha256"] for f in attached},
        },
    )
    return dispute


def _file_label(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']} as {file_field(entry)}"


# --- answering: submit or accept ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DisputeOutcome:
    """The dispute after the answer; ``error`` is the provider's refusal or failure, if any."""

    dispute: Dispute
    error: ProviderError | None = None


@dataclass(frozen=True, slots=True)
class _Claim:
    provider: str
    provider_dispute_id: str
    fields: dict[str, str]
    files: list[dict[str, Any]]


def _check_files(files: Sequence[Mapping[str, Any]], settings: Settings) -> None:
    """Refuse to submit files Stripe would refuse, or Paydesk cannot read back."""
    holders: dict[str, str] = {}
    for entry in files:
        slot = file_field(entry)
        if slot not in STRIPE_FILE_EVIDENCE_FIELDS:
            raise DisputeError(f"{entry['name']}: {slot!r} is not a Stripe file evidence field")
        if slot in holders:
            raise DisputeError(
                f"{holders[slot]} and {entry['name']} are both attached as {slot}: Stripe takes "
                "one file per evidence field; attach one of them to another field first",
                field=slot,
            )
        holders[slot] = str(entry["name"])
        if (
            not entry.get("provider_file_id")
            and not stored_path(str(entry["sha256"]), settings).is_file()
        ):
            raise DisputeError(
                f"{entry['name']} is no longer stored in Paydesk (var/proofs): attach it again",
                field="files",
            )


def _claim(
    transaction: Transaction, actor: Actor, dispute_id: str, action: str, settings: Settings
) -> _Claim:
    """Mark the dispute as being answered (committed before the provider call)."""
    with transaction() as session:
        now = utcnow()
        dispute, payment = _lock(session, dispute_id)
        _require_answerable(dispute, payment, now)
        fields = evidence_fields(dispute)
        files = evidence_files(dispute)
        if action == "submit":
            if not fields and not files:
                raise DisputeError(
                    "there is no evidence to submit: save at least one evidence field or file "
                    "first",
                    field="fields",
                )
            _check_files(files, settings)
        _set_evidence(
            dispute,
            response={
                "action": action,
                "state": "in_progress",
                "by": actor.name,
                "at": now.isoformat(),
            },
        )
        dispute.updated_at = now
        session.add(dispute)
        record_change(
            session=session,
            payment=payment,
            actor=actor.name,
            at=now,
            kind="dispute",
            summary=f"{'Submitting evidence for' if action == 'submit' else 'Accepting'} "
            f"dispute {dispute.provider_dispute_id} with {payment.provider} ({actor.name})",
            data={"dispute_id": dispute.id, "action": action},
            action=f"dispute.{action}_started",
            entity_type="dispute",
            entity_id=dispute.id,
            after={"response": action, "state": "in_progress"},
        )
        return _Claim(payment.provider, dispute.provider_dispute_id, fields, files)


def _upload_file(
    transaction: Transaction,
    adapter: DisputeAdapter,
    settings: Settings,
    dispute_id: str,
    entry: Mapping[str, Any],
) -> str:
    """Upload one draft file and commit its provider id to the draft before returning it, so a
    later failure (another upload, the submission) never makes a retry upload it again."""
    digest = str(entry["sha256"])
    content = stored_path(digest, settings).read_bytes()
    if hashlib.sha256(content).hexdigest() != digest:
        raise DisputeError(f"{entry['name']}: the stored copy does not match its hash")
    file_id = adapter.upload_dispute_file(str(entry["name"]), content, str(entry["content_type"]))
    with transaction() as session:
        dispute, _ = _lock(session, dispute_id)
        files = evidence_files(dispute)
        for stored in files:
            if stored["sha256"] == digest:
                stored["provider_file_id"] = file_id
                stored["uploaded_at"] = utcnow().isoformat()
        _set_evidence(dispute, files=files)
        session.add(dispute)
    return file_id


def _submit(
    transaction: Transaction,
    adapter: DisputeAdapter,
    settings: Settings,
    dispute_id: str,
    claim: _Claim,
) -> DisputeFacts:
    """Upload what is not uploaded yet, then send text and file evidence in one submission."""
    evidence = dict(claim.fields)
    for entry in claim.files:
        file_id = entry.get("provider_file_id") or _upload_file(
            transaction, adapter, settings, dispute_id, entry
        )
        entry["provider_file_id"] = file_id
        evidence[file_field(entry)] = str(file_id)
    return adapter.update_dispute_evidence(claim.provider_dispute_id, evidence, submit=True)


def _record_failure(
    transaction: Transaction, actor: Actor, dispute_id: str, action: str, error: ProviderError
) -> Dispute:
    """Release the claim and keep the error: the dispute stays unanswered."""
    with transaction() as session:
        now = utcnow()
        dispute, payment = _lock(session, dispute_id)
        message = str(error)[:500]
        _set_evidence(
            dispute,
            response={
                "action": action,
                "state": "failed",
                "by": actor.name,
                "at": now.isoformat(),
                "error": message,
                "error_type": type(error).__name__,
            },
        )
        dispute.updated_at = now
        session.add(dispute)
        record_change(
            session=session,
            payment=payment,
            actor=actor.name,
            at=now,
            kind="dispute",
            summary=f"{'Evidence submission' if action == 'submit' else 'Accepting'} for dispute "
            f"{dispute.provider_dispute_id} failed: {message}",
            data={"dispute_id": dispute.id, "action": action, "error": type(error).__name__},
            action=f"dispute.{action}_failed",
            entity_type="dispute",
            entity_id=dispute.id,
            after={"state": "failed", "error": message},
        )
        return dispute


def _recompute_disputed(session: Session, payment: Payment) -> None:
    """The payment's disputed amount, by ``processing``'s rule (open and lost disputes)."""
    session.flush()
    payment.disputed_minor = disputed_minor(session, payment.id)
    session.add(payment)


def _record_answer(
    transaction: Transaction,
    actor: Actor,
    dispute_id: str,
    action: str,
    facts: DisputeFacts,
    summary: str,
) -> Dispute:
    with transaction() as session:
        now = utcnow()
        dispute, payment = _lock(session, dispute_id)
        before = {
            "status": dispute.status,
            "evidence_submitted_at": (
                dispute.evidence_submitted_at.isoformat() if dispute.evidence_submitted_at else None
            ),
        }
        transition = decide_dispute(DisputeStatus(dispute.status), facts.status)
        if transition.decision is Decision.APPLY:
            dispute.status = facts.status.value
            if facts.status not in OPEN_DISPUTE_STATUSES:
                dispute.closed_at = dispute.closed_at or now
        if action == "submit":
            dispute.evidence_submitted_at = dispute.evidence_submitted_at or now
        _set_evidence(
            dispute,
            response={"action": action, "state": "done", "by": actor.name, "at": now.isoformat()},
        )
        dispute.updated_at = now
        session.add(dispute)
        _recompute_disputed(session, payment)
        record_change(
            session=session,
            payment=payment,
            actor=actor.name,
            at=now,
            kind="dispute",
            summary=f"{summary}; dispute is now {dispute.status}",
            data={"dispute_id": dispute.id, "status": dispute.status, "action": action},
            action="dispute.evidence_submitted" if action == "submit" else "dispute.accepted",
            entity_type="dispute",
            entity_id=dispute.id,
            before=before,
            after={
                "status": dispute.status,
                "evidence_submitted_at": (
                    dispute.evidence_submitted_at.isoformat()
                    if dispute.evidence_submitted_at
                    else None
                ),
            },
        )
        return dispute


def _answer(
    *,
    transaction: Transaction,
    adapters: Adapters,
    actor: Actor,
    dispute_id: str,
    action: str,
) -> DisputeOutcome:
    settings = adapters.settings
    claim = _claim(transaction, actor, dispute_id, action, settings)
    try:
        adapter = adapters.disputes(claim.provider)
        if action == "submit":
            facts = _submit(transaction, adapter, settings, dispute_id, claim)
        else:
            facts = adapter.accept_dispute(claim.provider_dispute_id)
    except ProviderError as error:
        return DisputeOutcome(_record_failure(transaction, actor, dispute_id, action, error), error)
    except DisputeError as exc:  # a draft file unreadable at upload time: release the claim
        _record_failure(transaction, actor, dispute_id, action, ProviderError(str(exc)))
        raise
    except Exception as exc:  # a bug, not a provider answer: release the claim, then raise
        unexpected = ProviderError(f"unexpected error: {exc!r}")
        _record_failure(transaction, actor, dispute_id, action, unexpected)
        raise
    if action == "submit":
        sent = ", ".join(
            [
                *sorted(claim.fields),
                *(
                    f"{file_field(e)}={e['name']} ({e['provider_file_id']})"
                    for e in sorted(claim.files, key=file_field)
                ),
            ]
        )
        files = f"; {len(claim.files)} attached file(s) uploaded" if claim.files else ""
        summary = (
            f"Evidence for dispute {claim.provider_dispute_id} submitted to {claim.provider} by "
            f"{actor.name} ({sent}){files}"
        )
    else:
        summary = f"Dispute {claim.provider_dispute_id} accepted by {actor.name} ({claim.provider})"
    return DisputeOutcome(_record_answer(transaction, actor, dispute_id, action, facts, summary))


@guarded(Permission.MANAGE_DISPUTES)
def submit_evidence(
    *, transaction: Transaction, adapters: Adapters, actor: Actor, dispute_id: str
) -> DisputeOutcome:
    """Send the evidence draft to the provider, once; the dispute moves to under review.

    Each attached file not uploaded yet is uploaded first (its provider file id committed to the
    draft at once), then the text fields and the file fields with their ids go in one submission.

    Refused (``DisputeError``, nothing sent) for a provider that takes no evidence, a closed or
    already answered dispute, an answer already in progress, an empty draft, two files for one
    field, or a file no longer stored. A provider failure (an upload or the submission) is
    returned in ``error`` and kept on the dispute, which stays unsubmitted; a retry uploads only
    the files that have no provider id yet.
    """
    return _answer(
        transaction=transaction,
        adapters=adapters,
        actor=actor,
        dispute_id=dispute_id,
        action="submit",
    )


@guarded(Permission.MANAGE_DISPUTES)
def accept_dispute(
    *, transaction: Transaction, adapters: Adapters, actor: Actor, dispute_id: str
) -> DisputeOutcome:
    """Accept the dispute without contest (Stripe: close it; it comes back lost, or closed for an
    inquiry). Irreversible; refused like ``submit_evidence``."""
    return _answer(
        transaction=transaction,
        adapters=adapters,
        actor=actor,
        dispute_id=dispute_id,
        action="accept",
    )


__all__ = [
    "DEFAULT_FILE_FIELD",
    "STRIPE_FILE_EVIDENCE_FIELDS",
    "STRIPE_TEXT_EVIDENCE_FIELDS",
    "DisputeError",
    "DisputeOutcome",
    "DisputeRow",
    "EvidenceUpload",
    "accept_dispute",
    "evidence_fields",
    "evidence_files",
    "file_field",
    "list_disputes",
    "save_evidence_draft",
    "submit_evidence",
]
