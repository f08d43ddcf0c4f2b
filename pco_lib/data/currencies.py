"""The currency of the revenue amounts, and money as a page writes it ("$1,234", "€12.50", "1,234 CHF").

Revenue is in one currency (the data model). A report says which with its ``currency`` parameter (an ISO 4217
code; "" means ``$PCO_CURRENCY``, else USD) and calls :func:`set_currency` once; every money figure of its
summary, cards, tables and chart axes is then written by :func:`money`.
"""

from __future__ import annotations

import math
import os
import re

ENV = "PCO_CURRENCY"
DEFAULT = "USD"
# Codes written with a symbol before the number; any other valid code is written after it ("1,234 CHF").
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CNY": "¥", "INR": "₹", "KRW": "₩", "BRL": "R$",
           "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "MXN": "MX$", "HKD": "HK$", "SGD": "S$", "ILS": "₪",
           "TRY": "₺", "PHP": "₱", "VND": "₫", "NGN": "₦", "UAH": "₴"}
_CODE = re.compile(r"^[A-Z]{3}$")
_current: str | None = None


class CurrencyError(ValueError):
    """Not a currency code."""


def check_code(code: str) -> str:
    """``code`` upper-cased if it reads as an ISO 4217 code (three letters), else :class:`CurrencyError`."""
    text = str(code).strip().upper()
    if not _CODE.match(text):
        raise CurrencyError(f"{code!r} is not a currency code: write three letters as in ISO 4217, e.g. USD, "
                            "EUR, GBP")
    return text


def resolve(code: str = "") -> str:
    """The currency a report uses: ``code``, else ``$PCO_CURRENCY``, else USD (checked by :func:`check_code`)."""
    return check_code(code or os.environ.get(ENV, "") or DEFAULT)


def set_currency(code: str = "") -> str:
    """Make :func:`resolve` (``code``) the currency of every money figure from now on; returns the code."""
    global _current
    _current = resolve(code)
    return _current


def currency() -> str:
    """The code of the current currency (:func:`set_currency`, else :func:`resolve`)."""
    return _current or resolve()


def money(value, spec: str = ",.0f") -> str:
    """``value`` as money in the current currency, with ``spec`` for the number: ``money(1234.5)`` → "$1,235",
    ``money(-3.5, ",.2f")`` → "−$3.50", in CHF "1,235 CHF"; "–" when missing. A ``+`` in ``spec`` signs it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    code = currency()
    number = format(abs(value), spec.replace("+", ""))
    sign = "−" if value < 0 and float(number.replace(",", "") or 0) != 0 else ("+" if "+" in spec else "")
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"


def money_label(what: str) -> str:
    """An axis or column label for an amount: "revenue" → "revenue (USD)"."""
    return f"{what} ({currency()})"
