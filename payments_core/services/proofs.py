"""Proofs of manual and offline payments: recorded (by a customer through the host API, or by
finance staff), stored under ``var/`` by content hash, checked for duplicates, then reviewed.

A file is accepted by what it is, not by its name: PNG, JPEG or PDF by their leading bytes, up to
``PROOF_MAX_BYTES``. A proof whose file, or whose reference and amount, was already used on another
payment is flagged with that payment, so the reviewer sees it before approving.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from sqlmodel import Session, col, select

from payments_core.config import Settings
from payments_core.models import ManualProof, new_id, utcnow
from payments_core.models.payments import OPEN_STATUSES
from payments_core.providers.base import PaymentMethod, ProviderName
from payments_core.services.payments import lock_payment, record_change

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


def store_file(content: bytes, settings: Settings) -> tuple[str, Path]:
    """Write ``content`` under var/proofs by its SHA-256 (once: the same bytes share one file)."""
    digest = hashlib.sha256(content).hexdigest()
    folder = settings.var_dir / "proofs" / digest[:2]
    path = folder / digest
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
    return settings.var_dir / "proofs" / proof.file_sha256[:2] / proof.file_sha256


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
        warning += f"; amount {amount_minor} differs from the payment's {payment.amount_minor}"
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


__all__ = ["ProofError", "ProofFile", "record_proof", "sniff_content_type", "store_file"]
