"""Manual review in headless Chromium: a manager approves a proof that finance recorded, and
imports a bank statement whose exact match joins the queue (a second import adds nothing, a bad
file is refused with its reason); finance imports a statement on the same page but sees no queue,
and a crafted approve from finance is refused by the service; an analyst gets neither the page nor,
by a crafted upload, the import."""

from __future__ import annotations

from datetime import date, timedelta

from browser_support import (
    HOME,
    Dashboard,
    EventRelay,
    post_upload,
    screenshot,
    sign_in,
    small_png,
)
from factories import make_payment
from playwright.sync_api import FilePayload, Page
from sqlmodel import Session, col, func, select

from dashboard.pages.review import ReviewState
from payments_core.config import Settings
from payments_core.db import make_engine
from payments_core.models import ManualProof, Payment, Role, StatementLine
from payments_core.money import format_amount
from payments_core.services import proofs
from payments_core.services.permissions import Actor

FINANCE = Actor("finance@example.com", Role.FINANCE)
MANAGER2 = Actor("manager2@example.com", Role.MANAGER)


def proof_recorded_by(
    dashboard: Dashboard, actor: Actor, reference: str, png: bytes | None = None
) -> tuple[str, str]:
    """A manual payment with a proof ``actor`` recorded, in the app's database; (payment, proof)."""
    settings = Settings(database_url=dashboard.database_url, var_dir=dashboard.var_dir)
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session, session.begin():
            payment = make_payment(
                session,
                provider="manual",
                provider_reference=None,
                method="bank_transfer",
                amount_minor=12_500,
                currency="CHF",
            )
            proof = proofs.record_proof_by_staff(
                session=session,
                settings=settings,
                actor=actor,
                payment_id=payment.id,
                reference=reference,
                amount_minor=payment.amount_minor,
                file=proofs.ProofFile("receipt.png", png or small_png()),
            )
            return payment.id, proof.id
    finally:
        engine.dispose()


def signed_in(page: Page, dashboard: Dashboard, name: str) -> None:
    """Sign in and wait to leave the login page (wherever sign-in lands)."""
    sign_in(page, dashboard, name)
    page.wait_for_url(lambda url: "/login" not in url)


def test_a_manager_approves_a_proof_recorded_by_finance(page: Page, dashboard: Dashboard) -> None:
    payment_id, proof_id = proof_recorded_by(dashboard, FINANCE, "bank transfer BR-7781")

    signed_in(page, dashboard, "manager")
    page.wait_for_selector("#nav-review")
    page.click("#nav-review")
    page.wait_for_url("**/review")
    row = page.locator(".proof-row", has_text=proof_id)
    row.wait_for()
    assert payment_id in row.inner_text() and "finance@example.com" in row.inner_text()
    row.locator(".proof-select").click()
    page.wait_for_selector(f"#proof-fields >> text={proof_id}")
    assert "BR-7781" in page.inner_text("#proof-fields")
    page.wait_for_function(
        "() => { const i = document.querySelector('#proof-preview');"
        " return i && i.complete && i.naturalWidth === 40; }"
    )
    screenshot(page, dashboard, "review")

    page.click("#approve")
    message = page.wait_for_selector("#review-message")
    assert message is not None and proof_id in message.inner_text()
    assert page.locator(".proof-row", has_text=proof_id).count() == 0
    screenshot(page, dashboard, "review-approved")

    page.goto(f"{dashboard.url}/payments/{payment_id}")
    page.wait_for_selector(".timeline-row")
    assert "succeeded" in page.inner_text("#payment-fields")
    assert f"Proof {proof_id} approved by manager@example.com" in page.inner_text("#timeline")


def test_a_recorder_is_refused_review_and_a_rejection_needs_a_reason(
    page: Page, dashboard: Dashboard
) -> None:
    # The same file on two payments: the second proof is flagged with the first payment.
    png = small_png(width=41)
    first_payment_id, _ = proof_recorded_by(dashboard, FINANCE, "cash at the counter C-18", png)
    _, proof_id = proof_recorded_by(dashboard, MANAGER2, "cash at the counter C-19", png)

    signed_in(page, dashboard, "manager2")
    page.goto(f"{dashboard.url}/review")
    row = page.locator(".proof-row", has_text=proof_id)
    row.wait_for()
    row.locator(".proof-select").click()
    page.wait_for_selector(f"#proof-fields >> text={proof_id}")
    assert page.inner_text("#duplicate-link") == first_payment_id
    assert page.get_attribute("#duplicate-link", "href") == f"/payments/{first_payment_id}"

    page.click("#approve")
    error = page.wait_for_selector("#review-error")
    assert error is not None and "cannot review it" in error.inner_text()
    page.click("#reject")
    page.wait_for_function(
        "() => document.querySelector('#review-error')?.innerText.includes('say why')"
    )
    assert page.locator(".proof-row", has_text=proof_id).count() == 1
    screenshot(page, dashboard, "review-refused")


# --- bank statements ----------------------------------------------------------------------------


def open_bank_transfer(dashboard: Dashboard, amount_minor: int, currency: str) -> Payment:
    """A manual bank transfer awaiting payment, in the app's database.

    Made here rather than picked from the seed: the seed leaves few open bank transfers, and those
    already carry proofs (and other tests add their own)."""
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            return make_payment(
                session,
                provider="manual",
                provider_reference=None,
                method="bank_transfer",
                amount_minor=amount_minor,
                currency=currency,
            )
    finally:
        engine.dispose()


def open_bank_transfers(dashboard: Dashboard) -> tuple[Payment, Payment]:
    return open_bank_transfer(dashboard, 48_215, "CHF"), open_bank_transfer(dashboard, 7_340, "EUR")


def proofs_of(dashboard: Dashboard, payment_id: str) -> list[ManualProof]:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            return list(
                session.exec(select(ManualProof).where(col(ManualProof.payment_id) == payment_id))
            )
    finally:
        engine.dispose()


def statement_lines(dashboard: Dashboard) -> int:
    engine = make_engine(dashboard.database_url)
    try:
        with Session(engine) as session:
            return int(session.exec(select(func.count()).select_from(StatementLine)).one())
    finally:
        engine.dispose()


CSV_HEADER = "Booking date;Amount;Currency;Reference;Counterparty"


def major(minor: int, currency: str) -> str:
    return format_amount(minor, currency, with_code=False, grouping=False)


def csv_statement(exact: Payment, named: Payment) -> bytes:
    """Three lines: an exact match, a credit naming a payment with another amount, a bad amount."""
    booked = (date.today() - timedelta(days=1)).isoformat()
    rows = [
        CSV_HEADER,
        f"{booked};{major(exact.amount_minor, exact.currency)};{exact.currency};"
        f"Transfer {exact.id};Muster AG",
        f"{booked};{major(named.amount_minor + 100, named.currency)};{named.currency};"
        f"Order {named.id};Beispiel GmbH",
        f"{booked};12.5x;CHF;a line the bank garbled;Nobody",
    ]
    return ("\n".join(rows) + "\n").encode("utf-8")


def one_credit_statement(payment: Payment) -> bytes:
    """One line: the payment's amount, with its id in the reference (an exact match)."""
    booked = (date.today() - timedelta(days=1)).isoformat()
    amount = major(payment.amount_minor, payment.currency)
    row = f"{booked};{amount};{payment.currency};Invoice {payment.id};Kunde AG"
    return f"{CSV_HEADER}\n{row}\n".encode()


def choose_statement(page: Page, name: str, content: bytes, mime: str) -> None:
    page.set_input_files(
        "#statement-section input[type=file]",
        files=[FilePayload(name=name, mimeType=mime, buffer=content)],
    )


def import_statement(page: Page, name: str, content: bytes, mime: str = "text/csv") -> None:
    choose_statement(page, name, content, mime)
    page.wait_for_selector(f"#statement-chosen >> text={name}")
    page.click("#statement-import")


def test_a_manager_imports_a_statement_and_its_match_joins_the_queue(
    page: Page, dashboard: Dashboard
) -> None:
    exact, named = open_bank_transfers(dashboard)
    statement = csv_statement(exact, named)

    signed_in(page, dashboard, "manager")
    page.goto(f"{dashboard.url}/review")
    page.wait_for_selector("#statement-section")
    import_statement(page, "march.csv", statement)

    matched = page.locator(".matched-line")
    matched.first.wait_for()
    assert matched.count() == 1
    assert page.inner_text("#count-credits") == "2"
    assert page.inner_text("#count-matched") == "1"
    assert page.inner_text("#count-already-imported") == "0"
    assert page.inner_text("#count-unmatched") == "1"
    assert page.inner_text("#count-errors") == "1"
    link = matched.locator(".matched-payment-link")
    assert link.inner_text() == exact.id
    assert link.get_attribute("href") == f"/payments/{exact.id}"
    assert format_amount(exact.amount_minor, exact.currency) in matched.inner_text()
    proof_id = matched.locator(".matched-proof").inner_text().strip()
    assert proof_id.startswith("prf_")

    unmatched = page.locator(".unmatched-line")
    assert unmatched.count() == 1
    candidate = unmatched.locator(".candidate-link")
    assert candidate.first.inner_text() == named.id
    assert candidate.first.get_attribute("href") == f"/payments/{named.id}"
    assert (
        "the reference names this payment, but it is "
        + format_amount(named.amount_minor, named.currency)
        in unmatched.inner_text()
    )
    error = page.inner_text("#statement-errors")
    assert "line 4" in error and "12.5x" in error

    # The queue above reloaded: the new proof waits there for another manager.
    row = page.locator(".proof-row", has_text=proof_id)
    row.wait_for()
    assert exact.id in row.inner_text() and "manager@example.com" in row.inner_text()
    screenshot(page, dashboard, "review-statement")

    # The same file again: every line is known, nothing new is matched or queued.
    lines_before = statement_lines(dashboard)
    import_statement(page, "march.csv", statement)
    page.wait_for_function(
        "() => document.querySelector('#count-already-imported')?.innerText === '2'"
    )
    assert page.inner_text("#count-matched") == "0"
    assert page.inner_text("#count-unmatched") == "0"
    assert page.locator(".matched-line").count() == 0
    assert page.locator(".proof-row", has_text=exact.id).count() == 1
    assert statement_lines(dashboard) == lines_before
    screenshot(page, dashboard, "review-statement-again")

    # A file that is no statement is refused whole, with the reason.
    import_statement(page, "notes.xml", b"this is not a bank statement", "application/xml")
    refusal = page.wait_for_selector("#statement-error")
    assert refusal is not None
    assert "notes.xml was not imported" in refusal.inner_text()
    assert "does not contain XML" in refusal.inner_text()
    assert page.locator("#statement-result").count() == 0
    # A file of another type does not even leave the browser.
    choose_statement(page, "receipt.pdf", b"%PDF-1.4 not a statement", "application/pdf")
    page.wait_for_function(
        "() => document.querySelector('#statement-error')?.innerText.includes('receipt.pdf')"
    )
    assert statement_lines(dashboard) == lines_before
    screenshot(page, dashboard, "review-statement-refused")


def test_finance_imports_a_statement_but_sees_no_queue(page: Page, dashboard: Dashboard) -> None:
    # A proof someone else recorded waits in the queue: finance must not see it.
    waiting_payment_id, waiting_proof_id = proof_recorded_by(
        dashboard, MANAGER2, "bank transfer BR-9120"
    )
    payment = open_bank_transfer(dashboard, 31_075, "CHF")

    signed_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.click("#nav-review")
    page.wait_for_url("**/review")
    page.wait_for_selector("#statement-section")
    assert page.locator("#proof-queue").count() == 0
    assert page.locator(".proof-row").count() == 0
    assert page.locator("#approve").count() == 0
    assert page.locator("#reject").count() == 0
    assert waiting_proof_id not in page.inner_text("body")

    import_statement(page, "april.csv", one_credit_statement(payment))
    matched = page.locator(".matched-line")
    matched.first.wait_for()
    assert matched.count() == 1
    assert page.inner_text("#count-matched") == "1"
    assert page.inner_text("#count-unmatched") == "0"
    assert matched.locator(".matched-payment-link").inner_text() == payment.id
    proof_id = matched.locator(".matched-proof").inner_text().strip()
    assert "a manager reviews them" in page.inner_text("#statement-review-note")
    # The import does not bring the queue in either.
    assert page.locator(".proof-row").count() == 0
    assert page.locator("#approve").count() == 0
    screenshot(page, dashboard, "review-finance-statement")

    [proof] = proofs_of(dashboard, payment.id)
    assert (proof.id, proof.status, proof.recorded_by) == (
        proof_id,
        "pending_review",
        "finance@example.com",
    )
    [waiting] = proofs_of(dashboard, waiting_payment_id)
    assert waiting.status == "pending_review"


def test_a_crafted_approve_from_finance_is_refused_by_the_service(
    page: Page, dashboard: Dashboard
) -> None:
    payment_id, proof_id = proof_recorded_by(dashboard, MANAGER2, "bank transfer BR-9121")
    relay = EventRelay(page)  # between the page and the app's event socket

    signed_in(page, dashboard, "finance")
    page.wait_for_url(HOME)
    page.goto(f"{dashboard.url}/review")
    page.wait_for_selector("#statement-section")
    assert page.locator("#approve").count() == 0

    # The page offers neither choosing nor approving; the handlers call the guarded services.
    relay.send(f"{ReviewState.get_full_name()}.choose", {"proof_id": proof_id})
    relay.send(f"{ReviewState.get_full_name()}.approve", {})
    error = page.wait_for_selector("#review-error")
    assert error is not None
    assert "finance@example.com (finance) may not review payment proofs" in error.inner_text()
    # Choosing clears the message, so the next one is the rejection's own.
    relay.send(f"{ReviewState.get_full_name()}.choose", {"proof_id": proof_id})
    page.wait_for_selector("#review-error", state="detached")
    relay.send(f"{ReviewState.get_full_name()}.reject", {"form": {"reason": "crafted"}})
    error = page.wait_for_selector("#review-error")
    assert error is not None
    assert "finance@example.com (finance) may not review payment proofs" in error.inner_text()
    screenshot(page, dashboard, "review-finance-crafted-refused")
    [proof] = proofs_of(dashboard, payment_id)
    assert (proof.status, proof.reviewed_by) == ("pending_review", None)


def test_an_analyst_gets_no_upload_and_a_crafted_one_is_refused(
    page: Page, dashboard: Dashboard
) -> None:
    exact, named = open_bank_transfers(dashboard)

    signed_in(page, dashboard, "analyst")
    page.wait_for_url(HOME)
    page.wait_for_selector("#nav-payments")
    assert page.locator("#nav-review").count() == 0
    # Typing the address does not help: the page's on_load checks the role on the server.
    page.goto(f"{dashboard.url}/review")
    page.wait_for_url(lambda url: not url.endswith("/review"))
    page.wait_for_selector("#signed-in-as")
    assert page.locator("#statement-section").count() == 0
    assert page.locator("input[type=file]").count() == 0

    # Post the upload the page never offers, as the analyst's own browser session would.
    before = statement_lines(dashboard)
    response = post_upload(
        page,
        dashboard,
        f"{ReviewState.get_full_name()}.upload_statement",
        [("crafted.csv", csv_statement(exact, named), "text/csv")],
    )
    assert response.is_success, response.text
    assert "analyst@example.com (analyst) may not import bank statements" in response.text
    assert statement_lines(dashboard) == before
