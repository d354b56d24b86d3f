"""Tests for payments_core.money: exact integer minor-unit money, strict parsing, formatting."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from decimal import Decimal, localcontext
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payments_core.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT_TEXT_LENGTH,
    CurrencyMismatchError,
    InvalidAmountError,
    Money,
    MoneyError,
    UnknownCurrencyError,
    exponent,
    format_amount,
    minor_from_decimal,
    normalize_currency,
    parse_amount,
    sum_money,
    to_major_decimal,
)

CURRENCIES = sorted(CURRENCY_EXPONENTS)
currencies = st.sampled_from(CURRENCIES)
minors = st.integers(min_value=-(10**30), max_value=10**30)


def scaled(value: Decimal, exp: int) -> Decimal:
    """Reference: ``value * 10**exp`` computed exactly (generous precision, no rounding)."""
    with localcontext() as ctx:
        ctx.prec = 500
        return value.scaleb(exp)


# ---------------------------------------------------------------------------------------------
# Currency table
# ---------------------------------------------------------------------------------------------


class TestCurrencyTable:
    def test_is_read_only(self) -> None:
        assert isinstance(CURRENCY_EXPONENTS, MappingProxyType)
        with pytest.raises(TypeError):
            CURRENCY_EXPONENTS["ABC"] = 2  # type: ignore[index]

    @pytest.mark.parametrize(
        ("code", "exp"),
        [
            ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("VND", 0), ("UGX", 0),
            ("XOF", 0), ("XAF", 0), ("XPF", 0), ("BIF", 0), ("DJF", 0), ("GNF", 0),
            ("KMF", 0), ("PYG", 0), ("RWF", 0), ("VUV", 0), ("UYI", 0),
            ("CHF", 2), ("EUR", 2), ("USD", 2), ("GBP", 2), ("KES", 2), ("NGN", 2),
            ("MGA", 2), ("MRU", 2), ("HUF", 2), ("IDR", 2),
            ("CHE", 2), ("CHW", 2), ("BOV", 2), ("COU", 2), ("MXV", 2), ("USN", 2),
            ("XCG", 2), ("ZWG", 2), ("XAD", 2), ("VED", 2), ("VES", 2), ("SLE", 2), ("STN", 2),
            ("BHD", 3), ("IQD", 3), ("JOD", 3), ("KWD", 3), ("LYD", 3), ("OMR", 3), ("TND", 3),
            ("CLF", 4), ("UYW", 4),
        ],
    )  # fmt: skip
    def test_exponents(self, code: str, exp: int) -> None:
        assert CURRENCY_EXPONENTS[code] == exp
        assert exponent(code) == exp

    @pytest.mark.parametrize(
        "code",
        ["HRK", "SLL", "CUC", "ZWL", "ANG", "BGN", "LTL", "VEF", "XAU", "XAG", "XPT", "XPD",
         "XXX", "XTS", "XDR", "XSU", "XUA", "XBA", "XBB", "XBC", "XBD"],
    )  # fmt: skip
    def test_withdrawn_and_unit_less_codes_are_absent(self, code: str) -> None:
        assert code not in CURRENCY_EXPONENTS
        with pytest.raises(UnknownCurrencyError):
            normalize_currency(code)

    def test_table_shape(self) -> None:
        assert len(CURRENCY_EXPONENTS) > 150
        for code, exp in CURRENCY_EXPONENTS.items():
            assert len(code) == 3
            assert code.isascii()
            assert code.isalpha()
            assert code.isupper()
            assert type(exp) is int
            assert exp in (0, 2, 3, 4)


class TestNormalizeCurrency:
    @pytest.mark.parametrize("raw", ["CHF", "chf", " Chf ", "\tchf\n"])
    def test_normalizes(self, raw: str) -> None:
        assert normalize_currency(raw) == "CHF"

    @pytest.mark.parametrize(
        "raw", ["", "   ", "CH", "CHFF", "ABC", "C H F", "\u0131dr", "\u017fek"]
    )
    def test_unknown(self, raw: str) -> None:
        with pytest.raises(UnknownCurrencyError) as excinfo:
            normalize_currency(raw)
        assert repr(raw) in str(excinfo.value)

    def test_errors_are_value_errors(self) -> None:
        assert issubclass(UnknownCurrencyError, MoneyError)
        assert issubclass(InvalidAmountError, MoneyError)
        assert issubclass(CurrencyMismatchError, MoneyError)
        assert issubclass(MoneyError, ValueError)

    def test_non_string(self) -> None:
        with pytest.raises(TypeError):
            normalize_currency(756)  # type: ignore[arg-type]

    def test_exponent_normalizes(self) -> None:
        assert exponent(" kwd ") == 3
        with pytest.raises(UnknownCurrencyError):
            exponent("HRK")


# ---------------------------------------------------------------------------------------------
# parse_amount
# ---------------------------------------------------------------------------------------------


class TestParseAmount:
    @pytest.mark.parametrize(
        ("text", "currency", "expected"),
        [
            ("12.34", "CHF", 1234),
            ("1500", "JPY", 1500),
            ("1.234", "KWD", 1234),
            ("12.3", "CHF", 1230),
            (".5", "CHF", 50),
            ("5.", "CHF", 500),
            ("5.", "JPY", 5),
            ("0.01", "EUR", 1),
            ("1", "CLF", 10000),
            ("0.0001", "CLF", 1),
            ("1.5", "CLF", 15000),
            ("12.3456", "UYW", 123456),
            ("  12.34\n", "CHF", 1234),
            ("+12.34", "CHF", 1234),
            ("007.10", "CHF", 710),
            ("1,234.50", "CHF", 123450),
            ("1_234.50", "CHF", 123450),
            ("1 234.50", "CHF", 123450),
            ("1,234,567", "JPY", 1234567),
            ("12 345 678.9", "EUR", 1234567890),
            ("999,999.999", "BHD", 999999999),
            ("1,234", "CHF", 123400),
            ("3", " chf ", 300),
        ],
    )
    def test_valid(self, text: str, currency: str, expected: int) -> None:
        assert parse_amount(text, currency) == expected

    def test_negative_and_zero_flags(self) -> None:
        assert parse_amount("-12.34", "CHF", allow_negative=True) == -1234
        assert parse_amount("-.5", "CHF", allow_negative=True) == -50
        assert parse_amount("-1,234", "JPY", allow_negative=True) == -1234
        assert parse_amount("0", "CHF", allow_zero=True) == 0
        assert parse_amount("0.00", "CHF", allow_zero=True) == 0
        assert parse_amount("-0", "CHF", allow_negative=True, allow_zero=True) == 0

    @pytest.mark.parametrize("text", ["-12.34", "-0.01", "-1,000", "-0"])
    def test_negative_rejected_by_default(self, text: str) -> None:
        with pytest.raises(InvalidAmountError, match="negative") as excinfo:
            parse_amount(text, "CHF", allow_zero=True)
        assert repr(text) in str(excinfo.value)

    @pytest.mark.parametrize("text", ["0", "0.00", ".0", "0.", "+0", "000"])
    def test_zero_rejected_by_default(self, text: str) -> None:
        with pytest.raises(InvalidAmountError, match="zero") as excinfo:
            parse_amount(text, "CHF")
        assert repr(text) in str(excinfo.value)

    def test_negative_zero_with_negatives_allowed_is_still_zero(self) -> None:
        with pytest.raises(InvalidAmountError, match="zero"):
            parse_amount("-0.00", "CHF", allow_negative=True)

    def test_too_many_decimals_no_minor_unit(self) -> None:
        with pytest.raises(InvalidAmountError) as excinfo:
            parse_amount("12.5", "JPY")
        assert str(excinfo.value) == "JPY has no minor unit; '12.5' has 1 decimal place"
        with pytest.raises(InvalidAmountError, match="has 2 decimal places"):
            parse_amount("12.50", "JPY")
        with pytest.raises(InvalidAmountError, match="JPY has no minor unit"):
            parse_amount("1500.0", "JPY")

    def test_too_many_decimals_message(self) -> None:
        with pytest.raises(InvalidAmountError) as excinfo:
            parse_amount("1.234", "CHF")
        assert str(excinfo.value) == "CHF allows at most 2 decimal places, got '1.234'"
        with pytest.raises(InvalidAmountError, match=r"KWD allows at most 3 decimal places"):
            parse_amount("1.2345", "KWD")
        with pytest.raises(InvalidAmountError, match=r"CLF allows at most 4 decimal places"):
            parse_amount("0.00001", "CLF")

    def test_trailing_zero_decimals_are_not_silently_dropped(self) -> None:
        # "1.230" is ambiguous (1230 in some locales); never truncate.
        with pytest.raises(InvalidAmountError, match="at most 2 decimal places"):
            parse_amount("1.230", "CHF")

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("abc", "not a valid amount"),
            ("12abc", "not a valid amount"),
            ("$12", "not a valid amount"),
            ("12 CHF", "not a valid amount"),
            ("0x10", "not a valid amount"),
            (".", "not a valid amount"),
            ("+", "not a valid amount"),
            ("-", "not a valid amount"),
            ("1e3", "exponent notation"),
            ("1E3", "exponent notation"),
            ("1.5e-2", "exponent notation"),
            ("NaN", "not a finite number"),
            ("nan", "not a finite number"),
            ("sNaN", "not a finite number"),
            ("inf", "not a finite number"),
            ("-Infinity", "not a finite number"),
            ("+inf", "not a finite number"),
            ("--1", "more than one sign"),
            ("+-1", "more than one sign"),
            ("-+1", "more than one sign"),
            ("- 5", "whitespace between the sign"),
            ("1.2.3", "more than one '.'"),
            ("1..2", "more than one '.'"),
            ("\u0661\u0662\u0663", "ASCII digits"),  # Arabic-Indic digits
            ("\uff11\uff12", "ASCII digits"),  # fullwidth digits
            ("1\u00b2", "ASCII digits"),  # superscript two
            ("1-", "not a valid amount"),
            ("1,23.4", "misplaced thousands separators"),
            ("12,34", "misplaced thousands separators"),
            ("1,2345", "misplaced thousands separators"),
            ("1234,567", "misplaced thousands separators"),
            (",123", "misplaced thousands separators"),
            ("1,", "misplaced thousands separators"),
            ("1,,234", "misplaced thousands separators"),
            ("1,234_567", "misplaced thousands separators"),
            ("1  234", "misplaced thousands separators"),
            ("0,123", "misplaced thousands separators"),
            ("1.234,5", "only allowed before the decimal point"),
            ("1.23_4", "only allowed before the decimal point"),
            ("1\t234", "not a valid amount"),
            ("1\u00a0234", "not a valid amount"),
        ],
    )
    def test_invalid(self, text: str, fragment: str) -> None:
        with pytest.raises(InvalidAmountError) as excinfo:
            parse_amount(text, "CHF", allow_negative=True, allow_zero=True)
        message = str(excinfo.value)
        assert fragment in message
        assert repr(text) in message

    def test_too_long(self) -> None:
        with pytest.raises(InvalidAmountError, match="too long"):
            parse_amount("1" * (MAX_AMOUNT_TEXT_LENGTH + 1), "CHF")
        assert parse_amount("1" * MAX_AMOUNT_TEXT_LENGTH, "JPY") == int("1" * 100)

    def test_unknown_currency(self) -> None:
        with pytest.raises(UnknownCurrencyError, match="'HRK'"):
            parse_amount("1.00", "HRK")

    @pytest.mark.parametrize("value", [12.5, 12, Decimal("12.5"), None, b"12"])
    def test_non_string_input_rejected(self, value: object) -> None:
        with pytest.raises(TypeError):
            parse_amount(value, "CHF")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Decimal conversions
# ---------------------------------------------------------------------------------------------


class TestDecimal:
    @pytest.mark.parametrize(
        ("value", "currency", "expected"),
        [
            (Decimal("12.34"), "CHF", 1234),
            (Decimal("12.3"), "CHF", 1230),
            (Decimal("12.340"), "CHF", 1234),  # trailing zeros are not significant
            (Decimal("1500"), "JPY", 1500),
            (Decimal("1.5E+3"), "JPY", 1500),
            (Decimal("1500.000"), "JPY", 1500),
            (Decimal("1.234"), "KWD", 1234),
            (Decimal("-0.05"), "CHF", -5),
            (Decimal("0"), "CHF", 0),
            (Decimal("-0.000"), "CHF", 0),
            (Decimal("0E-50"), "JPY", 0),
            (Decimal("0.0001"), "CLF", 1),
        ],
    )
    def test_minor_from_decimal(self, value: Decimal, currency: str, expected: int) -> None:
        assert minor_from_decimal(value, currency) == expected

    def test_rejects_too_many_decimals(self) -> None:
        with pytest.raises(InvalidAmountError) as excinfo:
            minor_from_decimal(Decimal("1.234"), "CHF")
        assert str(excinfo.value) == "CHF allows at most 2 decimal places, got Decimal('1.234')"
        with pytest.raises(InvalidAmountError, match=r"JPY has no minor unit; .* 1 decimal place"):
            minor_from_decimal(Decimal("12.50"), "JPY")
        with pytest.raises(InvalidAmountError, match="at most 2 decimal places"):
            minor_from_decimal(Decimal("1E-30"), "CHF")

    @pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity"])
    def test_rejects_non_finite(self, value: str) -> None:
        with pytest.raises(InvalidAmountError, match="not a finite number"):
            minor_from_decimal(Decimal(value), "CHF")

    def test_rejects_absurdly_large(self) -> None:
        with pytest.raises(InvalidAmountError, match="too large"):
            minor_from_decimal(Decimal("1E+999999999"), "CHF")

    @pytest.mark.parametrize("value", [1.5, 12, "12.34", True])
    def test_rejects_non_decimal(self, value: object) -> None:
        with pytest.raises(TypeError):
            minor_from_decimal(value, "CHF")  # type: ignore[arg-type]

    def test_independent_of_decimal_context(self) -> None:
        big = Decimal("123456789012345678901234567890123456.78")
        with localcontext() as ctx:
            ctx.prec = 5
            assert minor_from_decimal(big, "CHF") == 12345678901234567890123456789012345678
            assert to_major_decimal(12345678901234567890123456789012345678, "CHF") == big

    @pytest.mark.parametrize(
        ("minor", "currency", "expected"),
        [
            (1234, "CHF", "12.34"),
            (5, "CHF", "0.05"),
            (-5, "CHF", "-0.05"),
            (0, "CHF", "0.00"),
            (1500, "JPY", "1500"),
            (1234, "KWD", "1.234"),
            (0, "KWD", "0.000"),
            (1, "CLF", "0.0001"),
        ],
    )
    def test_to_major_decimal(self, minor: int, currency: str, expected: str) -> None:
        result = to_major_decimal(minor, currency)
        assert result == Decimal(expected)
        assert str(result) == expected  # quantized to the currency exponent
        assert result.as_tuple().exponent == -exponent(currency)

    @pytest.mark.parametrize("minor", [1.0, Decimal(1), True, "1"])
    def test_to_major_decimal_requires_int(self, minor: object) -> None:
        with pytest.raises(TypeError):
            to_major_decimal(minor, "CHF")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# format_amount
# ---------------------------------------------------------------------------------------------


class TestFormat:
    @pytest.mark.parametrize(
        ("minor", "currency", "expected"),
        [
            (123456, "CHF", "1,234.56 CHF"),
            (1500, "JPY", "1,500 JPY"),
            (1234, "KWD", "1.234 KWD"),
            (-50, "CHF", "-0.50 CHF"),
            (0, "CHF", "0.00 CHF"),
            (0, "JPY", "0 JPY"),
            (1, "CLF", "0.0001 CLF"),
            (-123456789, "EUR", "-1,234,567.89 EUR"),
            (100000000, "KRW", "100,000,000 KRW"),
            (5, "chf", "0.05 CHF"),
        ],
    )
    def test_examples(self, minor: int, currency: str, expected: str) -> None:
        assert format_amount(minor, currency) == expected

    def test_options(self) -> None:
        assert format_amount(123456, "CHF", with_code=False) == "1,234.56"
        assert format_amount(123456, "CHF", grouping=False) == "1234.56 CHF"
        assert format_amount(123456, "CHF", with_code=False, grouping=False) == "1234.56"
        assert format_amount(-1234567, "JPY", with_code=False, grouping=False) == "-1234567"

    @pytest.mark.parametrize("minor", [1.5, Decimal("1"), True, "100"])
    def test_requires_int(self, minor: object) -> None:
        with pytest.raises(TypeError):
            format_amount(minor, "CHF")  # type: ignore[arg-type]

    def test_unknown_currency(self) -> None:
        with pytest.raises(UnknownCurrencyError):
            format_amount(1, "ZWL")


# ---------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------


class TestMoney:
    def test_construction_normalizes_currency(self) -> None:
        m = Money(1234, " chf ")
        assert m.minor == 1234
        assert m.currency == "CHF"
        assert m == Money(1234, "CHF")
        assert hash(m) == hash(Money(1234, "CHF"))

    @pytest.mark.parametrize("minor", [12.34, 12.0, Decimal("12"), True, False, "12", None])
    def test_minor_must_be_int(self, minor: object) -> None:
        with pytest.raises(TypeError, match="int"):
            Money(minor, "CHF")  # type: ignore[arg-type]

    def test_float_message(self) -> None:
        with pytest.raises(TypeError, match="floats are never used"):
            Money(1.5, "CHF")  # type: ignore[arg-type]

    def test_unknown_currency(self) -> None:
        with pytest.raises(UnknownCurrencyError):
            Money(1, "HRK")

    def test_frozen(self) -> None:
        m = Money(1, "CHF")
        with pytest.raises(AttributeError):
            m.minor = 2  # type: ignore[misc]

    def test_pickle_roundtrip(self) -> None:
        m = Money(-1234, "KWD")
        assert pickle.loads(pickle.dumps(m)) == m  # noqa: S301 - our own bytes

    def test_parse(self) -> None:
        assert Money.parse("12.34", "chf") == Money(1234, "CHF")
        assert Money.parse("-1", "JPY", allow_negative=True) == Money(-1, "JPY")
        assert Money.parse("0", "EUR", allow_zero=True) == Money.zero("EUR")
        with pytest.raises(InvalidAmountError):
            Money.parse("1.234", "CHF")
        with pytest.raises(InvalidAmountError):
            Money.parse("-1", "CHF")

    def test_from_decimal(self) -> None:
        assert Money.from_decimal(Decimal("1.234"), "KWD") == Money(1234, "KWD")

    def test_zero_and_predicates(self) -> None:
        zero = Money.zero("JPY")
        assert zero == Money(0, "JPY")
        assert zero.is_zero
        assert not zero.is_positive
        assert not zero.is_negative
        assert Money(1, "JPY").is_positive
        assert not Money(1, "JPY").is_zero
        assert Money(-1, "JPY").is_negative
        assert not Money(-1, "JPY").is_positive

    def test_arithmetic(self) -> None:
        a, b = Money(1050, "CHF"), Money(275, "CHF")
        assert a + b == Money(1325, "CHF")
        assert a - b == Money(775, "CHF")
        assert b - a == Money(-775, "CHF")
        assert -a == Money(-1050, "CHF")
        assert abs(Money(-5, "CHF")) == Money(5, "CHF")
        assert a * 3 == Money(3150, "CHF")
        assert 3 * a == Money(3150, "CHF")
        assert a * -1 == -a
        assert a * 0 == Money.zero("CHF")

    @pytest.mark.parametrize(
        "operation",
        [
            lambda a, b: a + b,
            lambda a, b: a - b,
            lambda a, b: a < b,
            lambda a, b: a <= b,
            lambda a, b: a > b,
            lambda a, b: a >= b,
        ],
        ids=["add", "sub", "lt", "le", "gt", "ge"],
    )
    def test_cross_currency_raises(self, operation: Callable[[Money, Money], Any]) -> None:
        with pytest.raises(CurrencyMismatchError) as excinfo:
            operation(Money(100, "CHF"), Money(100, "EUR"))
        message = str(excinfo.value)
        assert "CHF" in message
        assert "EUR" in message

    def test_equality_never_raises(self) -> None:
        assert Money(100, "CHF") != Money(100, "EUR")
        assert Money(0, "CHF") != Money(0, "EUR")
        not_money: list[object] = [100, "1.00 CHF", Decimal("1.00"), None]
        for other in not_money:
            assert Money(100, "CHF") != other
        assert Money(100, "CHF") == Money(100, "CHF")

    def test_ordering(self) -> None:
        small, big = Money(1, "EUR"), Money(2, "EUR")
        assert small < big
        assert small <= big
        assert big > small
        assert big >= small
        assert small <= Money(1, "EUR")
        assert small >= Money(1, "EUR")
        assert not small > big
        assert sorted([big, small, Money(-5, "EUR")]) == [Money(-5, "EUR"), small, big]
        assert max([small, big]) == big

    @pytest.mark.parametrize("factor", [1.5, 2.0, Decimal("2"), True, "2"])
    def test_multiplication_requires_int(self, factor: object) -> None:
        m = Money(100, "CHF")
        with pytest.raises(TypeError):
            _ = m * factor  # type: ignore[operator]
        with pytest.raises(TypeError):
            _ = factor * m  # type: ignore[operator]

    def test_arithmetic_with_non_money(self) -> None:
        m = Money(100, "CHF")
        with pytest.raises(TypeError):
            _ = m + 1  # type: ignore[operator]
        with pytest.raises(TypeError):
            _ = m - Decimal("1")  # type: ignore[operator]
        with pytest.raises(TypeError):
            _ = m < 5  # type: ignore[operator]

    def test_format_and_str(self) -> None:
        m = Money(123456, "CHF")
        assert m.format() == "1,234.56 CHF"
        assert str(m) == "1,234.56 CHF"
        assert m.format(with_code=False, grouping=False) == "1234.56"
        assert str(Money(-50, "CHF")) == "-0.50 CHF"
        assert str(Money(1500, "JPY")) == "1,500 JPY"
        assert str(Money(1234, "KWD")) == "1.234 KWD"
        assert m.to_major_decimal() == Decimal("1234.56")


class TestAllocate:
    @pytest.mark.parametrize(
        ("minor", "currency", "ratios", "expected"),
        [
            (100, "CHF", [1, 1, 1], [34, 33, 33]),
            (-100, "CHF", [1, 1, 1], [-34, -33, -33]),
            (101, "CHF", [1, 1, 1], [34, 34, 33]),
            (5, "JPY", [1, 1], [3, 2]),
            (1000, "CHF", [50, 30, 20], [500, 300, 200]),
            (100, "CHF", [1, 0, 1], [50, 0, 50]),
            (1, "CHF", [0, 1, 1], [0, 1, 0]),
            (0, "CHF", [1, 2], [0, 0]),
            (7, "EUR", [7], [7]),
            # largest remainder: 10 * [1, 2, 3] / 6 = 1.67, 3.33, 5 -> remainder goes to part 0
            (10, "EUR", [1, 2, 3], [2, 3, 5]),
            (1, "KWD", [3, 7], [0, 1]),
        ],
    )
    def test_examples(
        self, minor: int, currency: str, ratios: list[int], expected: list[int]
    ) -> None:
        parts = Money(minor, currency).allocate(ratios)
        assert parts == [Money(x, currency) for x in expected]

    def test_accepts_any_sequence(self) -> None:
        assert Money(3, "JPY").allocate((1, 2)) == [Money(1, "JPY"), Money(2, "JPY")]

    @pytest.mark.parametrize("ratios", [[], [0], [0, 0], [1, -1], [-1, -2]])
    def test_invalid_ratios(self, ratios: list[int]) -> None:
        with pytest.raises(ValueError, match="ratio"):
            Money(100, "CHF").allocate(ratios)

    @pytest.mark.parametrize("ratios", [[1.5, 1], [Decimal(1), 1], [True, 1]])
    def test_ratios_must_be_ints(self, ratios: list[Any]) -> None:
        with pytest.raises(TypeError):
            Money(100, "CHF").allocate(ratios)


class TestSumMoney:
    def test_sum(self) -> None:
        items = [Money(100, "CHF"), Money(-30, "CHF"), Money(5, "chf")]
        assert sum_money(items, "chf") == Money(75, "CHF")
        assert sum_money(iter(items), "CHF") == Money(75, "CHF")

    def test_empty(self) -> None:
        assert sum_money([], "JPY") == Money.zero("JPY")

    def test_mixed_currencies(self) -> None:
        with pytest.raises(CurrencyMismatchError, match="EUR"):
            sum_money([Money(1, "CHF"), Money(1, "EUR")], "CHF")
        with pytest.raises(CurrencyMismatchError):
            sum_money([Money(1, "EUR")], "CHF")

    def test_non_money(self) -> None:
        with pytest.raises(TypeError):
            sum_money([Money(1, "CHF"), 1], "CHF")  # type: ignore[list-item]

    def test_unknown_currency(self) -> None:
        with pytest.raises(UnknownCurrencyError):
            sum_money([], "XXX")


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@given(currency=currencies, minor=minors, grouping=st.booleans())
def test_format_parse_roundtrip(currency: str, minor: int, grouping: bool) -> None:
    text = format_amount(minor, currency, with_code=False, grouping=grouping)
    assert parse_amount(text, currency, allow_negative=True, allow_zero=True) == minor


@given(currency=currencies, minor=minors)
def test_format_with_code_roundtrip_via_money(currency: str, minor: int) -> None:
    amount, code = str(Money(minor, currency)).rsplit(" ", 1)
    assert code == currency
    assert Money.parse(amount, code, allow_negative=True, allow_zero=True) == Money(minor, code)


@given(currency=currencies, minor=minors)
def test_decimal_roundtrip(currency: str, minor: int) -> None:
    value = to_major_decimal(minor, currency)
    assert value.as_tuple().exponent == -exponent(currency)
    assert minor_from_decimal(value, currency) == minor
    assert str(value) == format_amount(minor, currency, with_code=False, grouping=False)


@given(
    currency=currencies,
    int_part=st.text(alphabet="0123456789", max_size=12),
    fraction=st.text(alphabet="0123456789", min_size=1, max_size=8),
    sign=st.sampled_from(["", "+", "-"]),
)
def test_plain_text_matches_decimal_reference(
    currency: str, int_part: str, fraction: str, sign: str
) -> None:
    exp = exponent(currency)
    text = f"{sign}{int_part}.{fraction}"
    if len(fraction) > exp:
        with pytest.raises(InvalidAmountError, match="decimal place"):
            parse_amount(text, currency, allow_negative=True, allow_zero=True)
    else:
        expected = int(scaled(Decimal(text), exp))
        assert parse_amount(text, currency, allow_negative=True, allow_zero=True) == expected


@given(currency=currencies, minor=minors, data=st.data())
def test_more_decimals_than_exponent_rejected(
    currency: str, minor: int, data: st.DataObject
) -> None:
    exp = exponent(currency)
    base = format_amount(minor, currency, with_code=False, grouping=data.draw(st.booleans()))
    extra = data.draw(st.text(alphabet="0123456789", min_size=1, max_size=5))
    text = f"{base}{extra}" if exp else f"{base}.{extra}"
    with pytest.raises(InvalidAmountError) as excinfo:
        parse_amount(text, currency, allow_negative=True, allow_zero=True)
    assert "decimal place" in str(excinfo.value)
    assert repr(text) in str(excinfo.value)
    # A Decimal is judged by its value: rejected unless it is a whole number of minor units
    # (so "1500.0" JPY text is rejected, but Decimal("1500.0") is exactly 1500).
    decimal_value = Decimal(text.replace(",", ""))
    minor_units = scaled(decimal_value, exp)
    if minor_units == minor_units.to_integral_value():
        assert minor_from_decimal(decimal_value, currency) == int(minor_units)
    else:
        with pytest.raises(InvalidAmountError, match="decimal place"):
            minor_from_decimal(decimal_value, currency)


@given(text=st.text(max_size=30), currency=currencies)
def test_parse_never_crashes(text: str, currency: str) -> None:
    try:
        result = parse_amount(text, currency, allow_negative=True, allow_zero=True)
    except InvalidAmountError:
        return
    assert type(result) is int


@given(
    text=st.text(alphabet="0123456789.,_ +-eE", max_size=20),
    currency=st.sampled_from(["CHF", "JPY", "KWD", "CLF"]),
)
def test_parse_numberish_never_crashes(text: str, currency: str) -> None:
    try:
        result = parse_amount(text, currency, allow_negative=True, allow_zero=True)
    except InvalidAmountError:
        return
    # whatever is accepted is exactly the Decimal value of the text without separators
    cleaned = text.strip().replace(",", "").replace("_", "").replace(" ", "")
    assert scaled(Decimal(cleaned), exponent(currency)) == result


@given(
    currency=currencies,
    minor=minors,
    ratios=st.lists(st.integers(0, 1000), min_size=1, max_size=20),
)
def test_allocate_preserves_total(currency: str, minor: int, ratios: list[int]) -> None:
    if sum(ratios) == 0:
        ratios = [*ratios, 1]
    money = Money(minor, currency)
    parts = money.allocate(ratios)
    assert len(parts) == len(ratios)
    assert sum_money(parts, currency) == money
    for part, ratio in zip(parts, ratios, strict=True):
        assert part.currency == money.currency
        if ratio == 0:
            assert part.is_zero
        # each part is within one minor unit of its exact share
        exact_times_total = minor * ratio
        assert abs(part.minor * sum(ratios) - exact_times_total) < sum(ratios)


@given(currency=currencies, minor=minors, count=st.integers(1, 50))
def test_allocate_equal_ratios(currency: str, minor: int, count: int) -> None:
    parts = Money(minor, currency).allocate([1] * count)
    values = [p.minor for p in parts]
    assert sum(values) == minor
    assert max(values) - min(values) <= 1
    assert values == sorted(values, key=abs, reverse=True)  # larger parts first


@given(currency=currencies, a=minors, b=minors, c=minors)
def test_addition_laws(currency: str, a: int, b: int, c: int) -> None:
    x, y, z = Money(a, currency), Money(b, currency), Money(c, currency)
    zero = Money.zero(currency)
    assert (x + y) + z == x + (y + z)
    assert x + y == y + x
    assert (x + y) - y == x
    assert x - x == zero
    assert x + (-x) == zero
    assert x + zero == x
    negated = -x
    assert -negated == x
    assert (x < y) == (a < b)
    assert (x <= y) == (a <= b)
    assert x * 2 == x + x


@given(currency=currencies, other=currencies, a=minors, b=minors)
def test_mismatch_always_raises(currency: str, other: str, a: int, b: int) -> None:
    x, y = Money(a, currency), Money(b, other)
    if currency == other:
        assert (x + y).minor == a + b
        return
    assert x != y
    with pytest.raises(CurrencyMismatchError):
        _ = x + y
    with pytest.raises(CurrencyMismatchError):
        _ = x < y
