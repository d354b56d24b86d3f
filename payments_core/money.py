"""Money: exact amounts as integer minor units of an ISO 4217 currency.

Design overview
===============

An amount is always an ``int`` count of the currency's *minor units* (cents, rappen, fils, ...)
together with an ISO 4217 alphabetic code. ``Money(1234, "CHF")`` is CHF 12.34,
``Money(1500, "JPY")`` is JPY 1,500 (no minor unit), ``Money(1234, "KWD")`` is KWD 1.234.

Rules
-----

* **No floats, anywhere.** Floats are rejected with ``TypeError`` wherever an amount enters
  (``Money``, ``format_amount``, multiplication, ``parse_amount`` ...). User text is parsed with
  integer string arithmetic; ``decimal.Decimal`` values are converted through their exact digit
  tuple, never through a ``decimal`` context, so nothing is ever rounded.
* **Never round, never truncate.** Input with more decimal places than the currency has is an
  error (``InvalidAmountError``), not something to fix silently.
* **Currencies are checked.** Codes are normalised (stripped, upper-cased, ASCII only) and must
  be in ``CURRENCY_EXPONENTS`` (active ISO 4217 List One codes that have a minor unit);
  anything else raises ``UnknownCurrencyError``.
* **No cross-currency arithmetic.** ``+``, ``-`` and ordering comparisons between different
  currencies raise ``CurrencyMismatchError``. ``==`` is plain field equality and never raises.
* **Splitting never loses a minor unit.** ``Money.allocate`` uses the largest-remainder method;
  the parts always add up to the original amount.

Accepted text (``parse_amount``), strict on purpose
---------------------------------------------------

``[sign] integer-part [ "." [fraction] ]`` or ``[sign] "." fraction``, with surrounding whitespace
allowed, where

* *sign* is an optional single ``+`` or ``-`` directly before the digits (``-`` only when
  ``allow_negative=True``);
* *integer-part* is either plain ASCII digits (``1234``), or digits grouped in threes with ONE
  kind of thousands separator: ``,``, ``_`` or a single ASCII space (``1,234,567``, ``1_234``,
  ``1 234``). The first group has 1 to 3 digits and does not start with ``0``; every other group
  has exactly 3 digits. ``1,23.4``, ``12,34``, ``1,234_567`` and ``1,,234`` are rejected;
* the decimal separator is always ``.`` and appears at most once; the fraction holds ASCII
  digits only and at most as many as the currency's exponent (``1.230`` is rejected for CHF even
  though the trailing digit is 0: in many locales it means one thousand two hundred thirty);
* no exponent notation (``1e3``), no ``NaN``/``Infinity``, no non-ASCII digits, no text longer
  than ``MAX_AMOUNT_TEXT_LENGTH`` characters.

``format_amount`` writes ``,`` thousands separators and a ``.`` decimal point, so its output
always parses back to the same amount.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final

__all__ = [
    "CURRENCY_EXPONENTS",
    "MAX_AMOUNT_TEXT_LENGTH",
    "CurrencyMismatchError",
    "InvalidAmountError",
    "Money",
    "MoneyError",
    "UnknownCurrencyError",
    "exponent",
    "format_amount",
    "minor_from_decimal",
    "normalize_currency",
    "parse_amount",
    "sum_money",
    "to_major_decimal",
]

# Source: ISO 4217 List One (current currency & funds) as amended up to No. 180 (BGN withdrawn
# 2026-01-01); only codes with a numeric minor unit (no N.A. codes such as XAU, XDR, XTS, XXX).
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {
        "AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2,
        "AZN": 2, "BAM": 2, "BBD": 2, "BDT": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2,
        "BOB": 2, "BOV": 2, "BRL": 2, "BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2,
        "CAD": 2, "CDF": 2, "CHE": 2, "CHF": 2, "CHW": 2, "CLF": 4, "CLP": 0, "CNY": 2,
        "COP": 2, "COU": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2,
        "DOP": 2, "DZD": 2, "EGP": 2, "ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2,
        "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2, "GNF": 0, "GTQ": 2, "GYD": 2,
        "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2, "IQD": 3,
        "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2,
        "KMF": 0, "KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2,
        "LKR": 2, "LRD": 2, "LSL": 2, "LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2,
        "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2, "MVR": 2, "MWK": 2, "MXN": 2,
        "MXV": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2,
        "NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2,
        "PYG": 0, "QAR": 2, "RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2,
        "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2, "SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2,
        "SSP": 2, "STN": 2, "SVC": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2, "TMT": 2,
        "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0,
        "USD": 2, "USN": 2, "UYI": 0, "UYU": 2, "UYW": 4, "UZS": 2, "VED": 2, "VES": 2,
        "VND": 0, "VUV": 0, "WST": 2, "XAD": 2, "XAF": 0, "XCD": 2, "XCG": 2, "XOF": 0,
        "XPF": 0, "YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
    }
)  # fmt: skip

MAX_AMOUNT_TEXT_LENGTH: Final = 100
"""Longest amount text ``parse_amount`` looks at (after stripping whitespace)."""

_MAX_DECIMAL_DIGITS: Final = 100  # bound on digits produced from a Decimal (guards 1E+999999)

_ASCII_DIGITS: Final = frozenset("0123456789")
_GROUP_SEPARATORS: Final = ",_ "
_PLAIN_INT = re.compile(r"[0-9]*", re.ASCII)
_GROUPED_INT = re.compile(r"[1-9][0-9]{0,2}([,_ ])[0-9]{3}(?:\1[0-9]{3})*", re.ASCII)
_FRACTION = re.compile(r"[0-9]*", re.ASCII)
_NON_FINITE = frozenset({"nan", "snan", "qnan", "inf", "infinity"})
_NUMBERISH = frozenset("0123456789.,_ +-eE")


class MoneyError(ValueError):
    """Base class of every money validation error."""


class UnknownCurrencyError(MoneyError):
    """The currency code is not an active ISO 4217 code with a minor unit."""


class InvalidAmountError(MoneyError):
    """An amount (text or Decimal) is malformed or not allowed here."""


class CurrencyMismatchError(MoneyError):
    """Arithmetic or ordering between amounts of different currencies."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def normalize_currency(code: str) -> str:
    """Return the canonical code (``" chf "`` -> ``"CHF"``) or raise ``UnknownCurrencyError``."""
    if not isinstance(code, str):
        raise TypeError(f"currency code must be a str, got {type(code).__name__}")
    cleaned = code.strip()
    # isascii() first: str.upper() maps some non-ASCII letters to ASCII ones (U+0131 dotless i
    # becomes 'I', U+017F long s becomes 'S'), which must not sneak in as a valid code.
    normalized = cleaned.upper() if cleaned.isascii() else cleaned
    if normalized not in CURRENCY_EXPONENTS:
        raise UnknownCurrencyError(
            f"unknown currency {code!r}: expected an active ISO 4217 code such as 'CHF' or 'EUR'"
        )
    return normalized


def exponent(currency: str) -> int:
    """Number of decimal places (minor-unit exponent) of ``currency``: CHF 2, JPY 0, KWD 3."""
    return CURRENCY_EXPONENTS[normalize_currency(currency)]


def _too_many_decimals(currency: str, exp: int, shown: str, places: int) -> InvalidAmountError:
    if exp == 0:
        return InvalidAmountError(
            f"{currency} has no minor unit; {shown} has {_plural(places, 'decimal place')}"
        )
    return InvalidAmountError(
        f"{currency} allows at most {_plural(exp, 'decimal place')}, got {shown}"
    )


def _check_policy(
    minor: int, negative: bool, shown: str, *, allow_negative: bool, allow_zero: bool
) -> None:
    if negative and not allow_negative:
        raise InvalidAmountError(f"negative amounts are not allowed here, got {shown}")
    if minor == 0 and not allow_zero:
        raise InvalidAmountError(f"the amount must not be zero, got {shown}")


def _invalid(shown: str) -> InvalidAmountError:
    return InvalidAmountError(
        f"{shown} is not a valid amount; expected digits with an optional '.' decimal "
        "separator, e.g. '1234.50' or '1,234.50'"
    )


def parse_amount(
    text: str, currency: str, *, allow_negative: bool = False, allow_zero: bool = False
) -> int:
    """Parse user input in major units (``"12.34"``) into minor units of ``currency`` (1234).

    The accepted syntax is described in the module docstring. Raises ``InvalidAmountError``
    (never rounds), ``UnknownCurrencyError`` or, for a non-``str`` argument, ``TypeError``.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"parse_amount expects the amount as str, got {type(text).__name__}"
            " (floats are never accepted; use minor_from_decimal for Decimal values)"
        )
    code = normalize_currency(currency)
    exp = CURRENCY_EXPONENTS[code]
    shown = repr(text)
    s = text.strip()
    if not s:
        raise InvalidAmountError(f"the amount is empty ({shown}); expected a number like '12.34'")
    if len(s) > MAX_AMOUNT_TEXT_LENGTH:
        raise InvalidAmountError(
            f"the amount text is too long ({len(s)} characters, at most"
            f" {MAX_AMOUNT_TEXT_LENGTH}): {text[:20]!r}..."
        )
    if any(ch.isdigit() and ch not in _ASCII_DIGITS for ch in s):
        raise InvalidAmountError(f"only ASCII digits 0-9 are accepted, got {shown}")

    negative = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    if body[:1] in ("+", "-"):
        raise InvalidAmountError(f"{shown} has more than one sign")
    if body != body.lstrip():
        raise InvalidAmountError(f"{shown} has whitespace between the sign and the number")
    if body.lower() in _NON_FINITE:
        raise InvalidAmountError(f"{shown} is not a finite number")
    if (
        ("e" in body or "E" in body)
        and set(body) <= _NUMBERISH
        and not _ASCII_DIGITS.isdisjoint(body)
    ):
        raise InvalidAmountError(
            f"exponent notation is not accepted, got {shown}; write the amount out in full"
        )
    if body.count(".") > 1:
        raise InvalidAmountError(f"{shown} has more than one '.' decimal separator")

    int_part, _, fraction = body.partition(".")
    if not int_part and not fraction:
        raise _invalid(shown)
    if not _FRACTION.fullmatch(fraction):
        if any(sep in fraction for sep in _GROUP_SEPARATORS):
            raise InvalidAmountError(
                f"{shown}: thousands separators are only allowed before the decimal point"
            )
        raise _invalid(shown)
    if _PLAIN_INT.fullmatch(int_part):
        digits = int_part
    elif (grouped := _GROUPED_INT.fullmatch(int_part)) is not None:
        digits = int_part.replace(grouped.group(1), "")
    elif set(int_part) <= _ASCII_DIGITS | set(_GROUP_SEPARATORS):
        raise InvalidAmountError(
            f"{shown} has misplaced thousands separators: use one kind (',', '_' or a space)"
            " between groups of exactly 3 digits, e.g. '1,234.50'; the decimal separator is '.'"
        )
    else:
        raise _invalid(shown)

    if len(fraction) > exp:
        raise _too_many_decimals(code, exp, shown, len(fraction))
    minor = int((digits + fraction.ljust(exp, "0")) or "0")
    _check_policy(minor, negative, shown, allow_negative=allow_negative, allow_zero=allow_zero)
    return -minor if negative else minor


def _require_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        hint = " (floats are never used for money)" if isinstance(value, float) else ""
        raise TypeError(
            f"{what} must be an int count of minor units, got {type(value).__name__}"
            f" {value!r}{hint}"
        )
    return int(value)


def minor_from_decimal(value: Decimal, currency: str) -> int:
    """Convert an exact major-unit ``Decimal`` into minor units: ``Decimal("12.34")`` CHF -> 1234.

    Same rule as ``parse_amount``: a value that is not a whole number of minor units raises
    ``InvalidAmountError``; nothing is rounded. The check is on the *value*: trailing zeros of
    the Decimal's representation (``Decimal("12.340")``, as read from a NUMERIC(p, 3) column) are
    not significant and are accepted. Sign and zero are not restricted here (this is a
    conversion, not user-input validation). The conversion uses the digit tuple, never a
    ``decimal`` context, so context precision and rounding modes cannot affect the result.
    """
    if not isinstance(value, Decimal):
        raise TypeError(
            f"minor_from_decimal expects a decimal.Decimal, got {type(value).__name__}"
            " (floats are never accepted)"
        )
    code = normalize_currency(currency)
    exp = CURRENCY_EXPONENTS[code]
    if not value.is_finite():
        raise InvalidAmountError(f"{value!r} is not a finite number")
    sign, digit_tuple, decimal_exponent = value.as_tuple()
    assert isinstance(decimal_exponent, int)  # finite, checked above
    digits = "".join(str(d) for d in digit_tuple)
    if not digits.strip("0"):
        return 0
    shift = decimal_exponent + exp  # power of ten that turns the coefficient into minor units
    if shift < 0:
        trailing_zeros = len(digits) - len(digits.rstrip("0"))
        if trailing_zeros < -shift:
            places = -(decimal_exponent + trailing_zeros)
            raise _too_many_decimals(code, exp, repr(value), places)
    if len(digits) + shift > _MAX_DECIMAL_DIGITS:
        raise InvalidAmountError(f"{value!r} is too large to be an amount of {code}")
    minor = int(digits[: len(digits) + shift] if shift < 0 else digits + "0" * shift)
    return -minor if sign else minor


def to_major_decimal(minor: int, currency: str) -> Decimal:
    """Exact major-unit ``Decimal`` with exactly ``exponent(currency)`` decimal places.

    1234 CHF -> ``Decimal("12.34")``, 1500 JPY -> ``Decimal("1500")``,
    0 KWD -> ``Decimal("0.000")``.
    """
    value = _require_int(minor, "minor")
    exp = CURRENCY_EXPONENTS[normalize_currency(currency)]
    digits = tuple(int(ch) for ch in str(abs(value)))
    return Decimal((1 if value < 0 else 0, digits, -exp))


def format_amount(
    minor: int, currency: str, *, with_code: bool = True, grouping: bool = True
) -> str:
    """Format minor units for people: 123456 CHF -> ``"1,234.56 CHF"``.

    ``grouping`` adds ``,`` thousands separators, ``with_code`` appends the currency code. The
    decimal point is always ``.``. The result (without the code) parses back with
    ``parse_amount(..., allow_negative=True, allow_zero=True)`` to the same ``minor``.
    """
    value = _require_int(minor, "minor")
    code = normalize_currency(currency)
    exp = CURRENCY_EXPONENTS[code]
    whole, fraction = divmod(abs(value), 10**exp)
    text = f"{whole:,}" if grouping else str(whole)
    if exp:
        text += "." + str(fraction).zfill(exp)
    if value < 0:
        text = "-" + text
    return f"{text} {code}" if with_code else text


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units of ``currency`` (``Money(1234, "CHF")`` is CHF 12.34).

    ``==`` compares both fields and never raises (``Money(0, "CHF") != Money(0, "EUR")``);
    ``+``, ``-``, ``<``, ``<=``, ``>``, ``>=`` require the same currency and otherwise raise
    ``CurrencyMismatchError``. Multiplication accepts ``int`` only. Instances are always truthy;
    test ``is_zero`` / ``is_positive`` / ``is_negative`` instead of ``if amount:``.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "minor", _require_int(self.minor, "Money.minor"))
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(
        cls,
        text: str,
        currency: str,
        *,
        allow_negative: bool = False,
        allow_zero: bool = False,
    ) -> Money:
        """``Money.parse("12.34", "CHF") == Money(1234, "CHF")``; see ``parse_amount``."""
        minor = parse_amount(text, currency, allow_negative=allow_negative, allow_zero=allow_zero)
        return cls(minor, currency)

    @classmethod
    def from_decimal(cls, value: Decimal, currency: str) -> Money:
        """``Money.from_decimal(Decimal("12.34"), "CHF") == Money(1234, "CHF")``."""
        return cls(minor_from_decimal(value, currency), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    # -- predicates ---------------------------------------------------------------------------

    @property
    def is_zero(self) -> bool:
        return self.minor == 0

    @property
    def is_positive(self) -> bool:
        return self.minor > 0

    @property
    def is_negative(self) -> bool:
        return self.minor < 0

    # -- arithmetic ---------------------------------------------------------------------------

    def _same_currency(self, other: Money, action: str) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatchError(
                f"cannot {action} {self} and {other}: currencies differ"
                f" ({self.currency} vs {other.currency})"
            )

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "add")
        return Money(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "subtract")
        return Money(self.minor - other.minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.minor), self.currency)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            raise TypeError(
                f"Money can only be multiplied by an int, not {type(factor).__name__};"
                " compute rates or percentages explicitly in integer minor units"
            )
        return Money(self.minor * factor, self.currency)

    def __rmul__(self, factor: int) -> Money:
        return self.__mul__(factor)

    # -- ordering (same currency only) ----------------------------------------------------------

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other, "compare")
        return self.minor >= other.minor

    # -- splitting ----------------------------------------------------------------------------

    def allocate(self, ratios: Sequence[int]) -> list[Money]:
        """Split into ``len(ratios)`` parts proportional to ``ratios`` without losing a unit.

        Largest-remainder method: every part gets ``floor(amount * ratio / total)``, then the
        leftover minor units go one each to the parts with the largest remainders, ties to the
        earlier part. The parts always sum to ``self``; with equal ratios they differ by at most
        one minor unit, the larger ones first (``CHF 1.00`` by ``[1, 1, 1]`` -> 0.34, 0.33,
        0.33). Negative amounts are split like their absolute value, then negated. Ratios must
        be non-negative ints with a positive sum; a zero ratio gets exactly zero.
        """
        weights = list(ratios)
        if not weights:
            raise ValueError("allocate needs at least one ratio")
        for weight in weights:
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise TypeError(f"allocation ratios must be ints, got {weight!r}")
            if weight < 0:
                raise ValueError(f"allocation ratios must not be negative, got {weights!r}")
        total = sum(weights)
        if total == 0:
            raise ValueError(f"allocation ratios must not all be zero, got {weights!r}")
        amount = abs(self.minor)
        shares = [amount * weight // total for weight in weights]
        remainders = [amount * weight % total for weight in weights]
        leftover = amount - sum(shares)
        by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for index in by_remainder[:leftover]:
            shares[index] += 1
        sign = -1 if self.minor < 0 else 1
        return [Money(sign * share, self.currency) for share in shares]

    # -- output -------------------------------------------------------------------------------

    def format(self, *, with_code: bool = True, grouping: bool = True) -> str:
        """``Money(123456, "CHF").format() == "1,234.56 CHF"``; see ``format_amount``."""
        return format_amount(self.minor, self.currency, with_code=with_code, grouping=grouping)

    def __str__(self) -> str:
        return self.format()

    def to_major_decimal(self) -> Decimal:
        """Exact ``Decimal`` in major units, e.g. ``Decimal("12.34")``."""
        return to_major_decimal(self.minor, self.currency)


def sum_money(items: Iterable[Money], currency: str) -> Money:
    """Total of ``items`` in ``currency`` (``Money.zero(currency)`` when empty).

    Raises ``CurrencyMismatchError`` if any item is in another currency.
    """
    code = normalize_currency(currency)
    total = 0
    for item in items:
        if not isinstance(item, Money):
            raise TypeError(f"sum_money expects Money items, got {type(item).__name__}")
        if item.currency != code:
            raise CurrencyMismatchError(f"cannot add {item} to a {code} total: currencies differ")
        total += item.minor
    return Money(total, code)
