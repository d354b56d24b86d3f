"""SQLModel tables, one module per area, re-exported here so `SQLModel.metadata` sees them all."""

from payments_core.models._types import UTCDateTime, new_id, utcnow
from payments_core.models.analytics import PaymentDayStat
from payments_core.models.audit import GENESIS_HASH, AuditEntry
from payments_core.models.disputes import Dispute
from payments_core.models.idempotency import IdempotencyRecord
from payments_core.models.manual import ManualProof, StatementLine
from payments_core.models.payments import Payment, PaymentBase, PaymentEvent, PaymentPublic
from payments_core.models.refunds import Refund
from payments_core.models.users import ApiKey, AppUser, Role, UserSession
from payments_core.models.webhooks import InboxStatus, WebhookEvent, WebhookRejection

__all__ = [
    "GENESIS_HASH",
    "ApiKey",
    "AppUser",
    "AuditEntry",
    "Dispute",
    "IdempotencyRecord",
    "InboxStatus",
    "ManualProof",
    "Payment",
    "PaymentBase",
    "PaymentDayStat",
    "PaymentEvent",
    "PaymentPublic",
    "Refund",
    "Role",
    "StatementLine",
    "UTCDateTime",
    "UserSession",
    "WebhookEvent",
    "WebhookRejection",
    "new_id",
    "utcnow",
]
