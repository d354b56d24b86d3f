"""Bank statement import: incoming credits matched to open manual payments.

A statement (CSV with a header row, or ISO 20022 CAMT.053 XML) is read into credit lines; debits,
zero amounts and entries not yet booked are skipped, and a line that cannot be read is reported
with its line number while the others are still imported. Amounts are major-unit decimals turned
into minor units with ``money.parse_amount`` (never through a float): ``1'234.50``, ``1 234,50``,
``1.234,50`` and ``1234,50`` are read; ``1,234`` means 1234 (a comma before exactly three digits is
a thousands separator unless the currency has three decimals, when it is refused as ambiguous).

Each credit gets a ``line_hash`` over (booking date, amount, currency, reference, counterparty, its
position among identical lines of the file), so importing the same statement again, or an
overlapping one, adds nothing for the lines already there.

Matching looks at open manual payments (provider ``manual``, status ``pending``). A line is an
exact match when the payment id appears in the reference and the amount and currency are equal: a
bank-transfer proof is recorded for it, by the importing person, and waits for a manager's
approval like any other proof. Any other line is kept unmatched with up to three nearest
candidates (same currency; same amount, or a reference close to the payment id or naming its order
reference), each with the reason it is near.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from difflib import SequenceMatcher
from typing import Any, Final
from xml.parsers import expat

from sqlmodel import Session, col, select

from payments_core.config import Settings
from payments_core.models import Payment, StatementLine, new_id, utcnow
from payments_core.money import (
    CURRENCY_EXPONENTS,
    MoneyError,
    format_amount,
    normalize_currency,
    parse_amount,
)
from payments_core.providers.base import PaymentMethod, ProviderName
from payments_core.services.audit import record_audit
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.services.proofs import ProofError, record_proof
from payments_core.status import PaymentStatus

MAX_STATEMENT_BYTES: Final = 20 * 1024 * 1024
MAX_CANDIDATES: Final = 3
MATCHED = "matched"
UNMATCHED = "unmatched"


class StatementError(ValueError):
    """The file as a whole cannot be read (nothing is imported)."""


class LineProblem(ValueError):
    """One line cannot be read; the others still are."""


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    payment_id: str
    amount_minor: int
    currency: str
    status: str
    reason: str

    @property
    def amount(self) -> str:
        """The amount for people, e.g. ``"1,234.50 CHF"``."""
        return format_amount(self.amount_minor, self.currency)

    def as_json(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ImportedLine:
    line: int  # line number in the file
    statement_line_id: int
    booked_on: date | None
    amount_minor: int
    currency: str
    reference: str | None
    counterparty: str | None
    status: str  # matched | unmatched
    payment_id: str | None = None
    proof_id: str | None = None
    candidates: tuple[Candidate, ...] = ()
    note: str | None = None  # why an exact-looking line was not matched

    @property
    def amount(self) -> str:
        """The credited amount for people, e.g. ``"1,234.50 CHF"``."""
        return format_amount(self.amount_minor, self.currency)


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    message: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    import_id: str
    format: str  # "csv" | "camt.053"
    credits: int  # credit lines read (new or already imported)
    imported: int  # new lines stored
    already_imported: int
    skipped: int  # debits, zero amounts, entries not booked
    matched: tuple[ImportedLine, ...]
    unmatched: tuple[ImportedLine, ...]
    errors: tuple[LineError, ...]


@dataclass(frozen=True, slots=True)
class _Credit:
    line: int
    booked_on: date | None
    amount_minor: int
    currency: str
    reference: str | None
    counterparty: str | None


@dataclass(slots=True)
class ParsedStatement:
    format: str
    credits: list[_Credit] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    skipped: int = 0


# --- amounts and dates --------------------------------------------------------------------------

_GROUP_MARKS: Final = str.maketrans(
    {"\u2019": "'", "\u02bc": "'", "`": "'", "\u00a0": "'", "\u202f": "'", "\u2009": "'", " ": "'"}
)
_AMOUNT_CHARS: Final = frozenset("0123456789.,'")
_CODE = re.compile(r"^([A-Za-z]{3})\s*|\s*([A-Za-z]{3})$")


def split_currency(text: str) -> tuple[str, str | None]:
    """``"CHF 1'234.50"`` -> (``"1'234.50"``, ``"CHF"``); no code -> (text, None)."""
    text = text.strip()
    match = _CODE.search(text)
    if match is None:
        return text, None
    code = match.group(1) or match.group(2)
    return (text[: match.start()] + text[match.end() :]).strip(), code.upper()


def parse_statement_amount(text: str, currency: str) -> int:
    """A statement amount in major units as signed minor units of ``currency``.

    Thousands may be grouped with ``'``, a space, ``,`` or ``.``; the decimal separator is ``.``
    or ``,``. A sign may lead or trail, or the amount may be in parentheses. Anything else, and
    any amount that is not a whole number of minor units, is refused (``MoneyError``).
    """
    shown = repr(text)
    s = text.strip()
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1].strip()
    if s[-1:] in {"-", "+"}:
        negative, s = s[-1] == "-", s[:-1].strip()
    elif s[:1] in {"-", "+"}:
        negative, s = s[0] == "-", s[1:].strip()
    s = s.translate(_GROUP_MARKS)
    if not s or not set(s) <= _AMOUNT_CHARS or not any(ch.isdigit() for ch in s):
        raise MoneyError(f"{shown} is not an amount")
    exponent = CURRENCY_EXPONENTS[normalize_currency(currency)]
    decimal: str | None = None
    if "." in s and "," in s:
        decimal = "." if s.rfind(".") > s.rfind(",") else ","
    elif "," in s:
        head, _, tail = s.rpartition(",")
        if s.count(",") == 1 and not (len(tail) == 3 and tail.isdigit()):
            decimal = ","  # 1234,50: cannot be a thousands separator
        elif s.count(",") == 1 and exponent >= 3 and head.replace("'", "").isdigit():
            raise MoneyError(
                f"{shown} is ambiguous for {currency} (a thousands separator or the decimal "
                "comma?): write the amount with a '.' decimal point"
            )
    elif "." in s and s.count(".") == 1:
        decimal = "."
    if decimal is not None and s.count(decimal) > 1:
        raise MoneyError(f"{shown} has more than one decimal separator")
    whole, _, fraction = s.partition(decimal) if decimal else (s, "", "")
    groups = set(whole) - set("0123456789")
    if len(groups) > 1:
        raise MoneyError(f"{shown} mixes thousands separators")
    if groups:
        whole = whole.replace(groups.pop(), ",")
    canonical = whole + (f".{fraction}" if decimal else "")
    try:
        minor = parse_amount(canonical, currency, allow_negative=True, allow_zero=True)
    except MoneyError as exc:
        raise MoneyError(f"amount {shown}: {exc}") from None
    return -minor if negative else minor


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ].*)?$")
_DOTTED_DATE = re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})$")
_SLASHED_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def parse_statement_date(text: str, slash_order: str | None = None) -> date:
    """ISO (2026-03-02), dotted day-first (02.03.2026), or slashed when the file shows which
    part is the day (``slash_order`` "dmy" or "mdy")."""
    s = text.strip()
    try:
        if match := _ISO_DATE.match(s):
            return date(int(match[1]), int(match[2]), int(match[3]))
        if match := _DOTTED_DATE.match(s):
            year = int(match[3]) + (2000 if len(match[3]) == 2 else 0)
            return date(year, int(match[2]), int(match[1]))
        if match := _SLASHED_DATE.match(s):
            first, second = int(match[1]), int(match[2])
            if slash_order == "dmy":
                return date(int(match[3]), second, first)
            if slash_order == "mdy":
                return date(int(match[3]), first, second)
            raise LineProblem(
                f"date {s!r} is ambiguous (day/month or month/day?): use YYYY-MM-DD or DD.MM.YYYY"
            )
    except ValueError as exc:
        if isinstance(exc, LineProblem):
            raise
        raise LineProblem(f"date {s!r} does not exist ({exc})") from None
    raise LineProblem(f"date {s!r} is not a date (use YYYY-MM-DD or DD.MM.YYYY)")


def _slash_order(values: list[str]) -> str | None:
    """Which slashed-date order a column uses, from the dates whose day is above 12."""
    day_first = month_first = False
    for value in values:
        if match := _SLASHED_DATE.match(value.strip()):
            day_first |= int(match[1]) > 12
            month_first |= int(match[2]) > 12
    if day_first and not month_first:
        return "dmy"
    if month_first and not day_first:
        return "mdy"
    return None


def _clean(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    return text[:limit] or None


# --- CSV ----------------------------------------------------------------------------------------

_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "date": (
        "booking date", "booked on", "booked", "date", "transaction date", "entry date",
        "value date", "valuta", "buchungsdatum", "datum", "date comptable",
    ),
    "amount": ("amount", "credit", "credit amount", "amount credited", "betrag", "gutschrift",
               "montant", "crédit", "credit amount chf"),
    "debit": ("debit", "debit amount", "belastung", "débit"),
    "currency": ("currency", "ccy", "currency code", "währung", "waehrung", "devise"),
    "reference": (
        "reference", "remittance", "remittance information", "payment reference", "description",
        "details", "purpose", "memo", "communication", "mitteilung", "verwendungszweck",
        "zahlungszweck", "buchungstext", "référence", "libellé",
    ),
    "counterparty": (
        "counterparty", "counterparty name", "name", "payer", "payer name", "debtor",
        "debtor name", "sender", "from", "auftraggeber", "zahlungspflichtiger", "donneur d'ordre",
    ),
    "direction": ("credit/debit", "cdtdbtind", "credit debit indicator", "direction", "type",
                  "soll/haben"),
}  # fmt: skip
_CREDIT_WORDS: Final = frozenset({"crdt", "c", "cr", "credit", "haben", "h"})
_DEBIT_WORDS: Final = frozenset({"dbit", "d", "dr", "debit", "soll", "s"})


def _header_key(name: str) -> str:
    return " ".join(name.strip().strip("\ufeff").lower().replace("_", " ").split())


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252", errors="replace")  # older Swiss/German bank exports


def _read_csv(content: bytes) -> ParsedStatement:
    text = _decode(content)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise StatementError("the file is empty or its first line (the header row) is blank")
    first = lines[0]
    delimiter = max((";", ",", "\t", "|"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [_header_key(name) for name in next(reader)]
    columns: dict[str, int] = {}
    for role, names in _COLUMNS.items():
        for name in names:  # the first listed name found wins (booking date over value date)
            if name in header:
                columns[role] = header.index(name)
                break
    if "amount" not in columns:
        raise StatementError(
            f"no amount column in the header ({', '.join(header)}); expected one of: "
            + ", ".join(_COLUMNS["amount"])
        )
    rows: list[tuple[int, list[str]]] = []
    for row in reader:
        if any(cell.strip() for cell in row):
            rows.append((reader.line_num, row))
    parsed = ParsedStatement(format="csv")
    order = None
    if "date" in columns:
        order = _slash_order([_cell(row, columns["date"]) for _, row in rows])
    for line, row in rows:
        try:
            credit = _csv_credit(line, row, columns, order)
        except (LineProblem, MoneyError) as exc:
            parsed.errors.append(LineError(line, str(exc)))
            continue
        if credit is None:
            parsed.skipped += 1
        else:
            parsed.credits.append(credit)
    return parsed


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _csv_credit(
    line: int, row: list[str], columns: dict[str, int], slash_order: str | None
) -> _Credit | None:
    raw_amount = _cell(row, columns["amount"])
    if not raw_amount:
        if _cell(row, columns.get("debit")):
            return None  # a debit in a separate column
        raise LineProblem("the amount is empty")
    number, code_in_amount = split_currency(raw_amount)
    code = _cell(row, columns.get("currency")) or code_in_amount
    if not code:
        raise LineProblem("no currency (add a currency column or write it with the amount)")
    currency = normalize_currency(code)
    if code_in_amount and normalize_currency(code_in_amount) != currency:
        raise LineProblem(f"the amount is in {code_in_amount} but the currency column says {code}")
    amount = parse_statement_amount(number, currency)
    direction = _cell(row, columns.get("direction")).lower()
    if direction in _DEBIT_WORDS:
        return None
    if direction and direction not in _CREDIT_WORDS:
        raise LineProblem(f"unknown credit/debit indicator {direction!r}")
    if amount <= 0:
        return None
    raw_date = _cell(row, columns.get("date"))
    booked_on = parse_statement_date(raw_date, slash_order) if raw_date else None
    return _Credit(
        line=line,
        booked_on=booked_on,
        amount_minor=amount,
        currency=currency,
        reference=_clean(_cell(row, columns.get("reference")), 500),
        counterparty=_clean(_cell(row, columns.get("counterparty")), 200),
    )


# --- CAMT.053 -----------------------------------------------------------------------------------


class _Refused(Exception):
    pass


def _scan_xml(content: bytes) -> list[int]:
    """Refuse DTDs and entity declarations (no billion laughs, no external entities), and note
    the line of every ``Ntry`` in document order (ElementTree keeps no line numbers)."""
    parser = expat.ParserCreate(namespace_separator=" ")
    lines: list[int] = []

    def refuse(*_: object) -> None:
        raise _Refused("the XML declares a DTD or entities, which a statement never needs")

    def start(name: str, _attrs: object) -> None:
        if name.rpartition(" ")[2] == "Ntry":
            lines.append(parser.CurrentLineNumber)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    try:
        parser.Parse(content, True)
    except _Refused as exc:
        raise StatementError(str(exc)) from None
    except expat.ExpatError as exc:
        raise StatementError(f"the XML is not well-formed: {exc}") from None
    return lines


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if _local(child.tag) == name)


def _find(element: ET.Element | None, *path: str) -> ET.Element | None:
    for name in path:
        if element is None:
            return None
        element = next(_children(element, name), None)
    return element


def _text(element: ET.Element | None, *path: str) -> str | None:
    found = _find(element, *path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _read_camt(content: bytes) -> ParsedStatement:
    lines = _scan_xml(content)
    root = ET.fromstring(content)  # noqa: S314 (checked by _scan_xml: no DTD, no entities)
    statement_root = _find(root, "BkToCstmrStmt")
    if statement_root is None:
        raise StatementError(
            f"not a CAMT.053 statement: no BkToCstmrStmt under <{_local(root.tag)}>"
        )
    parsed = ParsedStatement(format="camt.053")
    entries = [
        entry
        for statement in _children(statement_root, "Stmt")
        for entry in _children(statement, "Ntry")
    ]
    for index, entry in enumerate(entries):
        line = lines[index] if index < len(lines) else 0
        try:
            credits = _camt_credits(line, entry)
        except (LineProblem, MoneyError) as exc:
            parsed.errors.append(LineError(line, f"entry {index + 1}: {exc}"))
            continue
        if not credits:
            parsed.skipped += 1
        parsed.credits.extend(credits)
    return parsed


def _camt_amount(element: ET.Element | None, what: str) -> tuple[int, str]:
    if element is None or not (element.text or "").strip():
        raise LineProblem(f"{what} has no Amt")
    code = element.get("Ccy")
    if not code:
        raise LineProblem(f"{what} Amt has no Ccy")
    currency = normalize_currency(code)
    text = (element.text or "").strip()
    # XML decimals have no grouping; trailing zeros beyond the currency's exponent are exact.
    if "." in text:
        whole, _, fraction = text.partition(".")
        text = f"{whole}.{fraction.rstrip('0')}" if fraction.rstrip("0") else whole
    return parse_amount(text, currency, allow_zero=True), currency


def _camt_reference(details: ET.Element | None, entry: ET.Element) -> str | None:
    parts: list[str] = []
    remittance = _find(details, "RmtInf")
    if remittance is not None:
        for structured in _children(remittance, "Strd"):
            if ref := _text(structured, "CdtrRefInf", "Ref"):
                parts.append(ref)
        parts.extend((u.text or "").strip() for u in _children(remittance, "Ustrd") if u.text)
    if not parts:
        for fallback in (_text(details, "AddtlTxInf"), _text(entry, "AddtlNtryInf")):
            if fallback:
                parts.append(fallback)
                break
    return _clean(" ".join(dict.fromkeys(p for p in parts if p)), 500)


def _camt_counterparty(details: ET.Element | None) -> str | None:
    name = _text(details, "RltdPties", "Dbtr", "Nm") or _text(
        details, "RltdPties", "Dbtr", "Pty", "Nm"
    )
    return _clean(name, 200)


def _camt_credits(line: int, entry: ET.Element) -> list[_Credit]:
    indicator = _text(entry, "CdtDbtInd")
    if indicator == "DBIT":
        return []
    if indicator != "CRDT":
        raise LineProblem(f"CdtDbtInd is {indicator!r}, expected CRDT or DBIT")
    status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
    if status is not None and status != "BOOK":
        return []  # pending or information only: it comes again once booked
    amount, currency = _camt_amount(_find(entry, "Amt"), "the entry")
    raw_date = (
        _text(entry, "BookgDt", "Dt")
        or _text(entry, "BookgDt", "DtTm")
        or _text(entry, "ValDt", "Dt")
        or _text(entry, "ValDt", "DtTm")
    )
    booked_on = parse_statement_date(raw_date) if raw_date else None
    details = [tx for batch in _children(entry, "NtryDtls") for tx in _children(batch, "TxDtls")]
    if len(details) <= 1:
        if amount <= 0:
            return []
        detail = details[0] if details else None
        return [
            _Credit(
                line,
                booked_on,
                amount,
                currency,
                _camt_reference(detail, entry),
                _camt_counterparty(detail),
            )
        ]
    # A batch booking: one credit per transaction, each with its own amount.
    credits = []
    for position, detail in enumerate(details, 1):
        amount_element = _find(detail, "AmtDtls", "TxAmt", "Amt")
        if amount_element is None:  # an Element with no children is falsy: no `or` here
            amount_element = _find(detail, "Amt")
        tx_amount, tx_currency = _camt_amount(
            amount_element, f"transaction {position} of the batch"
        )
        if tx_currency != currency:
            raise LineProblem(
                f"transaction {position} is in {tx_currency}, the entry in {currency}"
            )
        if tx_amount > 0:
            credits.append(
                _Credit(
                    line,
                    booked_on,
                    tx_amount,
                    currency,
                    _camt_reference(detail, entry),
                    _camt_counterparty(detail),
                )
            )
    total = sum(c.amount_minor for c in credits)
    if total != amount:
        raise LineProblem(
            f"the batch's transactions add up to {format_amount(total, currency)}, "
            f"the entry says {format_amount(amount, currency)}"
        )
    return credits


def read_statement(content: bytes, filename: str = "") -> ParsedStatement:
    if not content.strip():
        raise StatementError("the file is empty")
    if len(content) > MAX_STATEMENT_BYTES:
        raise StatementError(f"the file is larger than {MAX_STATEMENT_BYTES:,} bytes")
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return _read_camt(content)
    if filename.lower().endswith(".xml"):
        raise StatementError(f"{filename} is named .xml but does not contain XML")
    return _read_csv(content)


# --- matching -----------------------------------------------------------------------------------

_ID_IN_TEXT = re.compile(r"(?=PAY([0-9A-HJKMNP-TV-Z]{26}))")


def _squash(text: str | None) -> str:
    return re.sub(r"[^0-9A-Z]", "", (text or "").upper())


def _grams(text: str, size: int = 4) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _id_similarity(payment_id: str, reference: str) -> float:
    """How much of the payment id appears in order in the reference (blocks of 3+ characters)."""
    target = _squash(payment_id)
    if not target or not reference or not (_grams(target) & _grams(reference)):
        return 0.0
    blocks = SequenceMatcher(None, target, reference, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks if block.size >= 3) / len(target)


class _Matcher:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._open: dict[str, list[Payment]] = {}
        self.claimed: dict[str, int] = {}  # payment id -> statement line that matched it

    def open_payments(self, currency: str) -> list[Payment]:
        if currency not in self._open:
            self._open[currency] = list(
                self.session.exec(
                    select(Payment)
                    .where(
                        col(Payment.provider) == ProviderName.MANUAL.value,
                        col(Payment.status) == PaymentStatus.PENDING.value,
                        col(Payment.currency) == currency,
                    )
                    .order_by(col(Payment.created_at), col(Payment.id))
                )
            )
        return self._open[currency]

    def named(self, reference: str | None) -> list[Payment]:
        """Payments whose id appears in the reference (any provider or status)."""
        ids = list(dict.fromkeys(f"pay_{m}" for m in _ID_IN_TEXT.findall(_squash(reference))))
        if not ids:
            return []
        found = {
            p.id: p for p in self.session.exec(select(Payment).where(col(Payment.id).in_(ids)))
        }
        return [found[i] for i in ids if i in found]

    def matched_line(self, payment_id: str) -> StatementLine | None:
        return self.session.exec(
            select(StatementLine).where(
                col(StatementLine.payment_id) == payment_id,
                col(StatementLine.status) == MATCHED,
            )
        ).first()

    def candidates(self, credit: _Credit, named: list[Payment]) -> list[Candidate]:
        scored: list[tuple[float, int, Candidate]] = []
        seen: set[str] = set()
        for payment in named:
            seen.add(payment.id)
            scored.append((100.0, 0, _candidate(payment, _named_reason(payment, credit))))
        reference = _squash(credit.reference)
        for payment in self.open_payments(credit.currency):
            if payment.id in seen:
                continue
            reasons = []
            score = 0.0
            same_amount = payment.amount_minor == credit.amount_minor
            if same_amount:
                reasons.append("same amount")
                score += 1
            similarity = _id_similarity(payment.id, reference)
            if similarity >= 0.7:
                reasons.append(f"reference resembles the payment id ({similarity:.0%} of it)")
                score += 1 + similarity
            host = _squash(payment.host_reference)
            if len(host) >= 4 and host in reference:
                reasons.append(f"reference contains the order reference {payment.host_reference}")
                score += 2
            if not reasons:
                continue
            if not same_amount:
                reasons.append(
                    f"but the payment is {format_amount(payment.amount_minor, payment.currency)}"
                )
            days = (
                abs((payment.created_at.date() - credit.booked_on).days) if credit.booked_on else 0
            )
            scored.append((score, days, _candidate(payment, "; ".join(reasons))))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [candidate for _, _, candidate in scored[:MAX_CANDIDATES]]


def _candidate(payment: Payment, reason: str) -> Candidate:
    return Candidate(payment.id, payment.amount_minor, payment.currency, payment.status, reason)


def _named_reason(payment: Payment, credit: _Credit) -> str:
    if payment.provider != ProviderName.MANUAL.value:
        return f"the reference names this payment, but it is a {payment.provider} payment"
    if payment.status != PaymentStatus.PENDING.value:
        return f"the reference names this payment, but it is {payment.status}"
    if payment.currency != credit.currency:
        return f"the reference names this payment, but it is in {payment.currency}"
    if payment.amount_minor != credit.amount_minor:
        return (
            "the reference names this payment, but it is "
            f"{format_amount(payment.amount_minor, payment.currency)}, the credit "
            f"{format_amount(credit.amount_minor, credit.currency)}"
        )
    return "the reference names this payment"


def line_hash(credit: _Credit, occurrence: int) -> str:
    key = [
        credit.booked_on.isoformat() if credit.booked_on else "",
        credit.amount_minor,
        credit.currency,
        credit.reference or "",
        credit.counterparty or "",
        occurrence,
    ]
    return hashlib.sha256(json.dumps(key, ensure_ascii=False).encode("utf-8")).hexdigest()


# --- the service --------------------------------------------------------------------------------


@guarded(Permission.IMPORT_STATEMENT)
def import_statement(
    *, session: Session, settings: Settings, actor: Actor, content: bytes, filename: str
) -> ImportResult:
    """Read the statement, store its new credit lines, record proofs for exact matches.

    Raises ``StatementError`` when the file cannot be read at all; bad lines are reported in
    ``errors`` while the others are imported.
    """
    parsed = read_statement(content, filename)
    now = utcnow()
    import_id = new_id("stm", at=now)
    hashes: list[str] = []
    seen: Counter[tuple[Any, ...]] = Counter()
    for credit in parsed.credits:
        identity = (
            credit.booked_on,
            credit.amount_minor,
            credit.currency,
            credit.reference,
            credit.counterparty,
        )
        hashes.append(line_hash(credit, seen[identity]))
        seen[identity] += 1
    existing = (
        set(
            session.exec(
                select(StatementLine.line_hash).where(col(StatementLine.line_hash).in_(hashes))
            )
        )
        if hashes
        else set()
    )

    matcher = _Matcher(session)
    matched: list[ImportedLine] = []
    unmatched: list[ImportedLine] = []
    already = 0
    for credit, digest in zip(parsed.credits, hashes, strict=True):
        if digest in existing:
            already += 1
            continue
        existing.add(digest)
        imported = _import_line(
            session, settings, actor, matcher, credit, digest, import_id, filename, now
        )
        (matched if imported.status == MATCHED else unmatched).append(imported)

    record_audit(
        session=session,
        actor=actor.name,
        action="statement.imported",
        entity_type="statement_import",
        entity_id=import_id,
        after={
            "filename": filename[:255],
            "format": parsed.format,
            "sha256": hashlib.sha256(content).hexdigest(),
            "credits": len(parsed.credits),
            "imported": len(matched) + len(unmatched),
            "already_imported": already,
            "matched": len(matched),
            "unmatched": len(unmatched),
            "errors": len(parsed.errors),
        },
        at=now,
    )
    return ImportResult(
        import_id=import_id,
        format=parsed.format,
        credits=len(parsed.credits),
        imported=len(matched) + len(unmatched),
        already_imported=already,
        skipped=parsed.skipped,
        matched=tuple(matched),
        unmatched=tuple(unmatched),
        errors=tuple(parsed.errors),
    )


def _import_line(
    session: Session,
    settings: Settings,
    actor: Actor,
    matcher: _Matcher,
    credit: _Credit,
    digest: str,
    import_id: str,
    filename: str,
    now: datetime,
) -> ImportedLine:
    named = matcher.named(credit.reference)
    exact = next(
        (
            p
            for p in named
            if p.provider == ProviderName.MANUAL.value
            and p.status == PaymentStatus.PENDING.value
            and p.currency == credit.currency
            and p.amount_minor == credit.amount_minor
        ),
        None,
    )
    note = None
    proof_id = None
    if exact is not None:
        earlier = matcher.claimed.get(exact.id)
        previous = matcher.matched_line(exact.id) if earlier is None else None
        if earlier is not None or previous is not None:
            where = f"line {earlier} of this file" if earlier else "an earlier statement"
            note = f"{exact.id} was already matched by {where}: a second transfer?"
        else:
            try:
                proof = record_proof(
                    session=session,
                    settings=settings,
                    payment_id=exact.id,
                    reference=(credit.reference or exact.id)[:255],
                    amount_minor=credit.amount_minor,
                    actor=actor.name,
                    kind=PaymentMethod.BANK_TRANSFER.value,
                    currency=credit.currency,
                    paid_on=credit.booked_on
                    if credit.booked_on and credit.booked_on <= now.date()
                    else None,
                    notes=(
                        f"Bank statement {filename[:200]} line {credit.line}"
                        + (f", from {credit.counterparty}" if credit.counterparty else "")
                    ),
                )
            except ProofError as exc:
                note = f"{exact.id}: {exc}"
            else:
                proof_id = proof.id
                matcher.claimed[exact.id] = credit.line
    candidates: tuple[Candidate, ...] = ()
    if proof_id is None:
        candidates = tuple(
            Candidate(c.payment_id, c.amount_minor, c.currency, c.status, note)
            if note and exact is not None and c.payment_id == exact.id
            else c
            for c in matcher.candidates(credit, named)
        )
    row = StatementLine(
        import_id=import_id,
        line_hash=digest,
        booked_on=credit.booked_on,
        amount_minor=credit.amount_minor,
        currency=credit.currency,
        reference=credit.reference,
        counterparty=credit.counterparty,
        status=MATCHED if proof_id else UNMATCHED,
        payment_id=exact.id if proof_id and exact else None,
        proof_id=proof_id,
        candidates=[c.as_json() for c in candidates],
        imported_by=actor.name,
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return ImportedLine(
        line=credit.line,
        statement_line_id=row.id,
        booked_on=credit.booked_on,
        amount_minor=credit.amount_minor,
        currency=credit.currency,
        reference=credit.reference,
        counterparty=credit.counterparty,
        status=row.status,
        payment_id=row.payment_id,
        proof_id=proof_id,
        candidates=candidates,
        note=note,
    )


__all__ = [
    "Candidate",
    "ImportResult",
    "ImportedLine",
    "LineError",
    "StatementError",
    "import_statement",
    "parse_statement_amount",
    "parse_statement_date",
    "read_statement",
]
