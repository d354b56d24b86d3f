"""Analytics: plotly charts of the analytics report, a date range and currency, CSV downloads.

The State asks ``payments_core.services.analytics`` for one report and turns its tables into
figures; every number (rates, formatted amounts, major-unit volume) comes from the service. Volume
is charted for one currency only: the selected one, or with "all currencies" the most used one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import plotly.graph_objects as go
import reflex as rx
from reflex.event import EventSpec

from dashboard.components.nav import layout
from dashboard.state import LOGIN_ROUTE, AuthState
from payments_core.db import read_engine
from payments_core.services.analytics import AnalyticsError, AnalyticsReport, analytics_report
from payments_core.services.permissions import PermissionDenied

ROUTE = "/analytics"
ALL = "all currencies"
PRESETS = (7, 30, 90)
DEFAULT_DAYS = 30
# Each chart's "Download CSV" exports the report table it is drawn from.
TABLE_OF: dict[str, str] = {
    "success-rate": "success_rate",
    "volume": "daily",
    "count": "daily",
    "method-mix": "method_mix",
    "currency-mix": "currency_mix",
    "failure-reasons": "failure_reasons",
    "rates": "refund_dispute",
}


def _figure(title: str) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(
        title=title,
        height=320,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def _success_rate(report: AnalyticsReport) -> go.Figure:
    figure = _figure("Success rate per provider (%)")
    providers = sorted({str(r["provider"]) for r in report.success_rate.rows})
    for provider in providers:
        rows = [r for r in report.success_rate.rows if r["provider"] == provider]
        figure.add_trace(
            go.Scatter(
                x=[r["day"] for r in rows],
                y=[r["success_rate"] for r in rows],
                mode="lines+markers",
                name=provider,
            )
        )
    figure.update_yaxes(range=[0, 105])
    return figure


def _volume(report: AnalyticsReport, currency: str) -> go.Figure:
    rows = [r for r in report.daily.rows if r["currency"] == currency]
    figure = _figure(f"Succeeded volume per day ({currency})" if currency else "Volume per day")
    # Heights are the service's exact major-unit text; the hover shows its formatted amount.
    figure.add_trace(
        go.Bar(
            x=[r["day"] for r in rows],
            y=[r["volume_major"] for r in rows],
            hovertext=[r["volume"] for r in rows],
            hoverinfo="x+text",
            name=currency,
        )
    )
    figure.update_yaxes(type="linear", title=currency)
    return figure


def _count(report: AnalyticsReport) -> go.Figure:
    figure = _figure("Payments per day")
    for currency in sorted({str(r["currency"]) for r in report.daily.rows}):
        rows = [r for r in report.daily.rows if r["currency"] == currency]
        figure.add_trace(
            go.Bar(x=[r["day"] for r in rows], y=[r["count"] for r in rows], name=currency)
        )
    figure.update_layout(barmode="stack")
    return figure


def _pie(title: str, labels: Sequence[object], values: Sequence[object]) -> go.Figure:
    figure = _figure(title)
    figure.add_trace(go.Pie(labels=labels, values=values, hole=0.4))
    return figure


def _failure_reasons(report: AnalyticsReport) -> go.Figure:
    figure = _figure("Top failure reasons")
    rows = list(reversed(report.failure_reasons.rows))  # largest on top
    figure.add_trace(
        go.Bar(
            x=[r["count"] for r in rows],
            y=[r["failure_reason"] for r in rows],
            orientation="h",
        )
    )
    figure.update_layout(margin={"l": 220})
    return figure


def _rates(report: AnalyticsReport) -> go.Figure:
    figure = _figure("Refund and dispute rates (%)")
    rows = report.refund_dispute.rows
    currencies = [r["currency"] for r in rows]
    for column, name in (
        ("refund_rate_amount", "refunded / captured amount"),
        ("refund_rate_payments", "refunded / captured payments"),
        ("dispute_rate", "disputed / captured payments"),
    ):
        figure.add_trace(go.Bar(x=currencies, y=[r[column] for r in rows], name=name))
    figure.update_layout(barmode="group")
    return figure


class AnalyticsState(AuthState):
    days: int = DEFAULT_DAYS  # the preset in use; 0 for a range picked by hand
    start_day: str = ""  # first day shown, YYYY-MM-DD (UTC)
    end_day: str = ""  # last day shown, inclusive
    currency: str = ALL
    currencies: rx.Field[list[str]] = rx.field([ALL])
    volume_currency: str = ""
    rates: rx.Field[list[dict[str, str]]] = rx.field([])
    error: str = ""
    success_rate_figure: go.Figure = go.Figure()
    volume_figure: go.Figure = go.Figure()
    count_figure: go.Figure = go.Figure()
    method_mix_figure: go.Figure = go.Figure()
    currency_mix_figure: go.Figure = go.Figure()
    failure_reasons_figure: go.Figure = go.Figure()
    rates_figure: go.Figure = go.Figure()

    def _range(self) -> tuple[datetime, datetime]:
        start = date.fromisoformat(self.start_day)
        end = date.fromisoformat(self.end_day) + timedelta(days=1)
        return (
            datetime(start.year, start.month, start.day, tzinfo=UTC),
            datetime(end.year, end.month, end.day, tzinfo=UTC),
        )

    def _report(self) -> AnalyticsReport | EventSpec:
        """The service's report for the current selection, or where to send the visitor."""
        from sqlmodel import Session

        actor = self._actor()
        if actor is None:
            return rx.redirect(LOGIN_ROUTE)
        try:
            start, end = self._range()
        except ValueError:
            raise AnalyticsError("pick a start and an end date") from None
        with Session(read_engine()) as session:
            return analytics_report(
                session=session,
                actor=actor,
                start=start,
                end=end,
                currency=None if self.currency == ALL else self.currency,
            )

    def _refresh(self) -> EventSpec | None:
        try:
            report = self._report()
        except (AnalyticsError, PermissionDenied) as exc:
            self.error = str(exc)
            return None
        if not isinstance(report, AnalyticsReport):
            return report
        self.error = ""
        mix = report.currency_mix.rows
        if self.currency == ALL:
            self.currencies = [ALL, *sorted(str(r["currency"]) for r in mix)]
        self.volume_currency = report.currency or (str(mix[0]["currency"]) if mix else "")
        self.success_rate_figure = _success_rate(report)
        self.volume_figure = _volume(report, self.volume_currency)
        self.count_figure = _count(report)
        self.method_mix_figure = _pie(
            "Method mix", report.method_mix.column("method"), report.method_mix.column("count")
        )
        currencies = report.currency_mix
        self.currency_mix_figure = _pie(
            "Currency mix", currencies.column("currency"), currencies.column("count")
        )
        self.failure_reasons_figure = _failure_reasons(report)
        self.rates_figure = _rates(report)
        self.rates = [
            {key: "" if value is None else str(value) for key, value in row.items()}
            for row in report.refund_dispute.rows
        ]
        return None

    def _preset(self, days: int) -> EventSpec | None:
        today = datetime.now(UTC).date()
        self.days = days
        self.start_day = (today - timedelta(days=days - 1)).isoformat()
        self.end_day = today.isoformat()
        return self._refresh()

    @rx.event
    def load(self) -> EventSpec | None:
        if self.days or not self.start_day:
            return self._preset(self.days or DEFAULT_DAYS)
        return self._refresh()

    @rx.event
    def choose_preset(self, days: int) -> EventSpec | None:
        return self._preset(int(days))

    @rx.event
    def set_start(self, value: str) -> EventSpec | None:
        self.start_day, self.days = value, 0
        return self._refresh()

    @rx.event
    def set_end(self, value: str) -> EventSpec | None:
        self.end_day, self.days = value, 0
        return self._refresh()

    @rx.event
    def choose_currency(self, value: str) -> EventSpec | None:
        self.currency = value
        return self._refresh()

    @rx.event
    def download(self, chart: str) -> EventSpec | None:
        """The numbers behind one chart as CSV, recomputed for the current selection."""
        try:
            report = self._report()
        except (AnalyticsError, PermissionDenied) as exc:
            self.error = str(exc)
            return None
        if not isinstance(report, AnalyticsReport):
            return report
        table = report.table(TABLE_OF.get(chart, ""))
        currency = f"-{report.currency}" if report.currency else ""
        return rx.download(
            data=table.to_csv(),
            filename=f"paydesk-{chart}{currency}-{self.start_day}-to-{self.end_day}.csv",
            mime_type="text/csv",
        )


def _chart(chart: str, figure: rx.Var[go.Figure]) -> rx.Component:
    return rx.card(
        rx.plotly(data=figure, use_resize_handler=True, width="100%"),
        rx.button(
            "Download CSV",
            on_click=AnalyticsState.download(chart),  # type: ignore[operator]
            variant="soft",
            size="1",
            id=f"download-{chart}",
        ),
        id=f"chart-{chart}",
        class_name="analytics-chart",
        width="100%",
    )


def _rates_table() -> rx.Component:
    columns = (
        ("currency", "Currency"),
        ("captured", "Captured"),
        ("refunded", "Refunded"),
        ("refund_rate_amount", "Refund rate (amount, %)"),
        ("refund_rate_payments", "Refund rate (payments, %)"),
        ("disputed_payments", "Disputed payments"),
        ("dispute_rate", "Dispute rate (%)"),
    )
    return rx.table.root(
        rx.table.header(
            rx.table.row(*(rx.table.column_header_cell(label) for _, label in columns))
        ),
        rx.table.body(
            rx.foreach(
                AnalyticsState.rates,
                lambda row: rx.table.row(*(rx.table.cell(row[key]) for key, _ in columns)),
            )
        ),
        width="100%",
        id="rates-table",
    )


def analytics_page() -> rx.Component:
    return layout(
        rx.heading("Analytics", size="6"),
        rx.hstack(
            *(
                rx.button(
                    f"{days} days",
                    on_click=AnalyticsState.choose_preset(days),  # type: ignore[operator]
                    variant=rx.cond(AnalyticsState.days == days, "solid", "soft"),
                    id=f"range-{days}",
                )
                for days in PRESETS
            ),
            rx.input(
                type="date",
                value=AnalyticsState.start_day,
                on_change=AnalyticsState.set_start,
                id="range-start",
            ),
            rx.text("to"),
            rx.input(
                type="date",
                value=AnalyticsState.end_day,
                on_change=AnalyticsState.set_end,
                id="range-end",
            ),
            rx.select(
                AnalyticsState.currencies,
                value=AnalyticsState.currency,
                on_change=AnalyticsState.choose_currency,
                id="currency-filter",
            ),
            align="center",
            spacing="3",
            padding_y="1em",
        ),
        rx.text(
            "Payments created ",
            AnalyticsState.start_day,
            " to ",
            AnalyticsState.end_day,
            " (UTC)",
            id="range-label",
            color_scheme="gray",
        ),
        rx.cond(
            AnalyticsState.error != "",
            rx.callout(AnalyticsState.error, color_scheme="red", id="analytics-error"),
        ),
        rx.grid(
            _chart("success-rate", AnalyticsState.success_rate_figure),
            _chart("volume", AnalyticsState.volume_figure),
            _chart("count", AnalyticsState.count_figure),
            _chart("method-mix", AnalyticsState.method_mix_figure),
            _chart("currency-mix", AnalyticsState.currency_mix_figure),
            _chart("failure-reasons", AnalyticsState.failure_reasons_figure),
            _chart("rates", AnalyticsState.rates_figure),
            columns=rx.breakpoints(initial="1", lg="2"),
            spacing="4",
            width="100%",
            padding_y="1em",
        ),
        _rates_table(),
    )
