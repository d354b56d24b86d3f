"""Proofs of manual and offline payments: recorded (by a customer through the host API, or by
finance staff), stored under ``var/`` by content hash, checked for duplicates, then reviewed.

A file is accepted by what it is, not by its name: PNG, JPEG or PDF by their leading bytes, up to
``PROOF_MAX_BYTES``. A proof whose file, or whose reference and amount, was already used on another
payment is flagged with that payment, so the reviewer sees it before approving.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

from sqlmodel import Session, col, select

from payments_core.config import Settings
from payments_core.models import ManualProof, Payment, new_id, utcnow
from payments_core.models.payments import OPEN_STATUSES
from payments_core.money import format_amount
from payments_core.providers.base import PaymentMethod, ProviderName
from payments_core.services.payments import apply_status, lock_payment, record_change
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.status import (
    CAPTURED_PAYMENT_STATUSES,
    MappedStatus,
    PaymentStatus,
    ProofStatus,
)

PROOF_KINDS: Final = frozenset(
    {
        PaymentMethod.BANK_TRANSFER.value,
        PaymentMethod.CASH_ON_DELIVERY.value,
        PaymentMethod.MOBILE_MONEY.value,
    }
)
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"%PDF-", "application/pdf"),
)


class ProofError(ValueError):
    """A proof that cannot be recorded; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def sniff_content_type(content: bytes) -> str | None:
    """PNG, JPEG or PDF by their leading bytes; None for anything else."""
    for signature, content_type in _SIGNATURES:
        if content.startswith(signature):
            return content_type
    return None


@dataclass(frozen=True, slots=True)
class ProofFile:
    name: str
    content: bytes


def stored_path(digest: str, settings: Settings) -> Path:
    """Where ``store_file`` keeps the bytes whose SHA-256 is ``digest``."""
    return settings.var_dir / "proofs" / digest[:2] / digest


def store_file(content: bytes, settings: Settings) -> tuple[str, Path]:
    """Write ``content`` under var/proofs by its SHA-256 (once: the same bytes share one file)."""
    digest = hashlib.sha256(content).hexdigest()
    path = stored_path(digest, settings)
    folder = path.parent
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    return digest, path


def proof_path(proof: ManualProof, settings: Settings) -> Path | None:
    if not proof.file_sha256:
        return None
    return stored_path(proof.file_sha256, settings)


def record_proof(
    *,
    session: Session,
    settings: Settings,
    payment_id: str,
    reference: str,
    amount_minor: int,
    actor: str,
    kind: str | None = None,
    currency: str | None = None,
    paid_on: date | None = None,
    file: ProofFile | None = None,
    notes: str | None = None,
) -> ManualProof:
    """Record a proof for an open manual payment; it waits for a manager's review."""
    reference = reference.strip()
    if not reference or len(reference) > 255:
        raise ProofError("reference", "the payment reference is required (at most 255 characters)")
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise ProofError("amount", "must be a positive integer count of minor units")
    if notes is not None and len(notes) > 2000:
        raise ProofError("notes", "at most 2,000 characters")
    payment = lock_payment(session=session, payment_id=payment_id)
    if payment.provider != ProviderName.MANUAL.value:
        raise ProofError(
            "payment", f"{payment.id} is a {payment.provider} payment, not a manual one"
        )
    if payment.status_enum not in OPEN_STATUSES:
        raise ProofError("payment", f"{payment.id} is {payment.status}: it takes no more proofs")
    if currency is not None and currency.upper() != payment.currency:
        raise ProofError(
            "currency", f"the payment is in {payment.currency}, not {currency.upper()}"
        )
    kind = kind or payment.method
    if kind not in PROOF_KINDS:
        raise ProofError(
            "kind", f"unknown kind {kind!r}; use one of: {', '.join(sorted(PROOF_KINDS))}"
        )
    if paid_on is not None and paid_on > utcnow().date():
        raise ProofError("paid_on", "lies in the future")

    digest = content_type = None
    size = None
    file_name = None
    if file is not None:
        if not file.content:
            raise ProofError("file", "the file is empty")
        if len(file.content) > settings.proof_max_bytes:
            raise ProofError("file", f"the file is larger than {settings.proof_max_bytes:,} bytes")
        content_type = sniff_content_type(file.content)
        if content_type is None:
            raise ProofError(
                "file", "only PNG, JPEG or PDF files are accepted (checked by content)"
            )
        digest, _ = store_file(file.content, settings)
        size = len(file.content)
        file_name = Path(file.name).name[:255] or "proof"

    duplicate_of = _duplicate_of(session, payment.id, digest, reference, amount_minor)
    now = utcnow()
    proof = ManualProof(
        id=new_id("prf", at=now),
        payment_id=payment.id,
        kind=kind,
        reference=reference,
        amount_minor=amount_minor,
        currency=payment.currency,
        paid_on=paid_on,
        file_sha256=digest,
        file_name=file_name,
        content_type=content_type,
        file_size=size,
        notes=notes,
        recorded_by=actor,
        duplicate_of_payment_id=duplicate_of,
        created_at=now,
    )
    session.add(proof)
    warning = f"; same proof already used on {duplicate_of}" if duplicate_of else ""
    if amount_minor != payment.amount_minor:
        warning += (
            f"; amount {format_amount(amount_minor, payment.currency)} differs from the "
            f"payment's {format_amount(payment.amount_minor, payment.currency)}"
        )
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="proof",
        summary=f"Proof {proof.id} recorded ({kind}, reference {reference}){warning}",
        data={"proof_id": proof.id, "duplicate_of_payment_id": duplicate_of},
        action="proof.recorded",
        entity_type="manual_proof",
        entity_id=proof.id,
        after={
            "payment_id": payment.id,
            "reference": reference,
            "amount_minor": amount_minor,
            "file_sha256": digest,
            "duplicate_of_payment_id": duplicate_of,
        },
    )
    return proof


def _duplicate_of(
    session: Session, payment_id: str, digest: str | None, reference: str, amount_minor: int
) -> str | None:
    """Another payment that already has this file, or this reference with this amount."""
    if digest is not None:
        other = session.exec(
            select(ManualProof.payment_id).where(
                col(ManualProof.file_sha256) == digest, col(ManualProof.payment_id) != payment_id
            )
        ).first()
        if other:
            return other
    return session.exec(
        select(ManualProof.payment_id).where(
            col(ManualProof.reference) == reference,
            col(ManualProof.amount_minor) == amount_minor,
            col(ManualProof.payment_id) != payment_id,
        )
    ).first()


def proofs_for(*, session: Session, payment_id: str) -> list[ManualProof]:
    return list(
        session.exec(
            select(ManualProof)
            .where(col(ManualProof.payment_id) == payment_id)
            .order_by(col(ManualProof.created_at))
        ).all()
    )


@guarded(Permission.RECORD_PROOF)
def record_proof_by_staff(
    *,
    session: Session,
    settings: Settings,
    actor: Actor,
    payment_id: str,
    reference: str,
    amount_minor: int,
    kind: str | None = None,
    currency: str | None = None,
    paid_on: date | None = None,
    file: ProofFile | None = None,
    notes: str | None = None,
) -> ManualProof:
    """A proof recorded by finance staff (a payment received at the counter, a transfer seen in
    the bank's portal); it waits for review by someone else."""
    return record_proof(
        session=session,
        settings=settings,
        payment_id=payment_id,
        reference=reference,
        amount_minor=amount_minor,
        actor=actor.name,
        kind=kind,
        currency=currency,
        paid_on=paid_on,
        file=file,
        notes=notes,
    )


def _proof_for_review(session: Session, actor: Actor, proof_id: str) -> tuple[ManualProof, Payment]:
    """The proof, with its payment locked first (the lock order every payment change uses), once
    the maker-checker and status rules allow ``actor`` to review it."""
    payment_id = session.exec(
        select(ManualProof.payment_id).where(col(ManualProof.id) == proof_id)
    ).one_or_none()
    if payment_id is None:
        raise ProofError("proof", f"no proof {proof_id}")
    payment = lock_payment(session=session, payment_id=payment_id)
    proof = session.exec(
        select(ManualProof).where(col(ManualProof.id) == proof_id).with_for_update()
    ).one()
    if proof.recorded_by.strip().lower() == actor.name.strip().lower():
        raise ProofError(
            "reviewer",
            f"{actor.name} recorded proof {proof.id} and so cannot review it: "
            "another manager must approve or reject it",
        )
    if proof.status != ProofStatus.PENDING_REVIEW.value:
        raise ProofError(
            "proof",
            f"proof {proof.id} is already {proof.status}"
            + (f" (by {proof.reviewed_by})" if proof.reviewed_by else "")
            + ": only proofs awaiting review can be approved or rejected",
        )
    return proof, payment


def _review_snapshot(proof: ManualProof) -> dict[str, object]:
    return {
        "status": proof.status,
        "reviewed_by": proof.reviewed_by,
        "review_reason": proof.review_reason,
        "duplicate_of_payment_id": proof.duplicate_of_payment_id,
    }


@guarded(Permission.REVIEW_PROOF)
def approve_proof(*, session: Session, actor: Actor, proof_id: str) -> ManualProof:
    """Approve a proof awaiting review: the payment succeeds with its amount captured."""
    proof, payment = _proof_for_review(session, actor, proof_id)
    if payment.status_enum in CAPTURED_PAYMENT_STATUSES:
        raise ProofError(
            "payment",
            f"{payment.id} is already {payment.status}: approving would count the money twice; "
            "reject this proof instead",
        )
    now = utcnow()
    before = _review_snapshot(proof)
    proof.status = ProofStatus.APPROVED.value
    proof.reviewed_by = actor.name
    proof.reviewed_at = now
    session.add(proof)
    notes = []
    if proof.duplicate_of_payment_id:
        notes.append(
            f"approved although the same proof was already used on {proof.duplicate_of_payment_id}"
        )
    if proof.amount_minor != payment.amount_minor:
        notes.append(
            f"the proof shows {format_amount(proof.amount_minor, proof.currency)}, the payment is "
            f"{format_amount(payment.amount_minor, payment.currency)}"
        )
    warning = "".join(f"; {note}" for note in notes)
    record_change(
        session=session,
        payment=payment,
        actor=actor.name,
        at=now,
        kind="proof",
        summary=f"Proof {proof.id} approved by {actor.name}{warning}",
        data={"proof_id": proof.id, "duplicate_of_payment_id": proof.duplicate_of_payment_id},
        action="proof.approved",
        entity_type="manual_proof",
        entity_id=proof.id,
        before=before,
        after=_review_snapshot(proof),
    )
    apply_status(
        session=session,
        payment=payment,
        mapped=MappedStatus(PaymentStatus.SUCCEEDED, "proof_approved"),
        actor=actor.name,
        source=f"proof {proof.id}",
        captured_minor=payment.amount_minor,
        at=now,
    )
    return proof


@guarded(Permission.REVIEW_PROOF)
def reject_proof(*, session: Session, actor: Actor, proof_id: str, reason: str) -> ManualProof:
    """Reject a proof awaiting review, saying why; the payment stays open for another proof."""
    reason = (reason or "").strip()
    if not reason:
        raise ProofError("reason", "say why the proof is rejected (the payer may be asked again)")
    if len(reason) > 500:
        raise ProofError("reason", "at most 500 characters")
    proof, payment = _proof_for_review(session, actor, proof_id)
    now = utcnow()
    before = _review_snapshot(proof)
    proof.status = ProofStatus.REJECTED.value
    proof.reviewed_by = actor.name
    proof.reviewed_at = now
    proof.review_reason = reason
    session.add(proof)
    record_change(
        session=session,
        payment=payment,
        actor=actor.name,
        at=now,
        kind="proof",
        summary=f"Proof {proof.id} rejected by {actor.name}: {reason}",
        data={"proof_id": proof.id, "reason": reason},
        action="proof.rejected",
        entity_type="manual_proof",
        entity_id=proof.id,
        before=before,
        after=_review_snapshot(proof),
    )
    return proof


def proofs_awaiting_review(*, session: Session) -> list[ManualProof]:
    """Proofs waiting for a manager, oldest first."""
    return list(
        session.exec(
            select(ManualProof)
            .where(col(ManualProof.status) == ProofStatus.PENDING_REVIEW.value)
            .order_by(col(ManualProof.created_at), col(ManualProof.id))
        ).all()
    )


@dataclass(frozen=True, slots=True)
class ProofToReview:
    """One proof in the review queue, with what the reviewer compares it to (amounts formatted)."""

    id: str
    payment_id: str
    kind: str
    reference: str
    amount: str
    payment_amount: str
    amount_differs: bool
    paid_on: date | None
    notes: str | None
    recorded_by: str
    created_at: datetime
    has_file: bool
    file_name: str | None
    content_type: str | None
    duplicate_of_payment_id: str | None


@guarded(Permission.REVIEW_PROOF)
def review_queue(*, session: Session, actor: Actor) -> list[ProofToReview]:
    """The proofs awaiting review, oldest first, for someone who may review them."""
    rows = session.exec(
        select(ManualProof, Payment)
        .join(Payment, col(Payment.id) == col(ManualProof.payment_id))
        .where(col(ManualProof.status) == ProofStatus.PENDING_REVIEW.value)
        .order_by(col(ManualProof.created_at), col(ManualProof.id))
    ).all()
    return [
        ProofToReview(
            id=proof.id,
            payment_id=proof.payment_id,
            kind=proof.kind,
            reference=proof.reference,
            amount=format_amount(proof.amount_minor, proof.currency),
            payment_amount=format_amount(payment.amount_minor, payment.currency),
            amount_differs=(proof.amount_minor, proof.currency)
            != (payment.amount_minor, payment.currency),
            paid_on=proof.paid_on,
            notes=proof.notes,
            recorded_by=proof.recorded_by,
            created_at=proof.created_at,
            has_file=proof.file_sha256 is not None,
            file_name=proof.file_name,
            content_type=proof.content_type,
            duplicate_of_payment_id=proof.duplicate_of_payment_id,
        )
        for proof, payment in rows
    ]


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@guarded(Permission.REVIEW_PROOF)
def read_proof_file(
    *, session: Session, settings: Settings, actor: Actor, proof_id: str
) -> tuple[ProofFile, str] | None:
    """The uploaded file of one proof and its content type, for a reviewer's preview.

    Only a proof's own file is read, found by the proof id: the path comes from the stored hash,
    never from the caller, and the bytes must still hash to it. None when the proof has no file.
    """
    proof = session.get(ManualProof, proof_id)
    if proof is None:
        raise ProofError("proof", f"no proof {proof_id}")
    if proof.file_sha256 is None:
        return None
    path = proof_path(proof, settings)
    if path is None or not _SHA256_HEX.fullmatch(proof.file_sha256):
        raise ProofError("file", f"proof {proof.id} has an unusable file hash")
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ProofError("file", f"the file of proof {proof.id} is missing from storage") from None
    content_type = sniff_content_type(content)
    if hashlib.sha256(content).hexdigest() != proof.file_sha256 or content_type is None:
        raise ProofError("file", f"the stored file of proof {proof.id} does not match its hash")
    return ProofFile(proof.file_name or "proof", content), content_type


__all__ = [
    "ProofError",
    "ProofFile",
    "ProofToReview",
    "approve_proof",
    "proofs_awaiting_review",
    "read_proof_file",
    "record_proof",
    "record_proof_by_staff",
    "reject_proof",
    "review_queue",
    "sniff_content_type",
    "store_file",
]
