"""The Reflex app: pages and their routes (each page lives in dashboard/pages/), and the export
download route mounted on the backend (dashboard/exports.py)."""

import reflex as rx

from dashboard.exports import mount_exports
from dashboard.pages import (
    analytics,
    audit,
    disputes,
    login,
    overview,
    payment_detail,
    payments,
    refunds,
    review,
    users,
    webhooks,
)
from dashboard.state import AuthState

app = rx.App(api_transformer=mount_exports)

# The dynamic route first (Reflex matches in the order pages are added).
app.add_page(
    payment_detail.payment_detail_page,
    route=payment_detail.ROUTE,
    title="Payment · Paydesk",
    on_load=[AuthState.check_session, payment_detail.PaymentDetailState.load],
)
app.add_page(
    payments.payments_page,
    route=payments.ROUTE,
    title="Payments · Paydesk",
    on_load=[AuthState.check_session, payments.PaymentsState.load],
)
app.add_page(
    users.users_page,
    route=users.ROUTE,
    title="Users · Paydesk",
    on_load=[AuthState.check_session, users.UsersState.load],
)
app.add_page(
    review.review_page,
    route=review.ROUTE,
    title="Manual review · Paydesk",
    on_load=[AuthState.check_session, review.ReviewState.load],
)
app.add_page(
    refunds.refunds_page,
    route=refunds.ROUTE,
    title="Refunds · Paydesk",
    on_load=[AuthState.check_session, refunds.RefundsState.load],
)
app.add_page(
    analytics.analytics_page,
    route=analytics.ROUTE,
    title="Analytics · Paydesk",
    on_load=[AuthState.check_session, analytics.AnalyticsState.load],
)
app.add_page(
    audit.audit_page,
    route=audit.ROUTE,
    title="Audit log · Paydesk",
    on_load=[AuthState.check_session, audit.AuditState.load],
)
app.add_page(
    disputes.disputes_page,
    route=disputes.ROUTE,
    title="Disputes · Paydesk",
    on_load=[AuthState.check_session, disputes.DisputesState.load],
)
app.add_page(
    overview.overview_page,
    route=overview.ROUTE,
    title="Overview · Paydesk",
    on_load=[AuthState.check_session, overview.OverviewState.load],
)
app.add_page(
    webhooks.webhooks_page,
    route=webhooks.ROUTE,
    title="Webhooks · Paydesk",
    on_load=[AuthState.check_session, webhooks.WebhooksState.load],
)
app.add_page(
    login.login_page,
    route=login.ROUTE,
    title="Sign in · Paydesk",
    on_load=login.LoginState.leave_if_signed_in,
)
app.add_page(
    login.login_page,
    route="/",
    title="Paydesk",
    on_load=login.LoginState.leave_if_signed_in,
)
